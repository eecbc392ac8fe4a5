"""Teacher outputs cached on disk and memory-mapped: the training split's logits (and named layers' outputs) for
distillation, and the logits on any array (the evaluation split, for teacher agreement).

The trainer imports this module; it imports nothing from the trainer, so the trained-model cache
(:mod:`edgestill.compress.distill.teacher_cache`, which calls the trainer) sits above both.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgestill.data.datasets import DataSplits
from edgestill.errors import ConfigError, InputError, RuntimeFailure

OUTPUTS_FORMAT = 1


def default_cache_dir() -> Path:
    """The cache root: ``$EDGESTILL_CACHE``, else ``~/.cache/edgestill``."""
    env = os.environ.get("EDGESTILL_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "edgestill"


def teacher_fingerprint(teacher) -> str:
    """Hex sha256 of a torch module's class name and every parameter and buffer (names, shapes, bytes)."""
    import torch

    h = hashlib.sha256(type(teacher).__qualname__.encode())
    for name, tensor in teacher.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def teacher_outputs_key(teacher_sha256: str, data_sha256: str, augment_policy: str, features: Sequence[str]) -> str:
    """Hex sha256 keying cached training-split outputs: (teacher hash, data hash, augmentation policy, layers)."""
    payload = {"format": OUTPUTS_FORMAT, "teacher": teacher_sha256, "data": data_sha256, "augment": augment_policy,
               "features": list(features)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def teacher_logits_key(teacher_sha256: str, x: np.ndarray, key_parts: Mapping[str, str]) -> str:
    """Hex sha256 keying cached logits on an array: (teacher hash, the array's bytes, shape and dtype, key_parts)."""
    arr = np.ascontiguousarray(x)
    payload = {"format": OUTPUTS_FORMAT, "kind": "logits", "teacher": teacher_sha256,
               "x": hashlib.sha256(arr.view(np.uint8).reshape(-1)).hexdigest(), "shape": list(arr.shape),
               "dtype": str(arr.dtype), "parts": {str(k): str(v) for k, v in key_parts.items()}}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True, kw_only=True, eq=False)
class TeacherOutputs:
    """Cached teacher outputs, row i for input row i, memory-mapped from disk.

    ``logits`` is N×K float32; ``features[name]`` is N×(shape of that layer's output) float32 (training-split
    caches only). ``hit`` says whether the entry existed; ``compute_s`` is the time spent computing it (0 on a hit).
    """

    logits: np.ndarray
    features: Mapping[str, np.ndarray]
    key: str
    path: Path
    hit: bool
    compute_s: float = 0.0


def cached_teacher_outputs(teacher, data: DataSplits, *, cache_dir: Path, augment_policy: str = "none",
                           features: Sequence[str] = (), batch_size: int = 256) -> TeacherOutputs:
    """Teacher logits (and the named layers' outputs) on ``data.train``, computed once and memory-mapped.

    The files live in ``cache_dir/<key>/`` (``logits.npy``, ``feat-<layer>.npy``, ``meta.json``), keyed by
    :func:`teacher_outputs_key`; they are written into a temporary folder that is renamed into place, so a
    killed run never leaves a half-written entry. Reads use ``np.load(mmap_mode="r")``.

    Args:
        teacher: a torch module; run in eval mode under ``inference_mode``.
        data: the dataset; rows follow ``data.train``.
        cache_dir: the cache root.
        augment_policy: the augmentation the training inputs go through; only ``"none"`` can be cached (an
            active augmentation changes the inputs every epoch). It is part of the key.
        features: teacher module names whose outputs to store as well.
        batch_size: rows per teacher forward pass.

    Raises:
        ConfigError: ``augment_policy`` is not ``"none"`` (cached outputs would not match what the student sees),
            or an unknown feature layer name.
        RuntimeFailure: an existing entry cannot be read; delete its folder to recompute it.
    """
    policy = str(augment_policy)
    if policy != "none":
        raise ConfigError(f"teacher outputs cannot be cached under the random augmentation {policy!r}: every epoch "
                          "shows the student different inputs. Use teacher_mode 'online' (or 'auto').")
    features = list(dict.fromkeys(features))
    key = teacher_outputs_key(teacher_fingerprint(teacher), data.sha256, policy, features)
    meta = {"augment": policy, "features": features, "data_sha256": data.sha256}
    return _cached(teacher, data.train.x, Path(cache_dir), key, features, meta, batch_size)


def teacher_logits_for(teacher, x: np.ndarray, *, cache_dir: Path, key_parts: Mapping[str, str] | None = None,
                       batch_size: int = 256) -> TeacherOutputs:
    """Teacher logits on ``x`` (any split or array), computed once and memory-mapped.

    The key is the teacher's fingerprint, the sha256 of ``x`` itself (so a wrong label can never return another
    array's logits) and ``key_parts``, labels that say what ``x`` is, stored in ``meta.json``. For the evaluation
    split: ``teacher_logits_for(teacher, data.test.x, cache_dir=root, key_parts={"data": data.sha256,
    "split": "test"})``.

    Args:
        teacher: a torch module; run in eval mode under ``inference_mode`` (its mode is restored).
        x: float32 inputs, N×(the teacher's input shape).
        cache_dir: the cache root; the entry is ``cache_dir/<key>/`` with ``logits.npy`` and ``meta.json``.
        key_parts: string labels of ``x`` (data hash, split name, ...); part of the key.
        batch_size: rows per teacher forward pass.

    Returns:
        :class:`TeacherOutputs` with ``logits`` N×K float32 (memory-mapped) and no features.

    Raises:
        InputError: ``x`` is empty or not float32.
        RuntimeFailure: an existing entry cannot be read; delete its folder to recompute it.
    """
    x = np.asarray(x)
    if x.dtype != np.float32 or x.ndim < 2 or len(x) == 0:
        raise InputError(f"teacher_logits_for takes a non-empty float32 batch N×(input shape); got dtype {x.dtype} "
                         f"and shape {list(x.shape)}. Pass a split's x array (e.g. data.test.x).")
    parts = {str(k): str(v) for k, v in (key_parts or {}).items()}
    key = teacher_logits_key(teacher_fingerprint(teacher), x, parts)
    return _cached(teacher, x, Path(cache_dir), key, [], {"key_parts": parts}, batch_size)


def _feature_file(name: str) -> str:
    return "feat-" + "".join(c if c.isalnum() or c in "-_." else "_" for c in name) + ".npy"


def _cached(teacher, x: np.ndarray, root: Path, key: str, features: list[str], meta: dict, batch_size: int
            ) -> TeacherOutputs:
    """Open the entry for ``key`` under ``root``, or compute the teacher's outputs on ``x`` into it atomically."""
    import torch

    from edgestill.compress.distill.features import FeatureTap

    entry = root / key[:32]
    if (entry / "meta.json").is_file():
        try:
            return _open_outputs(entry, key, features, hit=True)
        except (OSError, ValueError, KeyError) as exc:
            raise RuntimeFailure(f"cached teacher outputs in {entry} could not be read ({exc}). Delete that folder "
                                 "to recompute them.") from exc

    started = time.perf_counter()
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key[:12]}-", dir=root))
    try:
        n = len(x)
        was_training = teacher.training
        teacher.eval()
        arrays: dict[str, np.ndarray] = {}
        try:
            with FeatureTap(teacher, features, role="teacher", detach=True) as tap, torch.inference_mode():
                for start in range(0, n, batch_size):
                    xb = torch.from_numpy(np.ascontiguousarray(x[start:start + batch_size]))
                    outs = {"logits": teacher(xb), **{name: tap.outputs[name] for name in features}}
                    for name, value in outs.items():
                        if name not in arrays:
                            file = tmp / ("logits.npy" if name == "logits" else _feature_file(name))
                            arrays[name] = np.lib.format.open_memmap(file, mode="w+", dtype=np.float32,
                                                                     shape=(n, *value.shape[1:]))
                        arrays[name][start:start + len(value)] = value.float().numpy()
        finally:
            teacher.train(was_training)
        for arr in arrays.values():
            arr.flush()
        del arrays
        full = {"key": key, "format": OUTPUTS_FORMAT, **meta, "n": n, "compute_s": time.perf_counter() - started}
        (tmp / "meta.json").write_text(json.dumps(full, indent=2))
        try:
            tmp.rename(entry)
        except OSError:  # another process finished the same entry first: use theirs
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    out = _open_outputs(entry, key, features, hit=False)
    return TeacherOutputs(logits=out.logits, features=out.features, key=key, path=entry, hit=False,
                          compute_s=time.perf_counter() - started)


def _open_outputs(entry: Path, key: str, features: Sequence[str], *, hit: bool) -> TeacherOutputs:
    meta = json.loads((entry / "meta.json").read_text())
    if meta.get("key") != key:
        raise ValueError(f"meta.json key {meta.get('key')!r} does not match {key!r}")
    logits = np.load(entry / "logits.npy", mmap_mode="r")
    feats = {name: np.load(entry / _feature_file(name), mmap_mode="r") for name in features}
    return TeacherOutputs(logits=logits, features=feats, key=key, path=entry, hit=hit)
