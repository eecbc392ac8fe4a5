"""Trained-model cache: a model trained on the labels alone (a built-in teacher, or the no-KD baseline student),
stored once per (role, architecture, init seed, training config, loss terms, data, torch version) and loaded on
every later run with the same inputs.

The teacher-output caches live in :mod:`edgestill.compress.distill.teacher_outputs` (the trainer uses them);
this module calls the trainer, so it sits above both.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from edgestill.compress.distill.trainer import Progress, TrainConfig, default_terms, evaluate, train
from edgestill.data.datasets import DataSplits
from edgestill.errors import ConfigError, RuntimeFailure
from edgestill.outdir import replacing, write_text_atomic

Role = Literal["teacher", "baseline"]
ROLES = ("teacher", "baseline")
_CACHE_FORMAT = 2


def train_cache_key(model_name: str, model_kwargs: Mapping[str, Any], data: DataSplits, config: TrainConfig, *,
                    role: Role, seed: int) -> str:
    """Hex sha256 over everything that determines the trained weights.

    That is the role, the architecture and its options, the weight-initialisation ``seed``, every
    :class:`TrainConfig` field, the loss terms (plain cross-entropy: no teacher), the data (sha256, classes,
    input shape) and the torch version.
    """
    import torch

    terms = [t.to_dict() for t in default_terms(config, has_teacher=False)]
    payload = {"format": _CACHE_FORMAT, "role": role, "model": model_name, "kwargs": dict(model_kwargs),
               "init_seed": seed, "config": asdict(config), "terms": terms, "data": data.sha256,
               "num_classes": data.num_classes, "input_shape": list(data.input_shape), "torch": torch.__version__}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=list).encode()).hexdigest()


@dataclass(frozen=True, kw_only=True)
class TrainCacheInfo:
    """What :func:`train_or_load` found or did: ``cache`` is "hit" or "miss"; ``path`` the weights file.

    ``val_accuracy``/``test_accuracy``/``best_epoch``/``history``/``train_wall_s`` are those of the original
    training (also on a hit); ``load_s`` is the time to load the cached weights (0 on a miss).
    """

    role: Role
    cache: Literal["hit", "miss"]
    key: str
    path: Path
    model: str
    kwargs: dict[str, Any]
    seed: int
    data_sha256: str
    val_accuracy: float
    test_accuracy: float
    best_epoch: int
    train_wall_s: float
    load_s: float = 0.0
    history: tuple[dict[str, Any], ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "path": str(self.path), "history": [dict(h) for h in self.history]}


def train_or_load(model_name: str, model_kwargs: Mapping[str, Any], data: DataSplits, config: TrainConfig, *,
                  cache_dir: Path, role: Role = "teacher", seed: int | None = None,
                  progress: Progress | None = None) -> tuple[Any, TrainCacheInfo]:
    """Return a model trained with cross-entropy on ``data``, from ``cache_dir`` when an identical one was trained.

    Args:
        model_name, model_kwargs: passed to :func:`edgestill.models.create_model`.
        data: the dataset to train on; its sha256 is part of the key.
        config: the training config (every field is part of the key).
        cache_dir: directory holding ``<role>-<key>.safetensors`` and ``<role>-<key>.json``.
        role: "teacher" (a built-in teacher) or "baseline" (the no-KD student); part of the key and file name.
        seed: the weight-initialisation seed (default ``config.seed``, which also seeds the batch order).
        progress: forwarded to :func:`train` on a miss.

    Returns:
        (model in eval mode, :class:`TrainCacheInfo`).

    Raises:
        ConfigError: ``role`` or ``seed`` is not valid.
        RuntimeFailure: a cached file exists but cannot be read; the message names the files to delete.
    """
    from safetensors.torch import load_file, save_file

    from edgestill.models import create_model

    if role not in ROLES:
        raise ConfigError(f"role={role!r} is not valid; use one of {', '.join(ROLES)}.")
    seed = config.seed if seed is None else seed
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer (the weight-initialisation seed), got {seed!r}.")
    key = train_cache_key(model_name, model_kwargs, data, config, role=role, seed=seed)
    cache_dir = Path(cache_dir)
    weights, meta_path = cache_dir / f"{role}-{key[:16]}.safetensors", cache_dir / f"{role}-{key[:16]}.json"
    model = create_model(model_name, num_classes=data.num_classes, in_channels=data.input_shape[0], seed=seed,
                         **model_kwargs)
    started = time.perf_counter()
    if weights.exists() and meta_path.exists():
        try:
            model.load_state_dict(load_file(str(weights)))
            meta = json.loads(meta_path.read_text())
            if meta.get("key") != key:
                raise ValueError(f"{meta_path.name} holds key {meta.get('key')!r}, not {key!r}")
        except Exception as exc:  # a truncated or foreign file: say which one
            raise RuntimeFailure(f"cached {role} {weights} could not be loaded ({exc}). Delete {weights} and "
                                 f"{meta_path} to retrain it.") from exc
        model.eval()
        return model, _info(meta, "hit", weights, load_s=time.perf_counter() - started)

    result = train(model, data, config, progress=progress)
    meta = {"key": key, "role": role, "model": model_name, "kwargs": dict(model_kwargs), "seed": seed,
            "data_sha256": data.sha256, "val_accuracy": result.best_val_accuracy,
            "test_accuracy": evaluate(result.model, data.test), "best_epoch": result.best_epoch,
            "train_wall_s": result.wall_s, "history": [asdict(h) for h in result.history]}
    cache_dir.mkdir(parents=True, exist_ok=True)
    with replacing(weights) as tmp:
        save_file({k: v.contiguous() for k, v in result.model.state_dict().items()}, str(tmp))
    write_text_atomic(meta_path, json.dumps(meta, indent=2, default=list))  # last: an entry counts once both are complete
    return result.model, _info(meta, "miss", weights, load_s=0.0)


def _info(meta: Mapping[str, Any], cache: Literal["hit", "miss"], path: Path, *, load_s: float) -> TrainCacheInfo:
    return TrainCacheInfo(role=meta["role"], cache=cache, key=meta["key"], path=path, model=meta["model"],
                          kwargs=dict(meta["kwargs"]), seed=meta["seed"], data_sha256=meta["data_sha256"],
                          val_accuracy=meta["val_accuracy"], test_accuracy=meta["test_accuracy"],
                          best_epoch=meta["best_epoch"], train_wall_s=meta["train_wall_s"], load_s=load_s,
                          history=tuple(meta.get("history", ())))


def train_or_load_teacher(model_name: str, model_kwargs: Mapping[str, Any], data: DataSplits, config: TrainConfig,
                          cache_dir: Path, progress: Progress | None = None) -> tuple[Any, dict[str, Any]]:
    """:func:`train_or_load` with ``role="teacher"`` and ``seed=config.seed``; the info as a dict.

    Returns:
        (model in eval mode, info) where info has ``cache`` ("hit" or "miss"), ``key``, ``path``,
        ``val_accuracy``, ``test_accuracy``, ``best_epoch``, ``train_wall_s`` (of the original training) and
        ``load_s``.

    Raises:
        RuntimeFailure: a cached file exists but cannot be read; delete it to retrain.
    """
    model, info = train_or_load(model_name, model_kwargs, data, config, cache_dir=cache_dir, role="teacher",
                                progress=progress)
    return model, info.to_dict()
