"""Teacher caches: a trained teacher per (architecture, config, data, torch version), and the teacher's outputs
per (teacher hash, data hash, augmentation policy, feature layers), memory-mapped on disk."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgestill.compress.distill.trainer import Progress, TrainConfig, evaluate, train
from edgestill.data.datasets import DataSplits
from edgestill.errors import RuntimeFailure


def teacher_cache_key(model_name: str, model_kwargs: Mapping[str, Any], data: DataSplits, config: TrainConfig) -> str:
    """Hex sha256 over everything that determines the trained teacher's weights."""
    import torch

    cfg = asdict(config)
    cfg.pop("deterministic")  # does not change the weights on CPU (see TrainConfig)
    if cfg["early_stopping_patience"] is None:  # keep the keys of teachers cached before this field existed
        cfg.pop("early_stopping_patience")
    payload = {"model": model_name, "kwargs": dict(model_kwargs), "config": cfg, "data": data.sha256,
               "num_classes": data.num_classes, "input_shape": list(data.input_shape), "torch": torch.__version__}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=list).encode()).hexdigest()


def train_or_load_teacher(model_name: str, model_kwargs: Mapping[str, Any], data: DataSplits, config: TrainConfig,
                          cache_dir: Path, progress: Progress | None = None) -> tuple[Any, dict[str, Any]]:
    """Return a trained teacher, from ``cache_dir`` when an identical one was trained before.

    Args:
        model_name, model_kwargs: passed to :func:`edgestill.models.create_model` (weights seeded by ``config.seed``).
        data: the dataset to train on; its sha256 is part of the cache key.
        config: the teacher's training config.
        cache_dir: directory holding ``teacher-<key>.safetensors`` and ``teacher-<key>.json``.
        progress: forwarded to :func:`train` on a cache miss.

    Returns:
        (model in eval mode, info) where info has ``cache`` ("hit" or "miss"), ``key``, ``path``,
        ``val_accuracy``, ``test_accuracy``, ``train_wall_s`` (of the original training) and ``load_s``.

    Raises:
        RuntimeFailure: a cached file exists but cannot be read; delete it to retrain.
    """
    from safetensors.torch import load_file, save_file

    from edgestill.models import create_model

    key = teacher_cache_key(model_name, model_kwargs, data, config)
    cache_dir = Path(cache_dir)
    weights, meta_path = cache_dir / f"teacher-{key[:16]}.safetensors", cache_dir / f"teacher-{key[:16]}.json"
    model = create_model(model_name, num_classes=data.num_classes, in_channels=data.input_shape[0],
                         seed=config.seed, **model_kwargs)
    started = time.perf_counter()
    if weights.exists() and meta_path.exists():
        try:
            model.load_state_dict(load_file(str(weights)))
            meta = json.loads(meta_path.read_text())
        except Exception as exc:  # a truncated or foreign file: say which one
            raise RuntimeFailure(f"cached teacher {weights} could not be loaded ({exc}). Delete {weights} and "
                                 f"{meta_path} to retrain it.") from exc
        model.eval()
        return model, {**meta, "cache": "hit", "path": str(weights), "load_s": time.perf_counter() - started}

    result = train(model, data, config, progress=progress)
    meta = {"key": key, "model": model_name, "kwargs": dict(model_kwargs), "val_accuracy": result.best_val_accuracy,
            "test_accuracy": evaluate(result.model, data.test), "best_epoch": result.best_epoch,
            "train_wall_s": result.wall_s, "data_sha256": data.sha256}
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = weights.with_suffix(".safetensors.tmp")
    save_file({k: v.contiguous() for k, v in result.model.state_dict().items()}, str(tmp))
    tmp.replace(weights)
    meta_path.write_text(json.dumps(meta, indent=2, default=list))
    return result.model, {**meta, "cache": "miss", "path": str(weights), "load_s": 0.0}


# ------------------------------------------------------------------------------ teacher output cache (memmap)
OUTPUTS_FORMAT = 1


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
    """Hex sha256 keying cached teacher outputs: (teacher hash, data hash, augmentation policy, feature layers)."""
    payload = {"format": OUTPUTS_FORMAT, "teacher": teacher_sha256, "data": data_sha256, "augment": augment_policy,
               "features": list(features)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True, kw_only=True, eq=False)
class TeacherOutputs:
    """Teacher outputs over the training split, row i for ``data.train`` sample i, memory-mapped from disk.

    ``logits`` is N×K float32; ``features[name]`` is N×(shape of that layer's output) float32.
    """

    logits: np.ndarray
    features: Mapping[str, np.ndarray]
    key: str
    path: Path
    hit: bool
    compute_s: float = 0.0


def _feature_file(name: str) -> str:
    return "feat-" + "".join(c if c.isalnum() or c in "-_." else "_" for c in name) + ".npy"


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

    Raises:
        ConfigError: ``augment_policy`` is not ``"none"`` (cached outputs would not match what the student sees),
            or an unknown feature layer name.
    """
    import shutil
    import tempfile

    import torch

    from edgestill.compress.distill.features import FeatureTap
    from edgestill.errors import ConfigError

    policy = str(augment_policy)
    if policy != "none":
        raise ConfigError(f"teacher outputs cannot be cached under the random augmentation {policy!r}: every epoch "
                          "shows the student different inputs. Use teacher_mode 'online' (or 'auto').")
    features = list(dict.fromkeys(features))
    key = teacher_outputs_key(teacher_fingerprint(teacher), data.sha256, policy, features)
    root = Path(cache_dir)
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
        n = len(data.train)
        was_training = teacher.training
        teacher.eval()
        arrays: dict[str, np.ndarray] = {}
        with FeatureTap(teacher, features, role="teacher", detach=True) as tap, torch.inference_mode():
            for start in range(0, n, batch_size):
                xb = torch.from_numpy(np.ascontiguousarray(data.train.x[start:start + batch_size]))
                outs = {"logits": teacher(xb), **{name: tap.outputs[name] for name in features}}
                for name, value in outs.items():
                    if name not in arrays:
                        file = tmp / ("logits.npy" if name == "logits" else _feature_file(name))
                        arrays[name] = np.lib.format.open_memmap(file, mode="w+", dtype=np.float32,
                                                                 shape=(n, *value.shape[1:]))
                    arrays[name][start:start + len(value)] = value.float().numpy()
        teacher.train(was_training)
        for arr in arrays.values():
            arr.flush()
        del arrays
        meta = {"key": key, "format": OUTPUTS_FORMAT, "augment": policy, "features": features, "n": n,
                "data_sha256": data.sha256, "compute_s": time.perf_counter() - started}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
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
