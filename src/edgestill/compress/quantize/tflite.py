"""TFLite int8: litert-torch PT2E (static per-channel) or ai-edge-quantizer recipes on the fp32 .tflite.

Static files take and give int8 tensors; their scale/zero-point go in the TensorSpecs so sessions hide them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgestill.compress.quantize.layers import Layer
from edgestill.compress.quantize.options import QuantOptions
from edgestill.errors import ConfigError, RuntimeFailure
from edgestill.artifact import Artifact
from edgestill.export.tflite import tflite_artifact, write_tflite

if TYPE_CHECKING:
    import torch

_AEQ_RECIPES = {"aeq-static": "static_wi8_ai8", "aeq-dynamic": "dynamic_wi8_afp32", "aeq-weight-only": "weight_only_wi8_afp32"}


def pt2e_quantizer(*, is_qat: bool = False, float_layers: Sequence[str] = ()) -> Any:
    """litert-torch's PT2EQuantizer, symmetric per-channel int8, leaving the modules ``float_layers`` in float.

    Its own ``set_module_name`` cannot skip a module (it refuses None) and its name filter reads the old
    ``L__self___`` keys of ``nn_module_stack``, which torch.export no longer writes; the subclass filters on the
    fully qualified module names torch.export records instead.
    """
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config

    skip = set(float_layers)

    class _Quantizer(PT2EQuantizer):
        # litert-torch's QAT-only conv+bn annotators trace a pattern function with torch.export, which the
        # installed torch refuses ("Expected mod to be a Module"); without them conv and BatchNorm are
        # fake-quantized as separate ops during QAT, and the export afterwards folds BN as usual.
        STATIC_QAT_ONLY_OPS: list[str] = []

        def _annotate_for_static_quantization_config(self, model: Any) -> Any:
            if not skip:
                return super()._annotate_for_static_quantization_config(model)
            self._annotate_all_static_patterns(model, self.global_config, lambda n: not (_module_names(n) & skip))
            return model

    config = get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False, is_qat=is_qat)
    return _Quantizer().set_global(config)


def _module_names(node: Any) -> set[str]:
    """Fully qualified names of the modules a PT2E graph node was traced in."""
    names = set()
    for value in node.meta.get("nn_module_stack", {}).values():
        fqn = value[0] if isinstance(value, tuple) else str(value)
        names.add(fqn.removeprefix("L['self'].").removeprefix("L__self___"))
    return names


def quantize_tflite(
    model: torch.nn.Module, args: tuple, *, precision: str, calibration: np.ndarray | None, staging_dir: Path, name: str,
    options: QuantOptions, layers: Sequence[Layer],
) -> Artifact:
    """Write ``staging_dir/<name>.tflite`` quantized with the recipe ``options.recipe_for(precision)``."""
    recipe = options.recipe_for(precision)
    t0 = time.perf_counter()
    if recipe == "pt2e":
        _pt2e_static(model, args, calibration, staging_dir / f"{name}.tflite", options.float_layers)
        details: dict[str, Any] = {"method": "torchao.pt2e + litert_torch.PT2EQuantizer", "symmetric": True, "per_channel": True,
                                   "activations": "int8", "weights": "int8", "activation_observer": "HistogramObserver"}
    else:
        if options.float_layers:
            raise ConfigError("layers kept in float need the 'pt2e' TFLite recipe; ai-edge-quantizer recipes here quantize every layer.")
        _aeq(model, args, calibration, staging_dir / f"{name}.tflite", _AEQ_RECIPES[recipe], staging_dir)
        details = {"method": f"ai_edge_quantizer recipe {_AEQ_RECIPES[recipe]}", "weights": "int8",
                   "activations": "int8" if recipe == "aeq-static" else ("dynamic int8" if recipe == "aeq-dynamic" else "float")}
    art = tflite_artifact(model, args, staging_dir, name, precision)
    art.quantization = {**details, "recipe": recipe, "calibration_method_used": "histogram observer" if recipe == "pt2e" else "minmax",
                        "seconds": round(time.perf_counter() - t0, 3)}
    return art


def _pt2e_static(model: torch.nn.Module, args: tuple, calibration: np.ndarray, path: Path, float_layers: Sequence[str]) -> None:
    import torch
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = pt2e_quantizer(float_layers=float_layers)
    try:
        graph = torch.export.export(model.eval(), args).module()
        prepared = prepare_pt2e(graph, quantizer)
        with torch.no_grad():
            for sample in calibration:
                prepared(torch.from_numpy(np.ascontiguousarray(sample[None])))
        converted = convert_pt2e(prepared, fold_quantize=False)
    except Exception as exc:  # torch.export / PT2E raise many types; all mean "this model did not quantize"
        raise RuntimeFailure(f"PT2E static quantization failed for {type(model).__name__}: {exc}") from exc
    write_tflite(converted, args, path, quant_config=QuantConfig(pt2e_quantizer=quantizer))


def _aeq(model: torch.nn.Module, args: tuple, calibration: np.ndarray | None, path: Path, recipe_name: str, staging_dir: Path) -> None:
    from ai_edge_quantizer import quantizer as aeq
    from ai_edge_quantizer import recipe

    fp32 = staging_dir / f"{path.stem}.fp32.tmp.tflite"
    write_tflite(model, args, fp32)
    try:
        q = aeq.Quantizer(str(fp32))
        q.load_quantization_recipe(getattr(recipe, recipe_name)())
        if recipe_name.startswith("static"):
            from edgestill.runtimes.litert import interpreter_module

            interp = interpreter_module()[0].Interpreter(model_path=str(fp32))
            (sig_key,) = list(interp.get_signature_list())
            (in_name,) = list(interp.get_signature_list()[sig_key]["inputs"])
            result = q.calibrate({sig_key: [{in_name: np.ascontiguousarray(s[None])} for s in calibration]})
            q.quantize(result).export_model(str(path), overwrite=True)
        else:
            q.quantize().export_model(str(path), overwrite=True)
    except Exception as exc:  # ai-edge-quantizer raises many types
        raise RuntimeFailure(f"ai-edge-quantizer {recipe_name} failed for {type(model).__name__}: {exc}") from exc
    finally:
        fp32.unlink(missing_ok=True)
