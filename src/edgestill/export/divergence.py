"""Where an fp32 export diverges: the first torch module whose output the exported graph computes differently.

How it works (ONNX, the format whose graph keeps the module structure):

1. The torch model runs on a few samples with a forward hook on every submodule; hooks fire when a module
   returns, so children fire before their parents and the firing order is execution order, innermost first.
2. The dynamo ONNX exporter records each node's module path in ``node.metadata_props``
   (``pkg.torch.onnx.name_scopes``, e.g. ``['', 'features', 'features.2', 'add']``). The value a module
   produces in the graph is the output of the last node (graphs are topologically sorted) inside that
   module's scope. Those values are added as graph outputs and the graph runs on onnxruntime.
3. Module outputs are compared in hook order against the fp32 bound ``atol + rtol * max|torch|``; the first
   that misses it is the divergent layer: its module name and type, and the ONNX node that produced the value.

For TFLite and OpenVINO artifacts the same check runs on an ONNX export of the same model: a module that
behaves differently when traced or exported (the usual cause) diverges there too. When the ONNX graph
matches torch everywhere, the report says so: the difference then comes from that format's own converter
or runtime, not from a layer of the model. Modules fused away by the exporter (a BatchNorm folded into its
Conv) are compared at the node that now produces their output; modules without a node are skipped.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgestill.export.validate import Threshold

if TYPE_CHECKING:
    import torch

_SCOPES_KEY = "pkg.torch.onnx.name_scopes"


@dataclass(kw_only=True)
class Divergence:
    """The result of localisation: the first divergent module (``found``), or why none was named."""

    found: bool
    module: str | None = None  # torch qualified name ("features.2")
    module_type: str | None = None
    node: str | None = None  # ONNX node that produced the module's value
    op_type: str | None = None
    max_abs: float | None = None
    bound: float | None = None
    compared: int = 0  # module outputs compared
    samples: int = 0
    method: str = "onnx-intermediates"
    note: str = ""

    def describe(self) -> str:
        if not self.found:
            return self.note
        return (f"first divergence at module {self.module!r} ({self.module_type}), ONNX node {self.node} ({self.op_type}): "
                f"max_abs {self.max_abs:.4g} > bound {self.bound:.4g}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _module_scopes(node: Any) -> list[str]:
    for prop in node.metadata_props:
        if prop.key == _SCOPES_KEY:
            try:
                scopes = ast.literal_eval(prop.value)
            except (ValueError, SyntaxError):
                return []
            return [s for s in scopes[:-1] if s]  # the last entry names the fx node itself
    return []


def _producers(graph: Any) -> dict[str, Any]:
    """Module name → the last node inside that module's scope."""
    last: dict[str, Any] = {}
    for node in graph.node:
        for scope in _module_scopes(node):
            last[scope] = node
    return last


def _torch_module_outputs(model: torch.nn.Module, samples: list[tuple]) -> tuple[list[str], dict[str, list[np.ndarray]], dict[str, str]]:
    """Hook every submodule; return the firing order, each module's output per sample, and module types."""
    import torch

    order: list[str] = []
    outputs: dict[str, list[np.ndarray]] = {}
    types = {name: type(m).__name__ for name, m in model.named_modules() if name}
    current: dict[str, np.ndarray] = {}

    def hook(name: str):
        def fn(module: Any, args: Any, out: Any) -> None:
            if isinstance(out, torch.Tensor):
                current[name] = out.detach().cpu().float().numpy().copy()
                if name not in order:
                    order.append(name)
        return fn

    handles = [m.register_forward_hook(hook(name)) for name, m in model.named_modules() if name]
    try:
        with torch.no_grad():
            for args in samples:
                current.clear()
                model(*args)
                for name, value in current.items():
                    outputs.setdefault(name, []).append(value)
    finally:
        for h in handles:
            h.remove()
    return order, outputs, types


def localize_divergence(
    model: torch.nn.Module,
    example_inputs: Sequence[Any],
    inputs: np.ndarray | Sequence[np.ndarray],
    *,
    threshold: Threshold,
    work_dir: Path,
    onnx_path: Path | None = None,
    max_samples: int = 4,
) -> Divergence:
    """Find the first module whose output the ONNX graph computes differently from torch (see the module docstring).

    Args:
        model: the torch model.
        example_inputs: the batch-1 tensors the artifact was exported with.
        inputs: samples, an (N, ...) array per input; the first ``max_samples`` are used.
        threshold: the fp32 threshold (atol + rtol * max|torch| per module output).
        work_dir: scratch folder for an ONNX export when ``onnx_path`` is not given.
        onnx_path: an fp32 .onnx file of this model (exported by the dynamo exporter) to inspect.

    Returns:
        A Divergence; ``found`` is False (with ``note``) when no module output misses the bound or none maps.
    """
    import onnx
    import onnxruntime as ort
    import torch

    from edgestill.export.base import as_tuple

    args = as_tuple(example_inputs)
    arrays = [np.asarray(inputs)] if isinstance(inputs, np.ndarray) else [np.asarray(a) for a in inputs]
    n = min(max_samples, len(arrays[0]))
    samples = [tuple(torch.from_numpy(np.ascontiguousarray(a[i : i + 1])) for a in arrays) for i in range(n)]
    if onnx_path is None:
        from edgestill.export.onnx import write_onnx

        work_dir = Path(work_dir)
        work_dir.mkdir(parents=True, exist_ok=True)
        onnx_path = work_dir / "localize.onnx"
        write_onnx(model, args, onnx_path)
    proto = onnx.load(str(onnx_path))
    producers = _producers(proto.graph)
    order, torch_out, types = _torch_module_outputs(model, samples)
    mapped = [m for m in order if m in producers]
    if not mapped:
        return Divergence(found=False, samples=n, note="no torch module could be matched to an ONNX node "
                          "(the graph carries no module scopes, e.g. a model loaded from a .pt2 program)")
    known = {v.name: v for v in (*proto.graph.value_info, *proto.graph.output, *proto.graph.input)}
    existing = {o.name for o in proto.graph.output}
    values = []
    for m in mapped:
        value = producers[m].output[0]
        values.append(value)
        if value not in existing:
            vi = known.get(value) or onnx.helper.make_tensor_value_info(value, onnx.TensorProto.FLOAT, None)
            proto.graph.output.append(vi)
            existing.add(value)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(proto.SerializeToString(), sess_options=so, providers=["CPUExecutionProvider"])
    in_names = [i.name for i in sess.get_inputs()]
    got: dict[str, list[np.ndarray]] = {v: [] for v in values}
    for sample in samples:
        res = sess.run(values, {name: t.numpy() for name, t in zip(in_names, sample)})
        for v, r in zip(values, res):
            got[v].append(np.asarray(r, dtype=np.float32))
    compared = 0
    for m, value in zip(mapped, values):
        refs, outs = torch_out.get(m, []), got[value]
        if len(refs) != len(outs) or any(r.size != o.size for r, o in zip(refs, outs)):
            continue  # the node's value is not the module's output (a view, a tuple member): not comparable
        compared += 1
        ref = np.concatenate([r.reshape(-1) for r in refs])
        out = np.concatenate([o.reshape(-1) for o in outs])
        max_abs = float(np.abs(out - ref).max()) if ref.size else 0.0
        bound = (threshold.atol or 0.0) + threshold.rtol * (float(np.abs(ref).max()) if ref.size else 0.0)
        if not max_abs <= bound:
            node = producers[m]
            return Divergence(found=True, module=m, module_type=types.get(m), node=node.name, op_type=node.op_type,
                              max_abs=max_abs, bound=bound, compared=compared, samples=n)
    return Divergence(found=False, compared=compared, samples=n, note=(
        f"no module diverges in the ONNX graph ({compared} module outputs compared on {n} samples): the difference "
        "comes from ops outside the compared modules or from the target format's own converter or runtime"))
