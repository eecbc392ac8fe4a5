"""LiteRT (TFLite) backend: ai_edge_litert's Interpreter, XNNPACK by default; never imports torch.

Falls back to the stale ``tflite_runtime`` only when ai_edge_litert is missing, and says so in
``session.settings["fallback"]``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgestill.errors import InputError, RuntimeFailure
from edgestill.artifact import Artifact
from edgestill.runtimes.base import RUNTIMES, Runtime, RuntimeOptions, Session, check_file_shapes


def interpreter_module() -> tuple[Any, str, str | None]:
    """Return (interpreter module, version, fallback note or None)."""
    try:
        import ai_edge_litert
        from ai_edge_litert import interpreter

        version = getattr(ai_edge_litert, "__version__", None) or _dist_version("ai-edge-litert")
        return interpreter, f"ai-edge-litert {version}", None
    except ImportError:
        pass
    try:
        from tflite_runtime import interpreter  # type: ignore[import-not-found]

        version = _dist_version("tflite-runtime")
        return interpreter, f"tflite-runtime {version}", "ai_edge_litert missing: using tflite_runtime (stale, numbers may differ)"
    except ImportError:
        raise RuntimeFailure(
            "no TFLite interpreter is installed: install ai-edge-litert (pip install ai-edge-litert)."
        ) from None


def _dist_version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "unknown"


class LiteRTSession(Session):
    """One allocated interpreter; ``invoke`` is invoke (inputs bound once per feed), ``collect`` copies the outputs."""

    runtime = "litert"

    def __init__(self, interp: Any, artifact: Artifact, settings: dict[str, Any]):
        self._interp = interp
        super().__init__(artifact, settings)
        by_name_in = {d["name"]: d["index"] for d in interp.get_input_details()}
        by_name_out = {d["name"]: d["index"] for d in interp.get_output_details()}
        try:
            self._in_idx = [by_name_in[s.name] for s in self.input_specs]
            self._out_idx = [by_name_out[s.name] for s in self.output_specs]
        except KeyError as exc:
            raise InputError(
                f"{artifact.model_path} has no tensor {exc}, which its manifest names; the file and manifest disagree. "
                "Re-export the artifact (do not mix files and manifests of different exports)."
            ) from None
        check_file_shapes(artifact, {d["name"]: [int(n) for n in d.get("shape_signature", d["shape"])]
                                     for d in interp.get_input_details()})
        self._shapes = {d["index"]: tuple(d["shape"]) for d in interp.get_input_details()}
        self._bound: Any = None

    def _feed(self, prepared: dict[str, np.ndarray]) -> list[tuple[int, np.ndarray]]:
        feed = []
        for spec, idx in zip(self.input_specs, self._in_idx):
            arr = prepared[spec.name]
            if tuple(self._shapes[idx]) != arr.shape:  # a dynamic dim given a new size: resize once, before timing
                self._interp.resize_tensor_input(idx, list(arr.shape))
                self._interp.allocate_tensors()
                self._shapes[idx] = arr.shape
                self._bound = None  # reallocation dropped whatever was bound
            feed.append((idx, arr))
        return feed

    def invoke(self, feed: list[tuple[int, np.ndarray]]) -> None:
        interp = self._interp
        if feed is not self._bound:  # bind a feed once: the steady state of a benchmark is invoke() alone
            for idx, arr in feed:
                interp.set_tensor(idx, arr)
            self._bound = feed  # held, so its id cannot be reused by a later feed
        interp.invoke()

    def collect(self) -> list[np.ndarray]:
        return [self._interp.get_tensor(i).copy() for i in self._out_idx]


@RUNTIMES.register("litert")
class LiteRT(Runtime):
    """LiteRT interpreter (ai-edge-litert); XNNPACK on unless ``options.xnnpack`` is False."""

    name = "litert"
    formats = ("tflite",)

    def version(self) -> str:
        return interpreter_module()[1]

    def load(self, artifact: Artifact, options: RuntimeOptions) -> LiteRTSession:
        mod, version, fallback = interpreter_module()
        kwargs: dict[str, Any] = {"model_path": str(artifact.model_path), "num_threads": options.threads}
        if not options.xnnpack:
            kwargs["experimental_op_resolver_type"] = mod.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        try:
            interp = mod.Interpreter(**kwargs)
            interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise RuntimeFailure(f"LiteRT could not load {artifact.model_path}: {exc}") from exc
        settings: dict[str, Any] = {
            "runtime": self.name,
            "runtime_version": version,
            "threads": options.threads,
            "xnnpack": options.xnnpack,
        }
        if fallback:
            settings["fallback"] = fallback
        return LiteRTSession(interp, artifact, settings)
