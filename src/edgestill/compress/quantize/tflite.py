"""TFLite int8: litert-torch PT2E (static per-channel) or ai-edge-quantizer recipes on the fp32 .tflite.

Static files take float inputs and give float outputs by default: a QUANTIZE op after each input and a DEQUANTIZE
op before each output are written into the file (``float_io``), so an app and every runtime see scores, not int8
codes. ``QuantOptions.integer_io`` keeps the fully integer I/O the converters write (int8 tensors whose
scale/zero-point go in the TensorSpecs, which sessions use to hide them).

PT2E calibration runs in batches (``CALIBRATION_BATCH``) on a module exported with a dynamic batch dimension, with
the activation observer that matches ``calibration_method``: minmax -> MinMaxObserver; percentile, entropy and
mse -> torchao's HistogramObserver, which searches the range that minimises the L2 quantization error over a
histogram (that is "mse"; torchao has no percentile or entropy observer, and the record says which ran). Graph
outputs are always observed with MinMaxObserver: a histogram range clipped the top logits of a pretrained
EfficientNet-Lite (6.96 where torch gave 8.31), tying four classes at the top. ai-edge-quantizer's static recipe is
calibrated with the min/max over all samples (``_aeq_minmax_calibration``), not its default moving average.

The default static recipe is pt2e, chosen by measurement (``perf/tflite_recipes.py``: the zoo CNNs of
``perf/quant_real_models.py`` trained on digits at 3×32×32, 300 class-stratified calibration samples, 597 test
images, logits SQNR / top-1 agreement with fp32 on the LiteRT interpreter, float I/O). With the tflite defaults
(equalisation and bias correction in torch first; squeezenet1_1 has no conv pair to equalise):

    model                pt2e minmax       aeq-static (min/max)
    mobilenet_v2         24.0 dB  98.7%    23.2 dB  97.3%
    mobilenet_v3_small   18.8 dB  97.3%    18.7 dB  96.6%
    efficientnet_lite0   22.5 dB  97.8%    22.4 dB  97.3%
    resnet18             35.3 dB  99.7%    35.3 dB  99.5%
    squeezenet1_1        33.6 dB  98.3%    34.2 dB  98.8%
    mean                 26.8 dB  98.4%    26.8 dB  97.9%

pt2e keeps ≥ 97% agreement on all five (aeq-static misses on mobilenet_v3_small), can keep layers in float (the
accuracy budget's fallback) and has a histogram ("mse") observer. Without equalisation and bias correction the
two tie on agreement (98.1% each) and aeq-static leads on SQNR (26.4 vs 25.3 dB; pt2e "mse" 25.3 dB, 97.7%).
Before the fixes here, aeq-static's moving-average ranges gave 7-13 dB on the same models (saturated logits).

Time for mobilenet_v2 at 3×224×224 with 300 samples (``perf/tflite_quant_time.py``, 1 torch thread, the shared
2-core machine at load 0.9-1.4): pt2e minmax 37.1 s in all (calibration 18.6 s, conversion 9.9 s, the rest
equalisation / bias correction in torch and imports); aeq-static 44.8 s (calibration 30.1 s, conversion 5.5 s).
Without equalisation (load 2-3.6): pt2e minmax 29.1 s, pt2e mse 59.2 s (histogram calibration 43.6 s), aeq-static
28.7 s. Before, batch-1 histogram calibration alone took 210-315 s.
"""

from __future__ import annotations

import dataclasses
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgestill.artifact import Artifact, TensorSpec
from edgestill.compress.quantize.layers import EMBEDDING, Layer, by_weights, table_ops
from edgestill.compress.quantize.options import QuantOptions
from edgestill.compress.quantize.samples import Samples, feeds, is_integer_input, n_samples, torch_batch
from edgestill.errors import ConfigError, RuntimeFailure
from edgestill.export.base import input_names
from edgestill.export.tflite import tflite_artifact, write_tflite

if TYPE_CHECKING:
    import torch

_AEQ_RECIPES = {"aeq-static": "static_wi8_ai8", "aeq-dynamic": "dynamic_wi8_afp32", "aeq-weight-only": "weight_only_wi8_afp32"}
CALIBRATION_BATCH = 32  # samples per calibration forward pass of the PT2E-prepared module
_EPS = 2**-12  # the smallest scale litert-torch's configs allow
# activation observer per calibration method; "auto" picks among methods above this level (budget.py), minmax here
_OBSERVERS = {"minmax": "MinMaxObserver", "auto": "MinMaxObserver", "percentile": "HistogramObserver",
              "entropy": "HistogramObserver", "mse": "HistogramObserver"}
_USED = {"MinMaxObserver": "minmax (running min/max of each activation)",
         "HistogramObserver": "mse (torchao HistogramObserver: the range minimising L2 quantization error over a histogram)"}


def pt2e_quantizer(*, is_qat: bool = False, float_layers: Sequence[str] = (), activation_observer: str = "HistogramObserver") -> Any:
    """litert-torch's PT2EQuantizer, symmetric per-channel int8, leaving the modules ``float_layers`` in float.

    ``activation_observer`` ("MinMaxObserver" or "HistogramObserver") observes the activations of a static
    (non-QAT) config; the graph outputs are observed with MinMaxObserver whatever it is, so the top logits are
    not clipped. Weights: PerChannelMinMaxObserver, symmetric, int8 in [-127, 127].

    Its own ``set_module_name`` cannot skip a module (it refuses None) and its name filter reads the old
    ``L__self___`` keys of ``nn_module_stack``, which torch.export no longer writes; the subclass filters on the
    fully qualified module names torch.export records instead.
    """
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
    from torchao.quantization.pt2e import observer

    skip = set(float_layers)
    minmax = observer.MinMaxObserver.with_args(eps=_EPS)

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

        def annotate(self, model: Any) -> Any:
            model = super().annotate(model)
            if not is_qat:
                _observe_outputs_with(model, minmax)
            return model

    config = get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False, is_qat=is_qat)
    if not is_qat and activation_observer == "MinMaxObserver":
        act = dataclasses.replace(config.input_activation, observer_or_fake_quant_ctr=minmax)
        config = dataclasses.replace(config, input_activation=act, output_activation=act)
    elif activation_observer not in ("MinMaxObserver", "HistogramObserver"):
        raise ConfigError(f"activation_observer must be MinMaxObserver or HistogramObserver, got {activation_observer!r}.")
    return _Quantizer().set_global(config)


def _observe_outputs_with(model: Any, ctr: Any) -> None:
    """Give the quantized tensors that leave the graph the observer ``ctr`` (following shared specs to their root)."""
    (output,) = [n for n in model.graph.nodes if n.op == "output"]
    for node in output.all_input_nodes:
        for _ in range(8):  # a chain of shared specs (flatten, reshape) is short; stop at the spec that owns an observer
            ann = node.meta.get("quantization_annotation")
            spec = getattr(ann, "output_qspec", None)
            if spec is None:
                break
            if hasattr(spec, "observer_or_fake_quant_ctr") and hasattr(spec, "qscheme"):
                ann.output_qspec = dataclasses.replace(spec, observer_or_fake_quant_ctr=ctr)
                break
            root = getattr(spec, "edge_or_node", None)
            if root is None:
                break
            node = root[0] if isinstance(root, tuple) else root


def _module_names(node: Any) -> set[str]:
    """Fully qualified names of the modules a PT2E graph node was traced in."""
    names = set()
    for value in node.meta.get("nn_module_stack", {}).values():
        fqn = value[0] if isinstance(value, tuple) else str(value)
        names.add(fqn.removeprefix("L['self'].").removeprefix("L__self___"))
    return names


def quantize_tflite(
    model: torch.nn.Module, args: tuple, *, precision: str, calibration: Samples | None, staging_dir: Path, name: str,
    options: QuantOptions, layers: Sequence[Layer], inputs: Sequence[TensorSpec] | None = None,
) -> Artifact:
    """Write ``staging_dir/<name>.tflite`` quantized with the recipe ``options.recipe_for(precision)``.

    A model with several inputs is calibrated with every input (PT2E: batches of each; ai-edge-quantizer: one feed
    per sample keyed by the file's input names).

    Raises:
        ConfigError: ``integer_io`` asked of a dynamic-range file; float layers with an ai-edge-quantizer recipe.
        RuntimeFailure: PT2E, the converter or ai-edge-quantizer failed.
    """
    recipe = options.recipe_for(precision)
    static = precision == "int8-static"
    if options.integer_io and not static:
        raise ConfigError(
            f"integer_io (int8 input/output tensors) applies to int8-static files; {precision} files quantize "
            "activations inside each op and keep float inputs and outputs. Drop --integer-io, or use --precision int8-static."
        )
    path = staging_dir / f"{name}.tflite"
    t0 = time.perf_counter()
    details: dict[str, Any]
    if recipe == "pt2e":
        details = _pt2e_static(model, args, calibration, path, options, inputs)
    else:
        if options.float_layers and (static or not is_integer_input(args)):
            raise ConfigError("layers kept in float need the 'pt2e' TFLite recipe (or, for a text model, the dynamic-range "
                              "recipe aeq-dynamic); this ai-edge-quantizer recipe here quantizes every layer.")
        details = _aeq(model, args, calibration, path, _AEQ_RECIPES[recipe], staging_dir, inputs,
                       float_layers=options.float_layers, layers=layers)
    io = "float"
    if static and not options.integer_io:
        float_io(path)
    elif static:
        io = "int8"
    art = tflite_artifact(model, args, staging_dir, name, precision, inputs=inputs)
    art.quantization = {**details, "recipe": recipe, "io": io, "seconds": round(time.perf_counter() - t0, 3)}
    return art


def _pt2e_static(model: torch.nn.Module, args: tuple, calibration: Samples, path: Path, options: QuantOptions,
                 inputs: Sequence[TensorSpec] | None = None) -> dict[str, Any]:
    import torch
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e import move_exported_model_to_eval
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    act_observer = _OBSERVERS[options.calibration_method or "minmax"]
    quantizer = pt2e_quantizer(float_layers=options.float_layers, activation_observer=act_observer)
    t0 = time.perf_counter()
    try:
        graph, batch = _export_for_calibration(model.eval(), args, calibration)
        prepared = prepare_pt2e(graph, quantizer)
        with torch.no_grad():
            for i in range(0, n_samples(calibration), batch):
                prepared(*torch_batch(calibration, i, i + batch))
        converted = convert_pt2e(prepared, fold_quantize=False)
        move_exported_model_to_eval(converted)
    except Exception as exc:  # torch.export / PT2E raise many types; all mean "this model did not quantize"
        raise RuntimeFailure(f"PT2E static quantization failed for {type(model).__name__}: {exc}") from exc
    t1 = time.perf_counter()
    write_tflite(_unregistered(converted) if inputs else converted, args, path, quant_config=QuantConfig(pt2e_quantizer=quantizer),
                 inputs=inputs)
    return {
        "method": "torchao.pt2e + litert_torch.PT2EQuantizer", "symmetric": True, "per_channel": True,
        "activations": "int8", "weights": "int8",
        "activation_observer": f"{act_observer} (per-tensor; graph outputs: MinMaxObserver)",
        "weight_observer": "PerChannelMinMaxObserver (symmetric, [-127, 127])",
        "calibration_method_used": _USED[act_observer], "calibration_batch": batch,
        "calibration_seconds": round(t1 - t0, 3), "conversion_seconds": round(time.perf_counter() - t1, 3),
    }


def _unregistered(graph: Any) -> Any:
    """A module calling the PT2E-converted ``graph`` without registering it as a child: naming the inputs wraps the model
    and sets eval mode on it (export.tflite.named_inputs), which a module from torch.export refuses (NotImplementedError)."""
    import torch

    class _Calls(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            object.__setattr__(self, "graph_module", graph)  # not in _modules: eval()/train() do not reach it

        def forward(self, *args: Any) -> Any:
            return self.graph_module(*args)

    return _Calls()


def _export_for_calibration(model: torch.nn.Module, args: tuple, calibration: Samples) -> tuple[Any, int]:
    """The model exported for PT2E with a dynamic batch dimension, and the calibration batch size it takes.

    A model whose graph fixes the batch (a reshape to a literal size) exports only at batch 1: calibrated one
    sample at a time, as the record then says.
    """
    import torch

    batch = min(CALIBRATION_BATCH, n_samples(calibration))
    if batch >= 2:
        example = torch_batch(calibration, 0, batch)
        try:
            dim = torch.export.Dim("batch", min=1, max=max(1024, batch))
            shapes = tuple({0: dim} for _ in example)
            return torch.export.export(model, example, dynamic_shapes=shapes).module(), batch
        except Exception:  # noqa: BLE001  (torch.export raises many types for a batch it cannot keep symbolic)
            pass
    return torch.export.export(model, args).module(), 1


def _aeq(model: torch.nn.Module, args: tuple, calibration: Samples | None, path: Path, recipe_name: str, staging_dir: Path,
         inputs: Sequence[TensorSpec] | None = None, *, float_layers: Sequence[str] = (), layers: Sequence[Layer] = ()) -> dict[str, Any]:
    from ai_edge_quantizer import quantizer as aeq
    from ai_edge_quantizer import recipe

    fp32 = staging_dir / f"{path.stem}.fp32.tmp.tflite"
    t0 = time.perf_counter()
    write_tflite(model, args, fp32, inputs=inputs)
    details: dict[str, Any] = {"method": f"ai_edge_quantizer recipe {recipe_name}", "weights": "int8"}
    try:
        q = aeq.Quantizer(str(fp32))
        chosen = getattr(recipe, recipe_name)()
        if float_layers:
            kept = _float_scopes(fp32, layers, float_layers, model)
            chosen = [*chosen, *({**chosen[0], "regex": f"^{re.escape(scope)}$", "algorithm_key": "no_quantize"} for scope in kept)]
            details["float_ops"] = len(kept)
        q.load_quantization_recipe(chosen)
        if recipe_name.startswith("static"):
            from edgestill.runtimes.litert import interpreter_module

            interp = interpreter_module()[0].Interpreter(model_path=str(fp32))
            (sig_key,) = list(interp.get_signature_list())
            # the signature's input names in model order: the named inputs, else litert-torch's args_0, args_1, ...
            # (shorter first, so args_2 comes before args_10)
            in_names = input_names(inputs, len(args)) or sorted(interp.get_signature_list()[sig_key]["inputs"],
                                                                key=lambda n: (len(n), n))
            t1 = time.perf_counter()
            result = _aeq_minmax_calibration(fp32, recipe_name, {sig_key: feeds(calibration, in_names)})
            t2 = time.perf_counter()
            q.quantize(result).export_model(str(path), overwrite=True)
            details.update({"activations": "int8", "activation_observer": "min/max of each tensor over all calibration samples",
                            "weight_observer": "per-channel min/max (symmetric)", "calibration_method_used": "minmax",
                            "calibration_batch": 1, "calibration_seconds": round(t2 - t1, 3),
                            "conversion_seconds": round(t1 - t0 + time.perf_counter() - t2, 3)})
        else:
            q.quantize().export_model(str(path), overwrite=True)
            details["activations"] = "dynamic int8" if recipe_name.startswith("dynamic") else "float"
    except ConfigError:  # float layers that do not map onto this file
        raise
    except Exception as exc:  # ai-edge-quantizer raises many types
        raise RuntimeFailure(f"ai-edge-quantizer {recipe_name} failed for {type(model).__name__}: {exc}") from exc
    finally:
        fp32.unlink(missing_ok=True)
    return details


_WEIGHTED_OPS = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D")


def _float_scopes(fp32: Path, layers: Sequence[Layer], wanted: Sequence[str], torch_model: Any = None) -> list[str]:
    """The ai-edge-quantizer scopes (output tensor names) of the .tflite ops that implement the torch layers ``wanted``.

    Ops are matched to layers by their weight values (layers.by_weights, with ``torch_model``), else by execution
    order checked by weight shape (litert-torch's tensor names join the module paths of fused ops, so a name alone
    does not identify a layer); a recipe entry whose regex is one scope, anchored at both ends, then keeps exactly
    that op float.

    Raises:
        ConfigError: the file's weighted ops do not line up with the torch layers.
    """
    import math

    from ai_edge_quantizer.utils import tfl_flatbuffer_utils as tfl

    model = tfl.read_model(str(fp32))
    sub = model.subgraphs[0]
    tables = [layer for layer in layers if layer.kind == EMBEDDING]
    layers = [layer for layer in layers if layer.kind != EMBEDDING]
    ops, lookups = [], []
    for op in sub.operators:
        code = model.operatorCodes[op.opcodeIndex]
        name = str(tfl.TFL_OP_CODE_TO_NAME.get(max(code.builtinCode, code.deprecatedBuiltinCode)))
        if name.endswith(_WEIGHTED_OPS) and len(op.inputs) > 1 and op.inputs[1] >= 0 and sub.tensors[op.inputs[1]].buffer > 0:
            ops.append((op, math.prod(sub.tensors[op.inputs[1]].shape)))
        elif name.endswith("EMBEDDING_LOOKUP") and len(op.inputs) > 1:  # (ids, table)
            lookups.append((op, tuple(sub.tensors[op.inputs[1]].shape)))
    if torch_model is not None:
        def values(op: Any, i: int) -> Any:
            t = sub.tensors[op.inputs[i]]
            data = model.buffers[t.buffer].data if t.type == 0 else None  # TensorType.FLOAT32
            return np.zeros(0) if data is None else np.frombuffer(bytes(data), np.float32).reshape(t.shape)

        candidates = [(op, values(op, 1)) for op, _ in ops] + [(op, values(op, 1)) for op, _ in lookups]
        found = by_weights(torch_model, [*layers, *tables], wanted, candidates)
        if found is not None:
            return [tfl.get_op_scope(found[n], sub.tensors) for n in wanted if found[n] is not None]
    ok = len(ops) == len(layers) and all(size == math.prod(layer.weight_shape) for (_, size), layer in zip(ops, layers))
    if not ok:
        raise ConfigError(
            f"cannot keep layers in float in this TFLite file: its {len(ops)} weighted ops do not line up with the model's "
            f"{len(layers)} Conv/Linear layers. Use another format for a mixed artifact, or no float layers."
        )
    found = {layer.name: op for layer, (op, _) in zip(layers, ops)}
    found.update(table_ops(tables, lookups, "TFLite EMBEDDING_LOOKUP"))
    return [tfl.get_op_scope(found[n], sub.tensors) for n in wanted if found[n] is not None]


def _aeq_minmax_calibration(fp32: Path, recipe_name: str, data: dict[str, list[dict[str, np.ndarray]]]) -> Any:
    """ai-edge-quantizer's calibration with the min and max over all samples.

    ``Quantizer.calibrate`` keeps a moving average (factor 0.95) of each sample's min/max, which ends well inside the
    calibration's extremes: on a trained resnet18 its logits' range topped at 12.95 where torch's reached 25.8,
    so the top logits saturated (13 dB SQNR). Its Calibrator takes the update rule; ``min_max_update`` is MinMax.
    """
    from ai_edge_quantizer import calibrator, recipe, recipe_manager
    from ai_edge_quantizer.utils import qsv_utils

    manager = recipe_manager.RecipeManager()
    manager.load_quantization_recipe(getattr(recipe, recipe_name)())
    calib = calibrator.Calibrator(fp32.read_bytes(), qsv_update_func=qsv_utils.min_max_update)
    calib.calibrate(data, manager)
    return calib.get_model_qsvs()


def float_io(path: Path) -> None:
    """Rewrite the .tflite at ``path`` so its int8 inputs and outputs become float32.

    Each quantized graph input gets a float32 tensor (taking the input's name) and a QUANTIZE op into the int8
    tensor; each quantized output a DEQUANTIZE op into a float32 tensor that takes the output's name; the
    signatures point at the float tensors. The int8 computation in between is unchanged. Float inputs and
    outputs are left as they are.
    """
    from ai_edge_litert import schema_py_generated as fb
    from ai_edge_litert.tools import flatbuffer_utils as fbu

    model = fbu.read_model_from_bytearray(bytearray(path.read_bytes()))
    sub = model.subgraphs[0]
    remap: dict[int, int] = {}

    def float_twin(idx: int) -> int | None:
        t = sub.tensors[idx]
        q = t.quantization
        if t.type not in (fb.TensorType.INT8, fb.TensorType.UINT8) or q is None or q.scale is None or len(q.scale) != 1:
            return None
        twin = fb.TensorT()
        twin.shape, twin.shapeSignature = t.shape, t.shapeSignature
        twin.type, twin.buffer, twin.name = fb.TensorType.FLOAT32, 0, t.name
        t.name = (t.name.decode() if isinstance(t.name, bytes) else str(t.name)) + "_int8"
        sub.tensors.append(twin)
        remap[idx] = len(sub.tensors) - 1
        return remap[idx]

    def op(code: int, options_type: int, options: Any, src: int, dst: int) -> Any:
        o = fb.OperatorT()
        o.opcodeIndex, o.inputs, o.outputs = _opcode(model, fb, code), [src], [dst]
        o.builtinOptionsType, o.builtinOptions = options_type, options
        return o

    for pos, idx in enumerate(list(sub.inputs)):
        twin = float_twin(idx)
        if twin is not None:
            sub.operators.insert(0, op(fb.BuiltinOperator.QUANTIZE, fb.BuiltinOptions.QuantizeOptions, fb.QuantizeOptionsT(), twin, idx))
            sub.inputs[pos] = twin
    for pos, idx in enumerate(list(sub.outputs)):
        if idx in remap:  # an input passed straight through: leave it integer rather than alias two tensors
            continue
        twin = float_twin(idx)
        if twin is not None:
            sub.operators.append(op(fb.BuiltinOperator.DEQUANTIZE, fb.BuiltinOptions.DequantizeOptions, fb.DequantizeOptionsT(), idx, twin))
            sub.outputs[pos] = twin
    if not remap:
        return
    for sig in model.signatureDefs or []:
        if sig.subgraphIndex:
            continue
        for tm in (*(sig.inputs or []), *(sig.outputs or [])):
            tm.tensorIndex = remap.get(tm.tensorIndex, tm.tensorIndex)
    tmp = path.with_name(path.name + ".floatio.tmp")
    tmp.write_bytes(fbu.convert_object_to_bytearray(model))
    os.replace(tmp, path)


def _opcode(model: Any, fb: Any, code: int) -> int:
    """Index of the builtin operator ``code`` in the model's operator codes (added when missing)."""
    for i, oc in enumerate(model.operatorCodes):
        if max(oc.builtinCode, oc.deprecatedBuiltinCode) == code:
            return i
    oc = fb.OperatorCodeT()
    oc.builtinCode, oc.deprecatedBuiltinCode, oc.version = code, min(code, fb.BuiltinOperator.PLACEHOLDER_FOR_GREATER_OP_CODES), 2
    model.operatorCodes.append(oc)
    return len(model.operatorCodes) - 1
