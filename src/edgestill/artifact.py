"""The artifact contract: a model file plus ``<name>.manifest.json``.

Torch-free on purpose: the runner reads manifests on devices that have only numpy and one runtime.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
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
    """What a file computes in. ``mixed`` is int8 with some layers kept in float (the accuracy budget's fallback)."""

    FP32 = "fp32"
    FP16 = "fp16"
    INT8_DYNAMIC = "int8-dynamic"
    INT8_STATIC = "int8-static"
    MIXED = "mixed"

    @property
    def is_float(self) -> bool:
        return self in (Precision.FP32, Precision.FP16)

    @property
    def is_int8(self) -> bool:
        return not self.is_float


FORMATS: tuple[str, ...] = tuple(f.value for f in Format)
PRECISIONS: tuple[str, ...] = tuple(p.value for p in Precision)
MANIFEST_SUFFIX = ".manifest.json"
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
        """Recompute the sha256 of every file listed in ``files`` (and of the model file)."""
        names = set(self.files) | {self.model_file}
        self.files = {n: sha256_file(self.directory / n) for n in sorted(names)}

    def write_manifest(self) -> Path:
        """Write the manifest atomically (temp file + rename)."""
        tmp = self.manifest_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        os.replace(tmp, self.manifest_path)
        return self.manifest_path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Artifact:
        """Load from a manifest path, or from a model file that has a manifest beside it."""
        p = Path(path)
        if not p.name.endswith(MANIFEST_SUFFIX):
            candidates = [p.with_name(p.stem + MANIFEST_SUFFIX), p.with_name(p.name + MANIFEST_SUFFIX)]
            found = [c for c in candidates if c.exists()]
            if not found:
                raise InputError(
                    f"no manifest found for {p}: expected {candidates[0].name} beside it. "
                    "Artifacts written by 'edgestill export' carry one; pass the .manifest.json path."
                )
            p = found[0]
        if not p.exists():
            raise InputError(f"artifact manifest {p} does not exist.")
        try:
            d = json.loads(p.read_text())
            art = cls(
                name=d["name"],
                format=d["format"],
                precision=d["precision"],
                directory=p.parent,
                model_file=d["model_file"],
                files=d.get("files", {}),
                inputs=[TensorSpec.from_dict(s) for s in d.get("inputs", [])],
                outputs=[TensorSpec.from_dict(s) for s in d.get("outputs", [])],
                parent_sha256=d.get("parent_sha256"),
                source=d.get("source") or {},
                calibration=d.get("calibration"),
                quantization=d.get("quantization"),
                validation=d.get("validation"),
                versions=d.get("versions") or {},
                created_at=d.get("created_at", ""),
            )
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise InputError(f"{p} is not a valid edgestill manifest ({exc}). Re-export the artifact.") from None
        if art.format not in FORMATS:
            raise InputError(f"{p}: unknown format {art.format!r}; valid formats: {', '.join(FORMATS)}.")
        if not art.model_path.exists():
            raise InputError(f"{p} names model file {art.model_file!r}, which is missing from {p.parent}.")
        return art


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
            dst = final_dir / (n + ".rejected")
            shutil.move(str(src), dst)
            out.append(dst)
    return out
