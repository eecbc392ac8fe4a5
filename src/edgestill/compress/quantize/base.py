"""The QUANTIZERS registry (keyed by format): what each int8 quantizer makes and where its function lives.

A table of :class:`~edgestill.export.base.BackendSpec`, readable without importing torch or a format library
(CLI choices and config validation read it); :func:`edgestill.compress.quantize.api.get_quantizer` imports the
quantizer when it is used. A quantizer is ``fn(model, args, *, precision, calibration, staging_dir, name, options,
layers) -> Artifact`` and writes one int8 file into ``staging_dir``. Quantizers import this module, never ``api``.
"""

from __future__ import annotations

from collections.abc import Callable

from edgestill.artifact import Artifact, Format, Precision
from edgestill.export.base import BackendSpec, precisions_of
from edgestill.registry import Registry

Quantizer = Callable[..., Artifact]
_INT8 = (Precision.INT8_STATIC, Precision.INT8_DYNAMIC)

QUANTIZERS: Registry[BackendSpec] = Registry("quantizer")
QUANTIZERS.register("onnx", BackendSpec(format=Format.ONNX, precisions=_INT8, target="edgestill.compress.quantize.onnx:quantize_onnx",
                                        label="onnxruntime (quantize_static QDQ / quantize_dynamic)"))
QUANTIZERS.register("tflite", BackendSpec(format=Format.TFLITE, precisions=_INT8,
                                          target="edgestill.compress.quantize.tflite:quantize_tflite",
                                          label="TFLite (litert-torch PT2E / ai-edge-quantizer)"))
QUANTIZERS.register("openvino", BackendSpec(format=Format.OPENVINO, precisions=_INT8,
                                            target="edgestill.compress.quantize.openvino:quantize_openvino",
                                            label="OpenVINO (nncf.quantize / nncf.compress_weights)"))


def quant_precisions() -> tuple[Precision, ...]:
    """The int8 precisions the registered quantizers make, in the order of :class:`Precision`."""
    return precisions_of(QUANTIZERS)
