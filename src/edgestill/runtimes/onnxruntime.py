"""onnxruntime backend: the CPU execution provider, or CUDA / TensorRT / OpenVINO ones as a named accelerator.

Imports onnxruntime lazily; never imports torch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgestill.errors import InputError, RuntimeFailure
from edgestill.artifact import Artifact
from edgestill.runtimes.base import RUNTIMES, Runtime, RuntimeOptions, Session, accelerator_record, check_file_shapes

_OPT_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}

PROVIDERS: dict[str, tuple[str, ...]] = {
    "cpu": ("CPUExecutionProvider",),
    "cuda": ("CUDAExecutionProvider", "CPUExecutionProvider"),
    "tensorrt": ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"),
    "openvino-ep": ("OpenVINOExecutionProvider", "CPUExecutionProvider"),
    "nnapi": ("NnapiExecutionProvider", "CPUExecutionProvider"),
    "qnn": ("QNNExecutionProvider", "CPUExecutionProvider"),
}
"""Accelerator -> the execution providers asked for, in priority order (the CPU one takes the nodes the others cannot)."""
_ACCELERATOR_OF = {providers[0]: name for name, providers in PROVIDERS.items()}


def providers_for(accelerator: str, available: list[str]) -> tuple[str, ...]:
    """The providers to ask for ``accelerator``, refusing one this onnxruntime build does not have.

    Raises:
        InputError: the accelerator's provider is not in ``available`` (``onnxruntime.get_available_providers()``).
    """
    providers = PROVIDERS[accelerator]
    if providers[0] not in available:
        raise InputError(
            f"accelerator {accelerator!r} needs onnxruntime's {providers[0]}, which this onnxruntime build does not "
            f"have (it has {', '.join(available)}). Install the onnxruntime package built with it (e.g. onnxruntime-gpu "
            "for cuda and tensorrt, onnxruntime-openvino for openvino-ep, onnxruntime-qnn for qnn, the Android build "
            "for nnapi), or use --accelerator cpu."
        )
    return providers


def provider_record(accelerator: str, asked: tuple[str, ...], used: list[str]) -> dict[str, Any]:
    """``settings["accelerator"]`` from the providers asked for and those the session kept (``get_providers()``).

    onnxruntime drops a provider it cannot initialise (a missing CUDA library, an unsupported GPU) with only a log
    line and runs on the next one: that is recorded as a fall back, with the accelerator that did run.
    """
    ran = next((_ACCELERATOR_OF[p] for p in asked if p in used), "cpu")  # tensorrt without TensorRT: cuda
    return accelerator_record(accelerator, ran, providers_asked=list(asked), providers=list(used))


class OnnxRuntimeSession(Session):
    """One onnxruntime InferenceSession; ``invoke`` is ``sess.run(names, feed)``."""

    runtime = "onnxruntime"

    def __init__(self, sess: Any, artifact: Artifact, settings: dict[str, Any]):
        self._sess = sess
        super().__init__(artifact, settings)
        self._output_names = [s.name for s in self.output_specs]  # manifest order: finish() zips with it
        in_file, out_file = [i.name for i in sess.get_inputs()], [o.name for o in sess.get_outputs()]
        if sorted(in_file) != sorted(s.name for s in self.input_specs) or not set(self._output_names) <= set(out_file):
            raise InputError(
                f"{artifact.model_path} has inputs {in_file} and outputs {out_file} but its manifest names "
                f"{[s.name for s in self.input_specs]} and {self._output_names}; the file and manifest disagree. "
                "Re-export the artifact (do not mix files and manifests of different exports)."
            )
        check_file_shapes(artifact, {i.name: i.shape for i in sess.get_inputs()})

    def invoke(self, feed: dict[str, np.ndarray]) -> None:
        self._last = self._sess.run(self._output_names, feed)  # onnxruntime returns the outputs from the call

    def collect(self) -> list[np.ndarray]:
        return self._last


@RUNTIMES.register("onnxruntime")
class OnnxRuntime(Runtime):
    """onnxruntime on the execution provider of ``options.accelerator`` (default the CPU one), sequential execution."""

    name = "onnxruntime"
    formats = ("onnx",)
    accelerators = tuple(PROVIDERS)

    def version(self) -> str:
        import onnxruntime

        return onnxruntime.__version__

    def load(self, artifact: Artifact, options: RuntimeOptions) -> OnnxRuntimeSession:
        import onnxruntime as ort

        self.check_accelerator(options.accelerator)
        asked = providers_for(options.accelerator, list(ort.get_available_providers()))
        so = ort.SessionOptions()
        so.intra_op_num_threads = options.threads
        so.inter_op_num_threads = options.inter_op_threads
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _OPT_LEVELS[options.graph_optimization])
        try:
            sess = ort.InferenceSession(str(artifact.model_path), sess_options=so, providers=list(asked))
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise RuntimeFailure(f"onnxruntime could not load {artifact.model_path}: {exc}") from exc
        settings = {
            "runtime": self.name,
            "runtime_version": ort.__version__,
            "threads": options.threads,
            "inter_op_threads": options.inter_op_threads,
            "graph_optimization": options.graph_optimization,
            "execution_mode": "sequential",
            "providers": sess.get_providers(),
            "accelerator": provider_record(options.accelerator, asked, sess.get_providers()),
        }
        return OnnxRuntimeSession(sess, artifact, settings)
