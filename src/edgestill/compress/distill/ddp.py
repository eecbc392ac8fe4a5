"""Multi-process data-parallel distillation through torch's own launcher (torchrun + DistributedDataParallel).

Run one job on N processes of this machine (gloo backend, CPU)::

    torchrun --standalone --nproc_per_node 2 -m edgestill.compress.distill.ddp JOB.json

or from Python with :func:`launch_ddp`. Across machines, use torchrun's ``--nnodes/--rdzv-endpoint`` options as
usual; every node needs the job's data and teacher files at the same paths. :func:`~edgestill.compress.distill
.trainer.train` does the data-parallel part itself (it sees that ``torch.distributed`` is initialised); this module
only builds the job's data, models and loss terms on every rank and writes rank 0's result.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from edgestill.data.datasets import DataSplits, Split
from edgestill.errors import ConfigError, InputError, RuntimeFailure, did_you_mean


@dataclass(frozen=True, kw_only=True)
class DDPJob:
    """One data-parallel training job, serialisable to JSON.

    Data is a built-in ``dataset`` (name, size, seed) or ``data_npz`` written by :func:`save_splits`. The teacher
    is ``teacher`` (a model name with ``teacher_kwargs`` and ``teacher_weights`` safetensors), or
    ``teacher_logits`` (an ``.npy`` aligned with the training split), or neither.
    """

    out: str
    student: str
    student_kwargs: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    terms: list[dict[str, Any]] | None = None
    dataset: str | None = None
    dataset_size: str = "default"
    dataset_seed: int = 0
    data_npz: str | None = None
    teacher: str | None = None
    teacher_kwargs: dict[str, Any] = field(default_factory=dict)
    teacher_weights: str | None = None
    teacher_logits: str | None = None
    checkpoint_dir: str | None = None
    cache_dir: str | None = None
    threads: int = 1

    def __post_init__(self) -> None:
        if (self.dataset is None) == (self.data_npz is None):
            raise ConfigError("ddp job: give exactly one of 'dataset' (a built-in name) or 'data_npz' (from save_splits).")
        if self.teacher is not None and self.teacher_logits is not None:
            raise ConfigError("ddp job: give either 'teacher' (+ teacher_weights) or 'teacher_logits', not both.")
        if self.teacher is not None and self.teacher_weights is None:
            raise ConfigError("ddp job: 'teacher' needs 'teacher_weights' (a safetensors file of the trained teacher).")
        if not isinstance(self.threads, int) or self.threads < 1:
            raise ConfigError(f"ddp job: threads must be a positive integer, got {self.threads!r}.")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DDPJob:
        """Build a job from plain data; an unknown key is a ConfigError naming the closest valid key."""
        valid = [f.name for f in fields(cls)]
        for key in d:
            if key not in valid:
                raise ConfigError(f"ddp job: unknown key {key!r}.{did_you_mean(key, valid)} Valid keys: {', '.join(valid)}.")
        return cls(**d)

    def write(self, path: Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(asdict(self), indent=2))
        return path


def save_splits(data: DataSplits, path: Path) -> Path:
    """Write a DataSplits to one ``.npz`` that :func:`load_splits` reads back identically (same sha256)."""
    meta = {"name": data.name, "size": data.size, "seed": data.seed, "num_classes": data.num_classes,
            "input_shape": list(data.input_shape), "class_names": list(data.class_names), "sha256": data.sha256}
    arrays = {f"{s}_{k}": getattr(getattr(data, s), k) for s in ("train", "val", "test") for k in ("x", "y", "ids")}
    path = Path(path)
    with open(path, "wb") as fh:
        np.savez(fh, meta=np.array(json.dumps(meta)), **arrays)
    return path


def load_splits(path: Path) -> DataSplits:
    """Read a file written by :func:`save_splits`.

    Raises:
        InputError: the file is missing or was not written by :func:`save_splits`.
    """
    try:
        with np.load(Path(path), allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            splits = {s: Split(x=z[f"{s}_x"], y=z[f"{s}_y"], ids=z[f"{s}_ids"]) for s in ("train", "val", "test")}
    except (OSError, KeyError, ValueError) as exc:
        raise InputError(f"{path} is not a data file written by save_splits ({exc}).") from exc
    return DataSplits(name=meta["name"], size=meta["size"], seed=meta["seed"], num_classes=meta["num_classes"],
                      input_shape=tuple(meta["input_shape"]), class_names=tuple(meta["class_names"]),
                      sha256=meta["sha256"], **splits)


def run_job(job: DDPJob) -> dict[str, Any]:
    """Run ``job`` in this process (one rank when torch.distributed is initialised); rank 0 writes the result.

    Returns:
        The result dict (also ``<out>/result.json`` on rank 0): accuracies, history, world size, wall time.
    """
    import torch
    import torch.distributed as dist
    from safetensors.torch import load_file, save_file

    from edgestill.compress.distill.losses import parse_terms
    from edgestill.compress.distill.trainer import TrainConfig, evaluate, train
    from edgestill.data import load_dataset
    from edgestill.models import create_model

    torch.set_num_threads(job.threads)
    world = dist.get_world_size() if dist.is_initialized() else 1
    rank = dist.get_rank() if dist.is_initialized() else 0
    data = (load_dataset(job.dataset, seed=job.dataset_seed, size=job.dataset_size) if job.dataset
            else load_splits(Path(job.data_npz)))
    config = TrainConfig(**job.train)
    student = create_model(job.student, num_classes=data.num_classes, in_channels=data.input_shape[0],
                           seed=config.seed, **job.student_kwargs)
    teacher = teacher_logits = None
    if job.teacher is not None:
        teacher = create_model(job.teacher, num_classes=data.num_classes, in_channels=data.input_shape[0],
                               **job.teacher_kwargs)
        teacher.load_state_dict(load_file(job.teacher_weights))
        teacher.eval()
    elif job.teacher_logits is not None:
        teacher_logits = np.load(job.teacher_logits)
    terms = parse_terms(job.terms) if job.terms else None
    started = time.perf_counter()
    result = train(student, data, config, teacher=teacher, teacher_logits=teacher_logits, terms=terms,
                   checkpoint_dir=Path(job.checkpoint_dir) if job.checkpoint_dir else None,
                   cache_dir=Path(job.cache_dir) if job.cache_dir else None)
    out = {"world_size": world, "best_val_accuracy": result.best_val_accuracy, "best_epoch": result.best_epoch,
           "final_val_accuracy": result.final_val_accuracy, "test_accuracy": evaluate(result.model, data.test),
           "teacher_mode": result.teacher_mode, "resumed_from_epoch": result.resumed_from_epoch,
           "history": [asdict(h) for h in result.history], "wall_s": time.perf_counter() - started}
    if rank == 0:
        out_dir = Path(job.out)
        out_dir.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in result.model.state_dict().items()}, str(out_dir / "student.safetensors"))
        from edgestill.outdir import write_text_atomic

        write_text_atomic(out_dir / "result.json", json.dumps(out, indent=2))
    return out


def launch_ddp(job: DDPJob, nproc: int, *, timeout_s: float | None = None) -> dict[str, Any]:
    """Run ``job`` on ``nproc`` local processes with ``torchrun --standalone`` and return rank 0's result.

    Raises:
        ConfigError: ``nproc`` < 1.
        RuntimeFailure: the launcher failed or timed out (the tail of its output is in the message).
    """
    if not isinstance(nproc, int) or isinstance(nproc, bool) or nproc < 1:
        raise ConfigError(f"nproc must be a positive integer, got {nproc!r}.")
    out = Path(job.out)
    out.mkdir(parents=True, exist_ok=True)
    job_path = job.write(out / "job.json")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
           "-m", "edgestill.compress.distill.ddp", str(job_path)]
    env = {**os.environ, "OMP_NUM_THREADS": str(job.threads)}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired as exc:
        raise RuntimeFailure(f"torchrun with {nproc} processes did not finish within {timeout_s} s.") from exc
    if proc.returncode != 0 or not (out / "result.json").is_file():
        tail = (proc.stdout + proc.stderr)[-3000:]
        raise RuntimeFailure(f"torchrun with {nproc} processes failed (exit {proc.returncode}):\n{tail}")
    return json.loads((out / "result.json").read_text())


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m edgestill.compress.distill.ddp JOB.json`` (one rank under torchrun)."""
    import torch.distributed as dist

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: torchrun --standalone --nproc_per_node N -m edgestill.compress.distill.ddp JOB.json", file=sys.stderr)
        return 2
    try:
        job = DDPJob.from_dict(json.loads(Path(args[0]).read_text()))
    except (OSError, ValueError, TypeError) as exc:
        print(f"error: cannot read the job file {args[0]}: {exc}", file=sys.stderr)
        return 2
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    distributed = "WORLD_SIZE" in os.environ
    if distributed:
        dist.init_process_group("gloo")
    try:
        run_job(job)
    finally:
        if distributed:
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
