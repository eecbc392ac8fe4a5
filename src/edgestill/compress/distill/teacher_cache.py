"""Train a teacher once per (architecture, config, data, torch version) and reload it from disk afterwards."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from edgestill.compress.distill.trainer import Progress, TrainConfig, evaluate, train
from edgestill.data.datasets import DataSplits
from edgestill.errors import RuntimeFailure


def teacher_cache_key(model_name: str, model_kwargs: Mapping[str, Any], data: DataSplits, config: TrainConfig) -> str:
    """Hex sha256 over everything that determines the trained teacher's weights."""
    import torch

    payload = {"model": model_name, "kwargs": dict(model_kwargs), "config": asdict(config), "data": data.sha256,
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
