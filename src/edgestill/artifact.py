"""The artifact contract: a model file plus ``<name>.manifest.json``.

Torch-free on purpose: the runner reads manifests on devices that have only numpy and one runtime.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from enum import StrEnum
from typing import Any

from edgestill.errors import InputError


class Format(StrEnum):
    """A model file format; each has one runtime it ships on by default."""

    ONNX = "onnx"
    TFLITE = "tflite"
    OPENVINO = "openvino"


class Precision(StrEnum):
    """What a file computes in. ``mixed`` is int8 with some layers kept in float (the accuracy budget's fallback).
    ``int8-weight`` and ``int4-weight`` are weight-only: weights stored in 8 or 4 bits, activations in float (the
    generative models' route: onnxruntime MatMulNBits, NNCF weight compression, ai-edge-quantizer weight-only)."""

    FP32 = "fp32"
    FP16 = "fp16"
    INT8_DYNAMIC = "int8-dynamic"
    INT8_STATIC = "int8-static"
    MIXED = "mixed"
    INT8_WEIGHT = "int8-weight"
    INT4_WEIGHT = "int4-weight"

    @property
    def is_float(self) -> bool:
        return self in (Precision.FP32, Precision.FP16)

    @property
    def is_weight_only(self) -> bool:
        return self in (Precision.INT8_WEIGHT, Precision.INT4_WEIGHT)

    @property
    def is_int8(self) -> bool:
        return not self.is_float and self is not Precision.INT4_WEIGHT


FORMATS: tuple[str, ...] = tuple(f.value for f in Format)
PRECISIONS: tuple[str, ...] = tuple(p.value for p in Precision)
MANIFEST_SUFFIX = ".manifest.json"
# What a model input means (TensorSpec.kind), which decides its random samples: float (standard normal), ids (token ids
# in [0, high)), mask (an attention mask: ones, then a padded tail of zeros), type_ids (zeros), int (other integers).
INPUT_KINDS: tuple[str, ...] = ("float", "ids", "mask", "type_ids", "int")
REJECTED_SUFFIX = ".rejected"  # a file that failed validation, kept for diagnosis (see reject)
SCHEMA_VERSION = 1


@dataclass(frozen=True, kw_only=True)
class TensorSpec:
    """One input or output of a model file.

    ``shape`` holds ints and symbolic dims (strings such as ``"batch"``). ``dtype`` is the numpy name of
    what the file itself takes or gives. ``scale``/``zero_point`` are set when the file's tensor is
    quantized; ``logical_dtype`` is what the torch model took or gave (what a session accepts/returns).
    """

    name: str
    shape: tuple[int | str, ...]
    dtype: str
    logical_dtype: str | None = None
    scale: float | None = None
    zero_point: int | None = None
    # what an input means (edgestill.models.loading.INPUT_KINDS: float, ids, mask, type_ids, int) and, for ids, the
    # vocabulary size (valid ids are 0..high-1): random inputs for validation and timing respect them. None: unknown.
    kind: str | None = None
    high: int | None = None

    @property
    def quantized(self) -> bool:
        return self.scale is not None

    @property
    def user_dtype(self) -> str:
        return self.logical_dtype or self.dtype

    def concrete_shape(self, batch: int = 1) -> tuple[int, ...]:
        """The shape with every symbolic dim replaced by ``batch``."""
        return tuple(d if isinstance(d, int) and d >= 0 else batch for d in self.shape)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["shape"] = list(self.shape)
        return {k: v for k, v in d.items() if v is not None}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TensorSpec:
        return cls(
            name=d["name"],
            shape=tuple(d["shape"]),
            dtype=d["dtype"],
            logical_dtype=d.get("logical_dtype"),
            scale=d.get("scale"),
            zero_point=d.get("zero_point"),
            kind=d.get("kind"),
            high=d.get("high"),
        )


@dataclass(kw_only=True)
class Artifact:
    """An exported model: its files, its interface and where it came from."""

    name: str
    format: str
    precision: str
    directory: Path
    model_file: str  # relative to directory; the file a runtime loads (.onnx, .tflite, .xml)
    files: dict[str, str] = field(default_factory=dict)  # relative path -> sha256
    inputs: list[TensorSpec] = field(default_factory=list)
    outputs: list[TensorSpec] = field(default_factory=list)
    parent_sha256: str | None = None
    source: dict[str, Any] = field(default_factory=dict)  # model name, input shape, ...
    calibration: dict[str, Any] | None = None  # {"n", "sample_ids", "sha256", "source"}
    quantization: dict[str, Any] | None = None  # method details, layers kept in float, ...
    validation: dict[str, Any] | None = None  # parity result
    versions: dict[str, str] = field(default_factory=dict)
    created_at: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))

    @property
    def model_path(self) -> Path:
        return self.directory / self.model_file

    @property
    def manifest_path(self) -> Path:
        return self.directory / f"{self.name}{MANIFEST_SUFFIX}"

    @property
    def model_bytes(self) -> int:
        return sum((self.directory / f).stat().st_size for f in self.files)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "name": self.name,
            "format": self.format,
            "precision": self.precision,
            "model_file": self.model_file,
            "files": dict(self.files),
            "inputs": [s.to_dict() for s in self.inputs],
            "outputs": [s.to_dict() for s in self.outputs],
            "parent_sha256": self.parent_sha256,
            "source": self.source,
            "calibration": self.calibration,
            "quantization": self.quantization,
            "validation": self.validation,
            "versions": self.versions,
            "created_at": self.created_at,
        }

    def hash_files(self) -> None:
        """Recompute the sha256 of every file in ``files`` and of every file a runtime reads (``required_files``)."""
        self.files = {n: sha256_file(self.directory / n) for n in self.required_files()}

    def write_manifest(self) -> Path:
        """Write the manifest atomically: an exclusively created temporary file, then a rename (never through a
        symlink planted at a fixed temporary name)."""
        from edgestill.outdir import write_text_atomic

        write_text_atomic(self.manifest_path, json.dumps(self.to_dict(), indent=2) + "\n")
        return self.manifest_path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Artifact:
        """Load from a manifest path, or from a model file that has a manifest beside it.

        The manifest is untrusted input (it may come from another machine): it must be a regular UTF-8 JSON file of
        at most :data:`MAX_MANIFEST_BYTES` whose keys have the documented types, known format, precision and dtypes,
        shapes of bounded rank and size, and file names that stay inside the manifest's folder once symlinks are
        resolved. The files' sha256 are checked by :meth:`verify_files` (the runner calls it before loading).

        Raises:
            InputError: no manifest, or one that breaks any rule above (the message names the key and what is valid).
        """
        p = Path(path)
        if is_rejected(p):  # not an artifact: a file kept for diagnosis (see load_rejected)
            raise InputError(rejected_message(p))
        if not p.name.endswith(MANIFEST_SUFFIX):
            candidates = [p.with_name(p.stem + MANIFEST_SUFFIX), p.with_name(p.name + MANIFEST_SUFFIX)]
            found = [c for c in candidates if c.exists()]
            if not found:
                raise InputError(
                    f"no manifest found for {p}: expected {candidates[0].name} beside it. "
                    "Artifacts written by 'edgestill export' carry one; pass the .manifest.json path."
                )
            p = found[0]
        d = _read_manifest(p)
        check = _ManifestCheck(p)
        missing = [k for k in REQUIRED_KEYS if k not in d]
        if missing:
            raise InputError(check.refuse(", ".join(missing), "missing", f"a manifest has the keys "
                                          f"{', '.join(REQUIRED_KEYS)}, files (name -> sha256), inputs and outputs"))
        directory = p.parent
        model_file = check.relative_file(directory, d.get("model_file"), "model_file")
        files = check.files(directory, d.get("files", {}))
        art = cls(
            name=check.name(d.get("name")),
            format=check.choice(d.get("format"), "format", FORMATS, "formats"),
            precision=check.choice(d.get("precision"), "precision", PRECISIONS, "precisions"),
            directory=directory,
            model_file=model_file,
            files=files,
            inputs=check.specs(d.get("inputs", []), "inputs"),
            outputs=check.specs(d.get("outputs", []), "outputs"),
            parent_sha256=check.optional(d.get("parent_sha256"), "parent_sha256", str),
            source=check.source(d.get("source")),
            calibration=check.optional(d.get("calibration"), "calibration", dict),
            quantization=check.optional(d.get("quantization"), "quantization", dict),
            validation=check.optional(d.get("validation"), "validation", dict),
            versions=check.optional(d.get("versions"), "versions", dict) or {},
            created_at=check.optional(d.get("created_at"), "created_at", str) or "",
        )
        if not art.model_path.is_file():
            what = "is not a regular file" if art.model_path.exists() else "is missing"
            raise InputError(f"{p} names model file {art.model_file!r}, which {what} in {p.parent}. Re-export the "
                             "artifact, or copy the whole artifact folder (manifest and model files together).")
        return art

    def required_files(self) -> list[str]:
        """Every file a runtime reads: those the manifest records, the model file, and an OpenVINO IR's ``.bin``."""
        names = set(self.files) | {self.model_file}
        if self.format == Format.OPENVINO:
            names.add(str(Path(self.model_file).with_suffix(".bin")))
        return sorted(names)

    def verify_files(self) -> None:
        """Check that every file a runtime will read is present, inside the folder, and has its recorded sha256.

        Called by the runner before a runtime loads the files (and before init time is measured). There is no switch
        to skip it: hashing is one read of each file, small next to loading it and timing it.

        Raises:
            InputError: a file is missing, not a regular file, has no recorded sha256, or changed since export.
        """
        root = self.directory.resolve()
        for name in self.required_files():
            path = self.directory / name
            try:
                resolved = path.resolve()
            except (OSError, RuntimeError) as exc:  # a symlink loop (RuntimeError before Python 3.13)
                raise InputError(f"{self.manifest_path}: file {name!r} cannot be resolved ({exc}); an artifact's files "
                                 "are regular files in its folder. Re-export it.") from None
            if not resolved.is_relative_to(root):
                raise InputError(f"{self.manifest_path}: file {name!r} resolves to {resolved}, outside the "
                                 f"artifact folder {root}; an artifact's files must stay in its folder. Re-export it.")
            if not path.is_file():
                what = "is not a regular file" if path.exists() else "is missing"
                raise InputError(f"{self.manifest_path}: {name} {what} in {self.directory} (the {self.format} "
                                 f"model {self.model_file} needs it). Copy the whole artifact folder, or re-export it.")
            recorded = self.files.get(name)
            if not recorded:
                raise InputError(f"{self.manifest_path} records no sha256 for {name} in 'files', and the {self.format} "
                                 f"runtime reads it for {self.model_file}; an unrecorded file cannot be checked. "
                                 "Re-export the artifact.")
            actual = sha256_file(path)
            if actual != recorded:
                raise InputError(f"file {path} changed since it was exported (sha256 {actual}, the manifest "
                                 f"{self.manifest_path.name} records {recorded}); re-export it, or restore the "
                                 "file the manifest was written for.")


REQUIRED_KEYS = ("name", "format", "precision", "model_file")
MAX_MANIFEST_BYTES = 1 << 20
"""A manifest is a few KB (the largest in the tests: the quantized ones, with per-layer records, under 20 KB)."""
MAX_RANK = 8
"""Tensors of the supported models have rank <= 5 (video); 8 leaves room without admitting nonsense."""
MAX_TENSOR_ELEMENTS = 1 << 28
"""Elements of one declared input or output (symbolic dims counted as 1): 268M, 1 GiB of float32, what the runner
allocates for random inputs; far above any edge model's tensor (a 1024x1024 RGB image is 3M)."""
DTYPES: tuple[str, ...] = ("float16", "float32", "float64", "int8", "uint8", "int16", "uint16", "int32",
                           "uint32", "int64", "uint64", "bool")
"""The numpy dtype names a tensor spec may carry."""
_SHA256_HEX = frozenset("0123456789abcdef")


def _read_manifest(p: Path) -> dict[str, Any]:
    """The manifest at ``p`` as a dict, refusing what is not a small regular UTF-8 JSON object file."""
    if not p.exists():
        raise InputError(f"artifact manifest {p} does not exist. Pass the path of a .manifest.json written by "
                         "'edgestill export'.")
    if not p.is_file():
        raise InputError(f"artifact manifest {p} is not a regular file (a directory or a device); pass the "
                         ".manifest.json file written by 'edgestill export'.")
    size = p.stat().st_size
    if size > MAX_MANIFEST_BYTES:
        raise InputError(f"artifact manifest {p} is {size} bytes; a manifest is at most {MAX_MANIFEST_BYTES} bytes "
                         "(they are a few KB). Pass the .manifest.json written by 'edgestill export'.")
    try:
        with open(p, "rb") as f:
            raw = f.read(MAX_MANIFEST_BYTES + 1)
        d = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise InputError(f"{p} is not a valid edgestill manifest: it is not UTF-8 text ({exc.reason} at byte "
                         f"{exc.start}). Re-export the artifact.") from None
    except (json.JSONDecodeError, RecursionError) as exc:
        raise InputError(f"{p} is not a valid edgestill manifest: not JSON ({exc}). Re-export the artifact.") from None
    except OSError as exc:
        raise InputError(f"artifact manifest {p} cannot be read ({exc}); check its permissions.") from None
    if not isinstance(d, dict):
        raise InputError(f"{p} is not a valid edgestill manifest: it holds a JSON {type(d).__name__}, not an object "
                         "with keys name, format, precision, model_file and files. Re-export the artifact.")
    version = d.get("schema_version", SCHEMA_VERSION)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise InputError(f"{p}: schema_version {version!r} is not a positive whole number. Re-export the artifact.")
    if version > SCHEMA_VERSION:
        raise InputError(f"{p} has manifest schema_version {version}; this edgestill reads up to {SCHEMA_VERSION}. "
                         "Upgrade edgestill on this machine or export with the same version.")
    return d


class _ManifestCheck:
    """Type and range checks of one manifest's values; each failure names the key, the value and what is valid."""

    def __init__(self, path: Path):
        self.path = path

    def refuse(self, key: str, problem: str, valid: str) -> str:
        return f"{self.path} is not a valid edgestill manifest: {key} {problem}; {valid}. Re-export the artifact."

    def _short(self, value: Any) -> str:
        text = repr(value)
        return text if len(text) <= 80 else text[:77] + "..."

    def name(self, value: Any) -> str:
        if not isinstance(value, str) or not value or value in (".", "..") or any(c in value for c in "/\\\0"):
            raise InputError(self.refuse("name", f"is {self._short(value)}",
                                         "it must be a non-empty string without path separators"))
        return value

    def choice(self, value: Any, key: str, valid: tuple[str, ...], noun: str) -> str:
        if not isinstance(value, str) or value not in valid:
            raise InputError(self.refuse(key, f"{self._short(value)} is unknown", f"valid {noun}: {', '.join(valid)}"))
        return value

    def optional(self, value: Any, key: str, kind: type) -> Any:
        if value is not None and not isinstance(value, kind):
            raise InputError(self.refuse(key, f"is a {type(value).__name__}", f"it must be a {kind.__name__} or null"))
        return value

    def source(self, value: Any) -> dict[str, Any]:
        """The free-form ``source`` block; its ``llm`` block (a generative model's facts) is typed: an object whose
        sizes are whole numbers > 0 and whose token ids are whole numbers >= 0 or null."""
        source = self.optional(value, "source", dict) or {}
        llm = source.get("llm")
        if llm is None:
            return source
        if not isinstance(llm, dict):
            raise InputError(self.refuse("source.llm", f"is a {type(llm).__name__}", "it must be an object "
                                         "(vocab_size, context_length, eos_token_id, ...) or absent"))
        for key in ("vocab_size", "context_length"):
            v = llm.get(key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise InputError(self.refuse(f"source.llm.{key}", f"is {self._short(v)}", "it must be a whole number "
                                             "> 0"))
        for key in ("eos_token_id", "bos_token_id", "pad_token_id"):
            v = llm.get(key)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < llm["vocab_size"]):
                raise InputError(self.refuse(f"source.llm.{key}", f"is {self._short(v)}", "it must be a token id in "
                                             f"[0, {llm['vocab_size']}) or null"))
        return source

    def relative_file(self, directory: Path, value: Any, key: str) -> str:
        """``value`` as a relative file name that stays inside ``directory`` after resolving symlinks."""
        if not isinstance(value, str) or not value or "\0" in value:
            raise InputError(self.refuse(key, f"is {self._short(value)}", "it must be a file name relative to the "
                                                                         "manifest's folder"))
        from pathlib import PurePosixPath, PureWindowsPath

        if PurePosixPath(value).is_absolute() or PureWindowsPath(value).is_absolute() or PureWindowsPath(value).drive:
            raise InputError(self.refuse(key, f"{value!r} is an absolute path", "files must be named relative to the "
                                                                              "manifest's folder, e.g. 'model.onnx'"))
        root = directory.resolve()
        try:
            target = (directory / value).resolve()
        except (OSError, RuntimeError) as exc:  # a symlink loop (RuntimeError before Python 3.13)
            raise InputError(self.refuse(key, f"{value!r} cannot be resolved ({exc})",
                                         "files must be regular files in the manifest's folder")) from None
        if not target.is_relative_to(root) or target == root:
            raise InputError(self.refuse(key, f"{value!r} resolves to {target}, outside the artifact folder {root}",
                                         "an artifact's files must stay in the folder of its manifest (no '..', "
                                         "no symlink out of it)"))
        return value

    def files(self, directory: Path, value: Any) -> dict[str, str]:
        if not isinstance(value, dict):
            raise InputError(self.refuse("files", f"is a {type(value).__name__}",
                                         "it must map each file name to its sha256 (64 lowercase hex digits)"))
        out = {}
        for name, digest in value.items():
            self.relative_file(directory, name, "files entry")
            if not isinstance(digest, str) or len(digest) != 64 or not set(digest) <= _SHA256_HEX:
                raise InputError(self.refuse(f"files[{name!r}]", f"is {self._short(digest)}",
                                             "a sha256 is 64 lowercase hex digits"))
            out[name] = digest
        return out

    def specs(self, value: Any, key: str) -> list[TensorSpec]:
        if not isinstance(value, list):
            raise InputError(self.refuse(key, f"is a {type(value).__name__}", "it must be a list of tensor specs"))
        specs = [self.spec(s, f"{key}[{i}]") for i, s in enumerate(value)]
        names = [s.name for s in specs]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise InputError(self.refuse(key, f"name {repeated} more than once", "each tensor has its own name"))
        return specs

    def spec(self, d: Any, key: str) -> TensorSpec:
        if not isinstance(d, dict):
            raise InputError(self.refuse(key, f"is a {type(d).__name__}",
                                         "a tensor spec is an object with name, shape and dtype"))
        name, shape = d.get("name"), d.get("shape")
        if not isinstance(name, str) or not name:
            raise InputError(self.refuse(f"{key}.name", f"is {self._short(name)}", "it must be a non-empty string"))
        if not isinstance(shape, list) or not all(
            isinstance(s, str) or (isinstance(s, int) and not isinstance(s, bool) and s >= -1) for s in shape
        ):
            raise InputError(self.refuse(f"{key}.shape", f"is {self._short(shape)}", "a shape is a list of whole "
                                         "numbers >= 0 (-1 or a name such as 'batch' for a dynamic dim)"))
        if len(shape) > MAX_RANK:
            raise InputError(self.refuse(f"{key}.shape", f"has rank {len(shape)}", f"the largest rank is {MAX_RANK}"))
        elements = 1
        for s in shape:
            elements *= s if isinstance(s, int) and s > 0 else 1
        if elements > MAX_TENSOR_ELEMENTS:
            raise InputError(self.refuse(f"{key}.shape", f"{shape} declares {elements} elements",
                                         f"one tensor may have at most {MAX_TENSOR_ELEMENTS} elements"))
        dtype = self.choice(d.get("dtype"), f"{key}.dtype", DTYPES, "dtypes")
        logical = d.get("logical_dtype")
        if logical is not None:
            self.choice(logical, f"{key}.logical_dtype", DTYPES, "dtypes")
        scale, zero_point = d.get("scale"), d.get("zero_point")
        if scale is not None and (isinstance(scale, bool) or not isinstance(scale, (int, float))
                                  or not math.isfinite(scale) or scale <= 0):
            raise InputError(self.refuse(f"{key}.scale", f"is {self._short(scale)}", "a scale is a finite number > 0"))
        if zero_point is not None and (isinstance(zero_point, bool) or not isinstance(zero_point, int)):
            raise InputError(self.refuse(f"{key}.zero_point", f"is {self._short(zero_point)}",
                                         "a zero point is a whole number"))
        if scale is not None or zero_point is not None:
            import numpy as np

            if np.dtype(dtype).kind not in "iu":
                raise InputError(self.refuse(f"{key}.scale", f"is set for a {dtype} tensor",
                                             "only an integer tensor (int8, uint8, ...) is quantized"))
            info = np.iinfo(dtype)
            if zero_point is not None and not info.min <= zero_point <= info.max:
                raise InputError(self.refuse(f"{key}.zero_point", f"{zero_point} does not fit {dtype}",
                                             f"it must be in [{info.min}, {info.max}]"))
        kind, high = d.get("kind"), d.get("high")
        if kind is not None:
            self.choice(kind, f"{key}.kind", INPUT_KINDS, "input kinds")
        if high is not None and (isinstance(high, bool) or not isinstance(high, int) or high < 1):
            raise InputError(self.refuse(f"{key}.high", f"is {self._short(high)}", "a vocabulary size is a whole number >= 1"))
        return TensorSpec(name=name, shape=tuple(shape), dtype=dtype, logical_dtype=logical,
                          scale=None if scale is None else float(scale), zero_point=zero_point, kind=kind, high=high)


def sha256_file(path: str | os.PathLike[str], chunk_bytes: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk_bytes):
            h.update(block)
    return h.hexdigest()


def publish(staging: Path, final_dir: Path, names: list[str]) -> None:
    """Move validated files from a staging folder to their final names (rename, same filesystem)."""
    final_dir.mkdir(parents=True, exist_ok=True)
    for n in names:
        os.replace(staging / n, final_dir / n)


def reject(staging: Path, final_dir: Path, names: list[str]) -> list[Path]:
    """Keep the files of a failed artifact beside the final folder as ``*.rejected``; return their paths."""
    final_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for n in names:
        src = staging / n
        if src.exists():
            dst = final_dir / (n + REJECTED_SUFFIX)
            shutil.move(str(src), dst)
            out.append(dst)
    return out


# -- rejected files: kept for diagnosis, never loaded as an artifact unless asked ----------------------------------


def is_rejected(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` names a file :func:`reject` kept (``<file>.rejected``)."""
    return Path(path).name.endswith(REJECTED_SUFFIX)


def rejected_manifest_path(path: str | os.PathLike[str]) -> Path:
    """The rejected manifest (``<name>.manifest.json.rejected``) of a rejected manifest or model file.

    ``m.onnx.rejected``, ``m.xml.rejected`` and ``m.bin.rejected`` belong to ``m.manifest.json.rejected``.
    """
    p = Path(path)
    original = p.name.removesuffix(REJECTED_SUFFIX)
    if original.endswith(MANIFEST_SUFFIX):
        return p
    return p.with_name(Path(original).stem + MANIFEST_SUFFIX + REJECTED_SUFFIX)


def rejected_reason(doc: dict[str, Any]) -> str | None:
    """Why a rejected file failed, from what its manifest records (parity failures, the int8 budget), or None."""
    reasons = []
    q = doc.get("quantization") if isinstance(doc.get("quantization"), dict) else {}
    if q.get("budget_met") is False:
        try:
            drop, budget = float(q["accuracy_drop_points"]), float(q["max_accuracy_drop"])
            reasons.append(f"it missed its int8 accuracy budget by {drop - budget:.2f} points ({q.get('metric', 'top-1')} "
                           f"drop {drop:.2f} > {budget:g} allowed)")
        except (KeyError, TypeError, ValueError):
            reasons.append("it missed its int8 accuracy budget")
    validation = doc.get("validation") if isinstance(doc.get("validation"), dict) else {}
    failures = validation.get("failures") if isinstance(validation.get("failures"), list) else []
    missed = []
    for f in failures[:4]:
        try:
            missed.append(f"output {f['output']!r} {f['metric']} {float(f['value']):.4g} vs bound {float(f['bound']):.4g}")
        except (KeyError, TypeError, ValueError):
            continue
    if missed:
        reasons.append(f"it failed parity with torch ({'; '.join(missed)})")
    return "; ".join(reasons) or None


def rejected_message(path: str | os.PathLike[str]) -> str:
    """The one-paragraph refusal of a ``*.rejected`` file where an artifact is expected, with why it was rejected
    when its manifest says."""
    p = Path(path)
    manifest = rejected_manifest_path(p)
    why = None
    try:
        why = rejected_reason(_read_manifest(manifest))
    except InputError:
        pass
    because = f": {why}" if why else (f" (its manifest {manifest.name} is missing or unreadable, so the reason is not known)"
                                      if not manifest.is_file() else "")
    return (f"{p} is a rejected file: edgestill kept it as *{REJECTED_SUFFIX} because it failed validation when it was "
            f"made{because}. It is not an artifact and is refused where one is expected. `edgestill bench "
            f"--allow-rejected {manifest}` measures it for diagnosis (the record is marked rejected, and `edgestill "
            "gate` never counts it as a passing cell); the export or quantize report says what to try for a file that "
            "passes.")


def load_rejected(path: str | os.PathLike[str], work_dir: str | os.PathLike[str]) -> tuple[Artifact, str | None]:
    """Stage a rejected artifact under its original file names in ``work_dir`` and load it, for diagnosis.

    Its files are linked (or copied) from ``<file>.rejected`` beside the rejected manifest; the staged manifest is
    checked like any other (:meth:`Artifact.load`, and :meth:`Artifact.verify_files` where it is run).

    Args:
        path: the rejected manifest, or one of its rejected model files.
        work_dir: an empty folder the caller owns and removes.

    Returns:
        (the staged Artifact with ``source["rejected"]`` saying where it came from and why, the reason or None).

    Raises:
        InputError: ``path`` is not a rejected file, its manifest is missing or invalid, or a file it lists is missing.
    """
    p = Path(path)
    if not is_rejected(p):
        raise InputError(f"{p} is not a rejected file (*{REJECTED_SUFFIX}); pass the *.manifest.json{REJECTED_SUFFIX} "
                         "export or quantize kept, or drop --allow-rejected for a published artifact.")
    manifest = rejected_manifest_path(p)
    if not manifest.is_file():
        raise InputError(f"{p}: its manifest {manifest.name} is not beside it, so the file's inputs and outputs are not "
                         "known. Keep the rejected files together (model and manifest), or export again.")
    doc = _read_manifest(manifest)
    work = Path(work_dir)
    names = {n for n in (doc.get("files") or {}) if isinstance(n, str)}
    if isinstance(doc.get("model_file"), str):
        names.add(doc["model_file"])
    if doc.get("format") == Format.OPENVINO and isinstance(doc.get("model_file"), str):
        names.add(str(Path(doc["model_file"]).with_suffix(".bin")))
    for name in sorted(names):
        if not name or Path(name).name != name:
            raise InputError(f"{manifest} lists {name!r}; a rejected artifact's files sit beside its manifest. Export again.")
        src = manifest.parent / (name + REJECTED_SUFFIX)
        if src.is_symlink() or not src.is_file():
            raise InputError(f"{manifest} lists {name}, but {src.name} is missing beside it. Keep the rejected files "
                             "together, or export again.")
        try:
            os.link(src, work / name)
        except OSError:  # another filesystem, or links not allowed
            shutil.copyfile(src, work / name)
    staged = work / manifest.name.removesuffix(REJECTED_SUFFIX)
    shutil.copyfile(manifest, staged)
    art = Artifact.load(staged)
    reason = rejected_reason(doc)
    art.source["rejected"] = {"path": str(manifest), "reason": reason}
    return art, reason
