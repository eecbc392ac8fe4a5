"""LiteRT (TFLite) backend: ai_edge_litert's Interpreter, XNNPACK by default; never imports torch.

Falls back to the stale ``tflite_runtime`` only when ai_edge_litert is missing, and says so in
``session.settings["fallback"]``.

Accelerators: ``cpu`` is the interpreter's CPU path (XNNPACK unless ``options.xnnpack`` is off); ``gpu`` loads the
GPU delegate library (``$EDGESTILL_LITERT_GPU_DELEGATE``, default ``libtensorflowlite_gpu_delegate.so``, which the
pip wheel does not ship: build it or take it from an Android/Linux LiteRT release); ``nnapi`` is Android's and is
refused elsewhere (on a phone, bench over ADB with benchmark_model: :mod:`edgestill.devices.adb`).
"""

from __future__ import annotations

import os
import sys
from typing import Any

import numpy as np

from edgestill.errors import InputError, RuntimeFailure
from edgestill.artifact import Artifact
from edgestill.runtimes.base import RUNTIMES, Runtime, RuntimeOptions, Session, accelerator_record, check_file_shapes


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


GPU_DELEGATE_ENV = "EDGESTILL_LITERT_GPU_DELEGATE"
GPU_DELEGATE_LIBRARY = "libtensorflowlite_gpu_delegate.so"
NNAPI_DELEGATE_ENV = "EDGESTILL_LITERT_NNAPI_DELEGATE"
NNAPI_DELEGATE_LIBRARY = "libnnapi_delegate.so"


def on_android() -> bool:
    """True in a Python running on Android (NNAPI exists only there)."""
    return hasattr(sys, "getandroidapilevel") or ("ANDROID_ROOT" in os.environ and "ANDROID_DATA" in os.environ)


def load_accelerator_delegate(mod: Any, accelerator: str) -> tuple[Any, str]:
    """Load the delegate library of ``accelerator`` (gpu or nnapi) with the interpreter module's ``load_delegate``.

    Returns:
        (the delegate, the library path it was loaded from).

    Raises:
        InputError: nnapi off Android, or the delegate library cannot be loaded (the message says how to provide it).
    """
    if accelerator == "nnapi" and not on_android():
        raise InputError(
            "accelerator 'nnapi' is Android's NNAPI delegate and this is not Android. On a phone, bench it over ADB "
            "(an inventory entry with transport: adb runs LiteRT's benchmark_model with --use_nnapi=true); here, use "
            "--accelerator cpu (or gpu with a GPU delegate library)."
        )
    env, default = (GPU_DELEGATE_ENV, GPU_DELEGATE_LIBRARY) if accelerator == "gpu" else (NNAPI_DELEGATE_ENV, NNAPI_DELEGATE_LIBRARY)
    library = os.environ.get(env) or default
    try:
        return mod.load_delegate(library), library
    except (ValueError, OSError, RuntimeError) as exc:
        how = ("the ai-edge-litert wheel does not ship it: build it (bazel target "
               "//tflite/delegates/gpu:libtensorflowlite_gpu_delegate.so)" if accelerator == "gpu"
               else "it comes with LiteRT's Android libraries")
        raise InputError(
            f"accelerator {accelerator!r} needs LiteRT's {accelerator.upper()} delegate library, and {library!r} could "
            f"not be loaded ({str(exc).strip() or type(exc).__name__}); {how} and set ${env} to its path, or use "
            "--accelerator cpu."
        ) from None


def signature_inputs(interp: Any) -> dict[str, dict[str, Any]]:
    """The default signature's inputs by their signature name (each with the tensor's details: index, shape, dtype...).

    Files exported with named inputs are found by these names (tensor names are ``serving_default_<name>``); {} when
    the interpreter has no signature runner (the stale tflite_runtime) or the file no signature.
    """
    try:
        if not interp.get_signature_list():
            return {}
        return dict(interp.get_signature_runner().get_input_details())
    except (AttributeError, ValueError, RuntimeError):
        return {}


class LiteRTSession(Session):
    """One allocated interpreter; ``invoke`` is invoke (inputs bound once per feed), ``collect`` copies the outputs."""

    runtime = "litert"

    def __init__(self, interp: Any, artifact: Artifact, settings: dict[str, Any]):
        self._interp = interp
        super().__init__(artifact, settings)
        by_name_in = {d["name"]: d["index"] for d in interp.get_input_details()}
        if any(s.name not in by_name_in for s in self.input_specs):  # named inputs: found through the signature
            by_name_in.update({n: d["index"] for n, d in signature_inputs(interp).items() if n not in by_name_in})
        by_name_out = {d["name"]: d["index"] for d in interp.get_output_details()}
        try:
            self._in_idx = [by_name_in[s.name] for s in self.input_specs]
            self._out_idx = [by_name_out[s.name] for s in self.output_specs]
        except KeyError as exc:
            raise InputError(
                f"{artifact.model_path} has no tensor {exc}, which its manifest names; the file and manifest disagree. "
                "Re-export the artifact (do not mix files and manifests of different exports)."
            ) from None
        index_shapes = {d["index"]: [int(n) for n in d.get("shape_signature", d["shape"])] for d in interp.get_input_details()}
        check_file_shapes(artifact, {s.name: index_shapes[i] for s, i in zip(self.input_specs, self._in_idx)})
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
    """LiteRT interpreter (ai-edge-litert); XNNPACK on unless ``options.xnnpack`` is False; a GPU delegate on request."""

    name = "litert"
    formats = ("tflite",)
    accelerators = ("cpu", "gpu", "nnapi")

    def version(self) -> str:
        return interpreter_module()[1]

    def load(self, artifact: Artifact, options: RuntimeOptions) -> LiteRTSession:
        self.check_accelerator(options.accelerator)
        mod, version, fallback = interpreter_module()
        kwargs: dict[str, Any] = {"model_path": str(artifact.model_path), "num_threads": options.threads}
        if not options.xnnpack:
            kwargs["experimental_op_resolver_type"] = mod.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        accelerator = accelerator_record(options.accelerator, "cpu", path="xnnpack" if options.xnnpack else "builtin kernels")
        if options.accelerator != "cpu":
            delegate, library = load_accelerator_delegate(mod, options.accelerator)
            kwargs["experimental_delegates"] = [delegate]
            # the interpreter applies the delegate to the nodes it supports and runs the rest on the CPU; the Python
            # API does not say how many nodes it took, so the record says the delegate was applied, not the share
            accelerator = accelerator_record(options.accelerator, options.accelerator, delegate_library=library,
                                             delegated_nodes=None)
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
            "accelerator": accelerator,
        }
        if fallback:
            settings["fallback"] = fallback
        return LiteRTSession(interp, artifact, settings)
