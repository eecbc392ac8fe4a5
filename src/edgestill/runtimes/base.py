"""The Runtime protocol: ``load(artifact, options) -> Session``; ``Session.run(inputs) -> dict``.

Torch-free: the runner imports this on devices. A session hides quantized I/O (it quantizes float
inputs and dequantizes outputs with the manifest's scale/zero-point) and dtype changes (int64 ids
fed to an int32 input), so callers pass what the torch model took.
"""

from __future__ import annotations

import importlib
import os
import zipfile
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import numpy as np

from edgestill.artifact import Artifact, TensorSpec
from edgestill.errors import InputError, RuntimeFailure, UnknownNameError, did_you_mean
from edgestill.limits import check_allocation, element_count, format_bytes
from edgestill.registry import Registry


ACCELERATORS: tuple[str, ...] = ("cpu", "gpu", "npu", "cuda", "tensorrt", "nnapi", "openvino-ep", "qnn")
"""Every accelerator name: ``cpu`` is the runtime's CPU path (XNNPACK for LiteRT); ``gpu``/``npu`` are OpenVINO's
GPU/NPU plugins or LiteRT's GPU delegate; ``cuda``, ``tensorrt``, ``openvino-ep`` and ``qnn`` (Qualcomm's Hexagon NPU)
are onnxruntime execution providers; ``nnapi`` is Android's NNAPI (LiteRT's delegate, onnxruntime's provider). The
names are those device profiles list under ``runtimes``."""

RUNTIME_ACCELERATORS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "onnxruntime": ("cpu", "cuda", "tensorrt", "openvino-ep", "nnapi", "qnn"),
    "openvino": ("cpu", "gpu", "npu"),
    "litert": ("cpu", "gpu", "nnapi"),
})
"""What each built-in runtime can be asked for (its class's ``accelerators``); a plugin runtime offers ``cpu``."""


def _offered() -> str:
    return "; ".join(f"{rt}: {', '.join(names)}" for rt, names in RUNTIME_ACCELERATORS.items())


def accelerator_record(requested: str, ran: str, **extra: Any) -> dict[str, Any]:
    """What a session puts in ``settings["accelerator"]``: what was asked for, what ran, and whether it fell back."""
    return {"requested": requested, "ran": ran, "fell_back": ran != requested, **extra}


@dataclass(frozen=True, kw_only=True)
class RuntimeOptions:
    """Settings that change numbers or speed; every one is set explicitly and recorded."""

    threads: int = 1
    inter_op_threads: int = 1  # onnxruntime
    graph_optimization: Literal["disable", "basic", "extended", "all"] = "all"  # onnxruntime
    xnnpack: bool = True  # litert
    ov_performance_hint: Literal["LATENCY", "THROUGHPUT"] = "LATENCY"  # openvino
    ov_inference_precision: Literal["f32", "f16", "bf16"] = "f32"  # openvino
    ov_streams: int = 1  # openvino
    # Where the model runs: a name from ACCELERATORS that the runtime offers (Runtime.accelerators); the session
    # records which one ran, and a silent fall back to the CPU, in settings["accelerator"].
    accelerator: str = "cpu"

    def __post_init__(self) -> None:
        if self.threads < 1:
            raise InputError(f"threads must be >= 1, got {self.threads}.")
        if self.accelerator not in ACCELERATORS:
            raise InputError(f"accelerator {self.accelerator!r} is not one edgestill knows.{did_you_mean(str(self.accelerator), ACCELERATORS)} "
                             f"Valid: {', '.join(ACCELERATORS)} (each runtime offers some: {_offered()}).")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Session:
    """A loaded model. Subclasses implement ``_feed`` (inputs → runtime feed), ``invoke`` and ``collect``.

    ``prepare`` converts user inputs to what the file takes (done before timing);
    ``invoke`` is the runtime's own call (the only thing the harness times, as the runtimes' own tools do);
    ``collect`` copies out the outputs of the last ``invoke``; ``run_raw`` is the two together;
    ``finish`` turns raw outputs back into what the torch model gave.
    ``runtime_latency_ms`` is the runtime's own measurement of the last ``invoke`` where the runtime keeps one
    (OpenVINO's ``InferRequest.latency``, the figure ``benchmark_app`` reports), else None.
    """

    clock_source: str | None = None  # what runtime_latency_ms reads, for the record; None: no runtime clock

    runtime: str = ""
    input_specs: list[TensorSpec]
    output_specs: list[TensorSpec]
    settings: dict[str, Any]
    artifact: Artifact

    def __init__(self, artifact: Artifact, settings: dict[str, Any]):
        """Take the I/O contract from the manifest (it carries scale/zero-point) and the recorded settings; keep the
        artifact (its text facts let :func:`edgestill.runtimes.text.run_text` feed raw text)."""
        self.artifact = artifact
        self.input_specs = list(artifact.inputs)
        self.output_specs = list(artifact.outputs)
        self.settings = settings

    def prepare(self, inputs: Mapping[str, np.ndarray]) -> Any:
        expected = [s.name for s in self.input_specs]
        missing = [n for n in expected if n not in inputs]
        extra = [n for n in inputs if n not in expected]
        if missing or extra:
            raise InputError(
                f"inputs do not match the model: missing {missing or 'none'}, unexpected {extra or 'none'}; "
                f"the model takes {expected}."
            )
        prepared = {}
        for spec in self.input_specs:
            arr = np.asarray(inputs[spec.name])
            _check_shape(spec, arr)
            prepared[spec.name] = to_file_dtype(spec, arr)
        return self._feed(prepared)

    def _feed(self, prepared: dict[str, np.ndarray]) -> Any:
        """Turn name → array (already in file dtype) into the runtime's feed object."""
        return prepared

    def invoke(self, feed: Any) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def collect(self) -> list[np.ndarray]:  # pragma: no cover - abstract
        raise NotImplementedError

    def runtime_latency_ms(self) -> float | None:
        """The runtime's own duration of the last ``invoke`` in ms, or None where it keeps none."""
        return None

    def run_raw(self, feed: Any) -> list[np.ndarray]:
        self.invoke(feed)
        return self.collect()

    def finish(self, raw: list[np.ndarray]) -> dict[str, np.ndarray]:
        return {spec.name: from_file_dtype(spec, np.asarray(a)) for spec, a in zip(self.output_specs, raw)}

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.finish(self.run_raw(self.prepare(inputs)))


def _check_shape(spec: TensorSpec, arr: np.ndarray) -> None:
    ok = arr.ndim == len(spec.shape) and all(
        not isinstance(d, int) or d < 0 or d == a for d, a in zip(spec.shape, arr.shape)
    )
    if not ok:
        raise InputError(
            f"input {spec.name!r} has shape {list(arr.shape)} but the model takes {list(spec.shape)} "
            "(strings are dims of any size). Pass data of the model's input shape."
        )


def check_file_shapes(artifact: Artifact, file_shapes: Mapping[str, Any]) -> None:
    """Refuse a manifest whose inputs disagree with the model file's own shapes (``file_shapes``: name -> dims).

    Only what both sides fix is compared: a rank the file knows, and dims that are whole numbers > 0 on both sides
    (a string, None or -1 is dynamic). Checked at load, so a manifest that lies is bad input, not a runtime crash.

    Raises:
        InputError: a rank or a fixed dim differs.
    """
    for spec in artifact.inputs:
        dims = file_shapes.get(spec.name)
        if dims is None:
            continue
        dims = list(dims)
        fixed = [(m, f) for m, f in zip(spec.shape, dims)
                 if isinstance(m, int) and m > 0 and isinstance(f, int) and not isinstance(f, bool) and f > 0]
        if len(dims) != len(spec.shape) or any(m != f for m, f in fixed):
            raise InputError(
                f"{artifact.model_path} takes input {spec.name!r} of shape {dims} but its manifest "
                f"{artifact.manifest_path.name} declares {list(spec.shape)}; the file and manifest disagree. "
                "Re-export the artifact (do not mix files and manifests of different exports)."
            )


def to_file_dtype(spec: TensorSpec, arr: np.ndarray) -> np.ndarray:
    """Quantize (float → int8/uint8 with the spec's scale/zero-point) or cast to the file's dtype."""
    target = np.dtype(spec.dtype)
    if spec.quantized and arr.dtype.kind == "f":
        info = np.iinfo(target)
        q = np.round(arr.astype(np.float32) / spec.scale) + (spec.zero_point or 0)
        return np.clip(q, info.min, info.max).astype(target)
    if arr.dtype != target:
        if target.kind in "iu" and arr.dtype.kind in "iuf":
            info = np.iinfo(target)
            if arr.dtype.kind == "f" and arr.size and not (np.isfinite(arr).all() and (arr == np.round(arr)).all()):
                raise InputError(f"input {spec.name!r} is {target} in the file, but the data holds non-whole or non-finite "
                                 f"values (e.g. token ids 1.5 or NaN). Pass whole numbers, saved as an integer array.")
            if arr.size and (arr.min() < info.min or (arr.max() >= float(info.max) + 1 if arr.dtype.kind == "f"
                                                      else arr.max() > info.max)):  # 2**63 as a float is past int64
                raise InputError(f"input {spec.name!r} holds values that do not fit the file's {target} "
                                 f"({info.min}..{info.max}).")
        return np.require(arr.astype(target), requirements="C")
    return np.require(arr, requirements="C")  # C order without ascontiguousarray's 0-d -> 1-d


def from_file_dtype(spec: TensorSpec, arr: np.ndarray) -> np.ndarray:
    """Dequantize a quantized output to float32; otherwise return it in the logical dtype."""
    if spec.quantized:
        return ((arr.astype(np.float32) - (spec.zero_point or 0)) * spec.scale).astype(np.float32)
    if spec.logical_dtype and arr.dtype != np.dtype(spec.logical_dtype):
        return arr.astype(spec.logical_dtype)
    return arr


# --- untrusted array files (.npz / .npy): every declared size checked before numpy allocates it ----------------

NPZ_FIX = "Save it with numpy.savez(path, x=..., y=...) (plain numeric arrays)."
_READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, RuntimeError, NotImplementedError)


def _npy_header(f: Any, what: str, stored_bytes: int | None) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from the header of the .npy stream ``f``, refusing object arrays and sizes that cannot be
    allocated or that the stream cannot hold (``stored_bytes``: the stream's length, when known)."""
    from numpy.lib import format as npy

    try:
        version = npy.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = npy.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, _, dtype = npy.read_array_header_2_0(f)
        else:
            raise ValueError(f".npy format version {version[0]}.{version[1]} is not supported here")
        shape = tuple(int(d) for d in shape)
    except _READ_ERRORS as exc:
        raise InputError(f"{what} is not a readable .npy array ({exc}): the file is corrupt, truncated or not "
                         f"written by numpy. {NPZ_FIX}") from None
    if any(d < 0 for d in shape):
        raise InputError(f"{what} declares shape {list(shape)}, with a negative dimension: the file is corrupt. {NPZ_FIX}")
    if dtype.hasobject:
        raise InputError(f"{what} holds Python objects (dtype {dtype}), which would be unpickled to load: refused. "
                         f"{NPZ_FIX}")
    n_bytes = element_count(shape) * dtype.itemsize
    check_allocation(n_bytes, what=f"{what} (declared shape {list(shape)}, {dtype})",
                     fix="Pass a smaller file, or check that its header is not corrupt.")
    data_bytes = None if stored_bytes is None else stored_bytes - f.tell()
    if data_bytes is not None and n_bytes > data_bytes:
        raise InputError(f"{what} declares shape {list(shape)} of {dtype} ({format_bytes(n_bytes)}) but its data is "
                         f"only {format_bytes(data_bytes)}: the file is truncated or its header is wrong. {NPZ_FIX}")
    return shape, dtype


def _open_npz(path: Path, what: str) -> zipfile.ZipFile:
    if not path.exists():
        raise InputError(f"{what}: it does not exist. Pass an existing .npz file; {NPZ_FIX[0].lower()}{NPZ_FIX[1:]}")
    if not path.is_file():
        raise InputError(f"{what}: it is not a file (a folder?). Pass the path of an .npz file.")
    if path.stat().st_size == 0:
        raise InputError(f"{what}: the file is empty (0 bytes), so it holds no arrays. {NPZ_FIX}")
    try:
        return zipfile.ZipFile(path)
    except _READ_ERRORS as exc:
        raise InputError(f"{what}: it is not an .npz (zip) archive ({exc}). {NPZ_FIX}") from None


def npz_headers(path: str | os.PathLike[str], *, what: str, keys: Iterable[str] | None = None,
                ) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shape and dtype of the arrays of an .npz (``keys`` of them where given and present), read from the headers only.

    ``what`` opens every message and names the file as the user gave it (``"--data val.npz"``, ``"cannot read eval
    data /p/val.npz"``); the message goes on with ``": the file is empty ..."``, ``": array 'x' ..."``.

    Raises:
        InputError: the file is missing, a folder, empty or not a zip archive; a member is not a .npy array, holds
            Python objects (pickles are refused), or declares a size larger than the machine's memory
            (:func:`edgestill.limits.check_allocation`) or than the bytes it holds.
    """
    p = Path(path)
    with _open_npz(p, what) as zf:
        members = {i.filename.removesuffix(".npy"): i for i in zf.infolist() if not i.is_dir()}
        wanted = [k for k in (members if keys is None else keys) if k in members]
        out: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
        total = 0
        for k in wanted:
            info = members[k]
            try:
                with zf.open(info) as f:
                    out[k] = _npy_header(f, f"{what}: array {k!r}", info.file_size)
            except _READ_ERRORS as exc:
                raise InputError(f"{what}: array {k!r} cannot be read ({exc}). {NPZ_FIX}") from None
            shape, dtype = out[k]
            total += element_count(shape) * dtype.itemsize
        if len(wanted) > 1:
            check_allocation(total, what=f"{what} (arrays {', '.join(wanted)} together)",
                             fix="Pass a smaller file, or split it.")
    return out


def read_npz(path: str | os.PathLike[str], *, what: str, keys: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """The plain arrays of an .npz (``keys`` of them where given and present), every header checked by
    :func:`npz_headers` before numpy allocates anything and every member's CRC checked; Python objects are never
    unpickled.

    Raises:
        InputError: as :func:`npz_headers`, or a member whose data is corrupt or shorter than its header says.
    """
    heads = npz_headers(path, what=what, keys=keys)
    try:
        with zipfile.ZipFile(Path(path)) as zf:  # numpy stops reading at the array's end, so it never checks the CRC:
            for info in zf.infolist():  # stream each member once (1 MiB at a time) to have zipfile check it
                if info.filename.removesuffix(".npy") in heads:
                    with zf.open(info) as f:
                        while f.read(1 << 20):
                            pass
        with np.load(Path(path), allow_pickle=False) as z:
            return {k: z[k] for k in heads}
    except _READ_ERRORS as exc:
        raise InputError(f"{what}: the file is corrupt or truncated ({exc}). {NPZ_FIX}") from None


def read_npy(path: str | os.PathLike[str], *, what: str) -> np.ndarray:
    """One plain array from a .npy file, its header checked as :func:`npz_headers` checks an .npz member's.

    Raises:
        InputError: missing, empty, not a .npy array, Python objects, a declared size too large or not in the file.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{what}: it does not exist or is not a file. Pass a .npy file written by numpy.save.")
    try:
        with p.open("rb") as f:
            _npy_header(f, what, p.stat().st_size)
        return np.load(p, allow_pickle=False)
    except _READ_ERRORS as exc:
        raise InputError(f"{what}: the file is corrupt or truncated ({exc}). Save it with numpy.save.") from None


class Runtime:
    """A backend: which formats it loads, its version, and ``load``."""

    name: str = ""
    formats: tuple[str, ...] = ()
    accelerators: tuple[str, ...] = ("cpu",)

    def version(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def check_accelerator(self, accelerator: str) -> None:
        """Refuse an accelerator this runtime does not offer.

        Raises:
            InputError: ``accelerator`` is not in ``self.accelerators`` (the message lists them).
        """
        if accelerator not in self.accelerators:
            users = [rt for rt, names in RUNTIME_ACCELERATORS.items() if accelerator in names and rt != self.name]
            hint = f" {accelerator!r} is offered by {', '.join(users)}." if users else ""
            raise InputError(f"runtime {self.name!r} cannot use accelerator {accelerator!r}; it offers "
                             f"{', '.join(self.accelerators)}.{hint} Pick one of those with --accelerator.")

    def load(self, artifact: Artifact, options: RuntimeOptions) -> Session:  # pragma: no cover - abstract
        raise NotImplementedError


RUNTIMES: Registry[type[Runtime]] = Registry("runtime")
"""Runtime classes by name; a backend module registers its class here when it is imported."""

BACKEND_MODULES: Mapping[str, str] = MappingProxyType({
    "onnxruntime": "edgestill.runtimes.onnxruntime",
    "litert": "edgestill.runtimes.litert",
    "openvino": "edgestill.runtimes.openvino",
})
"""The built-in backends: name -> the module that registers it. :func:`get_runtime` imports a module on first use,
so loading one backend never imports the others (and this module imports none of them)."""

DEFAULT_RUNTIME = {"onnx": "onnxruntime", "tflite": "litert", "openvino": "openvino"}

PLUGINS_ENV = "EDGESTILL_RUNTIME_PLUGINS"
"""Runtimes of your own: comma-separated modules imported before a runtime is looked up; each registers its class
with ``RUNTIMES.register(name)``. The runner and every command see the same ones."""
_plugins_loaded: set[str] = set()


def load_plugins() -> None:
    """Import the modules named in ``$EDGESTILL_RUNTIME_PLUGINS`` (once each).

    Raises:
        InputError: a named module cannot be imported.
    """
    for name in filter(None, (n.strip() for n in os.environ.get(PLUGINS_ENV, "").split(","))):
        if name in _plugins_loaded:
            continue
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise InputError(f"{PLUGINS_ENV} names {name!r}, which cannot be imported ({exc}); fix the module path "
                             "or unset the variable.") from None
        _plugins_loaded.add(name)


def runtime_names() -> list[str]:
    """Every runtime :func:`get_runtime` accepts: the built-in backends, plugins, and any registered since."""
    load_plugins()
    return sorted(set(BACKEND_MODULES) | set(RUNTIMES.names()))


def get_runtime(name: str) -> Runtime:
    """Return a runtime instance by name, importing its backend module on first use.

    Raises:
        UnknownNameError: ``name`` is neither a built-in backend nor registered (the message lists the valid names).
        RuntimeFailure: the backend's module was imported but did not register ``name`` (a packaging defect).
    """
    if name not in RUNTIMES and name not in BACKEND_MODULES:
        load_plugins()
    if name not in RUNTIMES:
        if name not in BACKEND_MODULES:
            raise UnknownNameError("runtime", name, runtime_names())
        importlib.import_module(BACKEND_MODULES[name])  # the module registers its class in RUNTIMES
        if name not in RUNTIMES:
            raise RuntimeFailure(f"module {BACKEND_MODULES[name]} was imported but did not register runtime {name!r}; "
                                 "the installed edgestill is inconsistent. Reinstall it.")
    return RUNTIMES.get(name)()


def load(artifact: Artifact | str, options: RuntimeOptions | None = None, runtime: str | None = None) -> Session:
    """Load an artifact on a runtime (default: the format's own runtime)."""
    art = artifact if isinstance(artifact, Artifact) else Artifact.load(artifact)
    rt = get_runtime(runtime or DEFAULT_RUNTIME[art.format])
    if art.format not in rt.formats:
        raise InputError(
            f"runtime {rt.name!r} cannot load {art.format} artifacts; it loads {', '.join(rt.formats)}. "
            f"Use --runtime {DEFAULT_RUNTIME[art.format]}."
        )
    return rt.load(art, options or RuntimeOptions())
