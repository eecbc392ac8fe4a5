"""The stages of the chain, one function each: teacher, distill, export (+ int8), evaluate, bench.

Each takes the recipe's typed config for its stage and what the stages before it produced; the engine in
:mod:`edgestill.chain.run` owns their order, resumption, output folders, reporting and the results store.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgestill.chain.recipe import Recipe, StudentConfig, TeacherConfig
from edgestill.errors import ConfigError, InputError

Progress = Callable[..., None]
VALIDATION_SAMPLES = 500  # test samples each file is compared with torch on (parity); accuracy uses the whole split


def _file_sha(path: Path) -> str:
    from edgestill.artifact import sha256_file

    return sha256_file(path)


def macs_per_sample(model: Any, data: Any) -> int | None:
    """Multiply-accumulates of one forward pass on one sample (conv, linear, matmul), or None for a program."""
    import torch

    from edgestill.models.costs import model_costs

    try:
        return int(model_costs(model, (torch.from_numpy(np.ascontiguousarray(data.test.x[:1])),))["macs"])
    except Exception:  # an inference-only program (TorchScript / torch.export) cannot be counted this way
        return None


def _build_model(spec: StudentConfig | TeacherConfig, data: Any, *, role: str, seed: int) -> Any:
    """A fresh model from a built-in name (with kwargs) or a factory, with checkpoint weights when given."""
    from edgestill.models import MODELS, create_model
    from edgestill.models.loading import load_checkpoint, resolve_model

    name = spec.model
    if name is None:
        raise ConfigError(f"{role}.model is not set; give a built-in model name or a 'package.module:function' factory.")
    if ":" in name:
        if spec.kwargs:
            raise ConfigError(f"{role}.kwargs apply to built-in models; the factory {name!r} takes its settings in code "
                              "(give it default arguments). Remove the kwargs.")
        import torch

        with torch.random.fork_rng(devices=[]):  # a factory's initial weights follow the recipe's seed
            torch.manual_seed(seed)
            model = resolve_model(name, num_classes=data.num_classes)
    else:
        MODELS.get(name)  # unknown name -> UnknownNameError with the closest
        extra = {} if len(data.input_shape) != 3 else {"in_channels": data.input_shape[0]}
        model = create_model(name, num_classes=data.num_classes, seed=seed, **extra, **spec.kwargs)
    if spec.checkpoint is not None:
        model = load_checkpoint(model, spec.checkpoint, trust=spec.trust_checkpoint)
    return model


def _output_shape(model: Any, x: np.ndarray, role: str) -> tuple[int, ...]:
    import torch

    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.from_numpy(np.ascontiguousarray(x[:2])))
    except Exception as exc:  # user models: whatever they raise is a mismatch with the data
        raise InputError(f"the {role} cannot run on the data's samples of shape {list(x.shape[1:])} "
                         f"({type(exc).__name__}: {exc}). Give a {role} that takes this input shape.") from None
    finally:
        model.train(was)
    if isinstance(out, (tuple, list)):
        out = out[0]
    return tuple(out.shape)


def _inference_only(fn: Any) -> Any:
    """Wrap a TorchScript or torch.export module so the trainer can call it; it cannot be trained or hooked."""
    import torch

    class InferenceOnly(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            object.__setattr__(self, "_fn", fn)  # not a submodule: nothing to train, no layers to hook

        def forward(self, x: Any) -> Any:
            with torch.no_grad():
                if not self.__dict__.get("_one_by_one"):
                    try:
                        return self._fn(x)
                    except Exception:  # a program exported with a fixed batch of 1 refuses other batch sizes
                        if x.shape[0] == 1:
                            raise
                        object.__setattr__(self, "_one_by_one", True)
                return torch.cat([self._fn(x[i:i + 1]) for i in range(x.shape[0])])

        def train(self, mode: bool = True) -> InferenceOnly:  # exported programs refuse .train()/.eval()
            return self

    return InferenceOnly()


def _load_program(path: Path) -> Any:
    import torch

    if not path.is_file():
        raise InputError(f"teacher.program {path} does not exist. Pass a TorchScript (.pt) or torch.export (.pt2) file.")
    if path.suffix.lower() == ".pt2":
        from edgestill.models.loading import load_exported_program

        return _inference_only(load_exported_program(path).module())
    try:
        return _inference_only(torch.jit.load(str(path), map_location="cpu").eval())
    except Exception as exc:  # torch raises RuntimeError/zip errors alike for a file that is not TorchScript
        raise InputError(f"teacher.program {path} is not a TorchScript file ({type(exc).__name__}). Save it with "
                         "torch.jit.save(torch.jit.script(model), path), or export a .pt2 with torch.export.save.") from None


def teacher_stage(recipe: Recipe, data: Any, log: Any, progress: Any, *,
                  cache_dir: Path) -> tuple[Any, np.ndarray | None, dict[str, Any]]:
    """(torch teacher or None, black-box logits aligned with data.train or None, info for the report)."""
    from edgestill.compress.distill.blackbox import teacher_logits_from_artifact, teacher_logits_from_predictions
    from edgestill.compress.distill.teacher_cache import train_or_load_teacher
    from edgestill.compress.distill.trainer import evaluate, train
    from edgestill.models import count_parameters

    t = recipe.teacher
    if t is None:
        return None, None, {"source": "none"}
    info: dict[str, Any] = {"source": t.source}
    if t.source == "predictions":
        logits = teacher_logits_from_predictions(t.predictions, data, kind=t.kind)
        info.update(path=str(t.predictions), kind=t.kind, train_accuracy=float((logits.argmax(1) == data.train.y).mean()))
        return None, logits, info
    if t.source == "artifact":
        logits = teacher_logits_from_artifact(t.artifact, data.train, num_classes=data.num_classes, runtime=t.runtime)
        info.update(path=str(t.artifact), train_accuracy=float((logits.argmax(1) == data.train.y).mean()))
        return None, logits, info
    if t.source == "program":
        model = _load_program(t.program)
        info.update(path=str(t.program))
    elif t.checkpoint is None and ":" not in t.model and len(data.input_shape) == 3:
        model, cache = train_or_load_teacher(t.model, t.kwargs, data, t.train,
                                             cache_dir=cache_dir, progress=progress)
        info.update(model=t.model, kwargs=t.kwargs, cache=cache.get("cache"), trained_epochs=t.train.epochs)
    else:
        model = _build_model(t, data, role="teacher", seed=0)
        info.update(model=t.model, kwargs=t.kwargs, checkpoint=None if t.checkpoint is None else str(t.checkpoint))
        if t.checkpoint is None:
            log(f"training teacher {t.model} for {t.train.epochs} epoch(s)")
            model = train(model, data, t.train, progress=progress).model
    model.eval()
    info["test_accuracy"] = evaluate(model, data.test)
    if t.source != "program":
        info["parameters"] = count_parameters(model)
        info["macs"] = macs_per_sample(model, data)
    return model, None, info


def teacher_test_logits(teacher: Any, recipe: Recipe, data: Any, *, cache_dir: Path) -> np.ndarray | None:
    """The teacher's outputs on the test split, for each artifact's agreement with it; None when not available.

    A torch teacher's come from the teacher-outputs cache (computed once per teacher and data); an artifact
    teacher runs on its runtime. A predictions file has answers for the training samples only: no agreement.
    """
    from edgestill.compress.distill.teacher_outputs import teacher_logits_for

    if teacher is not None:
        outs = teacher_logits_for(teacher, data.test.x, cache_dir=cache_dir / "teacher-outputs",
                                  key_parts={"data": data.sha256, "split": "test"})
        return np.asarray(outs.logits)
    t = recipe.teacher
    if t is not None and t.source == "artifact":
        from edgestill.compress.distill.blackbox import teacher_logits_from_artifact

        return teacher_logits_from_artifact(t.artifact, data.test, num_classes=data.num_classes, runtime=t.runtime)
    return None


def _check_shapes(teacher: Any, logits: np.ndarray | None, student: Any, data: Any) -> None:
    """A teacher whose output shape differs from the student's cannot teach it: say both shapes."""
    s_shape = _output_shape(student, data.train.x, "student")
    if len(s_shape) != 2 or s_shape[1] != data.num_classes:
        raise InputError(f"the student outputs shape {list(s_shape)} for 2 samples but the data has {data.num_classes} "
                         f"classes; build it with num_classes={data.num_classes}.")
    if teacher is not None:
        t_shape = _output_shape(teacher, data.train.x, "teacher")
        if t_shape != s_shape:
            raise InputError(f"teacher output shape {list(t_shape)} does not match the student's {list(s_shape)} (for 2 "
                             f"samples of {data.name!r}, {data.num_classes} classes). Teacher and student must score the "
                             "same classes in the same order.")
    if logits is not None and logits.shape[1:] != s_shape[1:]:
        raise InputError(f"teacher outputs have shape {list(logits.shape)} but the student's are {list(s_shape)} per 2 "
                         "samples; they must score the same classes.")


def _save_student(model: Any, path: Path) -> str:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    from edgestill.outdir import replacing

    with replacing(path) as tmp:
        save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(tmp))
    return _file_sha(path)


def distill_stage(recipe: Recipe, data: Any, teacher: Any, logits: np.ndarray | None, out: Path, key: str, log: Any,
                  progress: Any, *, cache_dir: Path) -> tuple[Any, dict[str, Any]]:
    from edgestill.compress.distill.trainer import evaluate, train, train_generations
    from edgestill.models import count_parameters

    d = recipe.distill
    seed = d.train.seed

    def make_student() -> Any:
        return _build_model(recipe.student, data, role="student", seed=seed)

    student = make_student()
    _check_shapes(teacher, logits, student, data)
    augment = recipe.data.augment if recipe.data.augment.active else None
    common = dict(teacher_mode=d.teacher_mode, augment=augment, progress=progress, log=log,
                  cache_dir=cache_dir / "teacher-outputs")
    ckpt = out / "checkpoints" / "train-state"
    key_file = ckpt / "recipe-key"
    if ckpt.exists() and (not key_file.is_file() or key_file.read_text() != key):
        shutil.rmtree(ckpt)  # the trainer's state of another recipe: start this one fresh
    ckpt.mkdir(parents=True, exist_ok=True)
    key_file.write_text(key)
    if d.generations > 1:
        results = train_generations(make_student, data, d.train, generations=d.generations, teacher=teacher,
                                    terms=d.losses, checkpoint_dir=ckpt, **common)
        result = results[-1]  # the last generation is the student
        gens = [{"generation": i + 1, "best_val_accuracy": r.best_val_accuracy, "test_accuracy": evaluate(r.model, data.test)}
                for i, r in enumerate(results)]
    else:
        result = train(student, data, d.train, teacher=teacher, teacher_logits=logits, terms=d.losses,
                       checkpoint_dir=ckpt, **common)
        gens = []
    model = result.model.eval()
    sha = _save_student(model, out / "checkpoints" / "student.safetensors")
    info: dict[str, Any] = {
        "model": recipe.student.model, "kwargs": recipe.student.kwargs, "parameters": count_parameters(model),
        "macs": macs_per_sample(model, data),
        "losses": [t.to_dict() for t in d.losses], "test_accuracy": evaluate(model, data.test),
        "best_val_accuracy": result.best_val_accuracy, "best_epoch": result.best_epoch,
        "epochs_run": len(result.history), "stopped_early": result.stopped_early,
        "resumed_from_epoch": result.resumed_from_epoch, "teacher_mode": result.teacher_mode,
        "wall_s": round(result.wall_s, 3), "checkpoint": "checkpoints/student.safetensors", "sha256": sha,
        "history": [{"epoch": h.epoch, "train_loss": h.train_loss, "train_accuracy": h.train_accuracy,
                     "val_accuracy": h.val_accuracy} for h in result.history],
    }
    if gens:
        info["generations"] = gens
    if d.baseline:
        info.update(_baseline(recipe, data, augment, make_student, log, progress, cache_dir=cache_dir))
        info["kd_gain_points"] = round(100 * (info["test_accuracy"] - info["baseline_test_accuracy"]), 2)
    return model, info


def _baseline(recipe: Recipe, data: Any, augment: Any, make_student: Callable[[], Any], log: Any, progress: Any, *,
              cache_dir: Path) -> dict[str, Any]:
    """The same student trained without a teacher (cross-entropy only, same seed and schedule): what KD gained.

    A built-in student trained from scratch without augmentation is the same every time for the same data,
    config and seed, so it comes from the trained-model cache (like the teacher) after its first run.
    """
    from edgestill.compress.distill.losses import LossTerm
    from edgestill.compress.distill.teacher_cache import train_or_load
    from edgestill.compress.distill.trainer import evaluate, train

    s, train_cfg = recipe.student, recipe.distill.train
    if augment is None and s.checkpoint is None and ":" not in s.model and len(data.input_shape) == 3:
        model, cache = train_or_load(s.model, s.kwargs, data, train_cfg, cache_dir=cache_dir, role="baseline",
                                     seed=train_cfg.seed, progress=progress)
        log(f"no-KD baseline: cache {cache.cache} ({cache.path})")
        return {"baseline_test_accuracy": evaluate(model, data.test), "baseline_cache": cache.cache}
    log("training the no-KD baseline (cross-entropy only, same seed and schedule)")
    base = train(make_student(), data, train_cfg, terms=(LossTerm(name="ce"),), augment=augment, progress=progress)
    return {"baseline_test_accuracy": evaluate(base.model, data.test), "baseline_cache": None}


def load_student(student: StudentConfig, seed: int, data: Any, out: Path) -> Any:
    """The student the distill stage saved in ``out``, rebuilt from its config and loaded from its checkpoint."""
    from safetensors.torch import load_file

    model = _build_model(student, data, role="student", seed=seed)
    model.load_state_dict(load_file(str(out / "checkpoints" / "student.safetensors")))
    return model.eval()


def export_stage(recipe: Recipe, data: Any, student: Any, out: Path, progress: Progress) -> list[dict[str, Any]]:
    """Every format × precision of the export section: floats validated against torch, int8 through the quantize
    verb and its accuracy budget (:func:`edgestill.chain.convert.convert`). One row per cell."""
    import torch

    from edgestill.chain.convert import convert
    from edgestill.compress.quantize.calibration import select_calibration

    if recipe.export is None:
        return []
    spec = dataclasses.replace(recipe.export, strict=False)  # a failing cell is a failed check, not a stopped run
    art_dir = out / "artifacts"
    if art_dir.exists():
        shutil.rmtree(art_dir)  # this run's folder (claimed by the engine): the artifacts of an older recipe go
    calib = select_calibration(len(data.train.y), labels=data.train.y, n=recipe.quantize.calibration_samples,
                               seed=recipe.distill.train.seed)
    kwargs = dict(quantize=recipe.quantize, out_dir=art_dir, validation_inputs=data.test.x[:VALIDATION_SAMPLES],
                  calibration=data.train.x[calib], calibration_ids=[str(i) for i in data.train.ids[calib]],
                  eval_x=data.test.x, eval_y=data.test.y, source={"student": recipe.student.model, "recipe": recipe.name})
    example = (torch.from_numpy(data.test.x[:1]),)
    here, there = _split_formats(spec.formats)
    if not there:
        results = convert(student, example, export=spec, progress=lambda i, n, label="": progress(i, n, label), **kwargs)
    else:  # the slow converter's cells in a second process while the others run here (the files do not overlap)
        from concurrent.futures import ProcessPoolExecutor
        from multiprocessing import get_context

        with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
            shape = _DataShape(num_classes=data.num_classes, input_shape=tuple(data.input_shape))
            future = pool.submit(_convert_saved_student, recipe.student, recipe.distill.train.seed, shape, out, example,
                                 dataclasses.replace(spec, formats=there), kwargs)
            n_here = len(here) * len(spec.precisions)
            results = convert(student, example, export=dataclasses.replace(spec, formats=here),
                              progress=lambda i, n, label="": progress(i, n_here + len(there) * len(spec.precisions),
                                                                        label), **kwargs)
            progress(n_here, n_here + len(there) * len(spec.precisions), f"waiting for {', '.join(there)}")
            results += future.result()
        results.sort(key=lambda r: spec.formats.index(str(r.format)))  # stable: each format's cells keep their order
    return export_rows(results, out)


def export_rows(results: list[Any], out: Path) -> list[dict[str, Any]]:
    """One report row per ExportResult: the published artifact's manifest, size and parity, or why it failed."""
    rows = []
    for r in results:
        row: dict[str, Any] = {"artifact": r.name, "format": str(r.format), "precision": str(r.precision),
                               "passed": bool(r.passed and r.artifact is not None), "error": r.error,
                               "failure": getattr(r, "failure", None),
                               "quantization": getattr(r, "quantization", None) or None, "notes": list(r.notes)}
        if row["passed"]:
            art = r.artifact
            row.update(manifest=str(art.manifest_path.relative_to(out)), model_bytes=art.model_bytes,
                       precision=str(art.precision), parity=(art.validation or {}).get("outputs", []))
        else:
            row.update(rejected_files=[str(p.relative_to(out)) for p in r.rejected_files], parity=
                       r.report.to_dict().get("outputs", []) if r.report else [])
        rows.append(row)
    return rows


@dataclasses.dataclass(frozen=True)
class _DataShape:
    """What building a student needs to know of the data (sent to the second process instead of the data)."""

    num_classes: int
    input_shape: tuple[int, ...]


def _convert_saved_student(student: StudentConfig, seed: int, shape: _DataShape, out: Path, example: Any, export: Any,
                           kwargs: dict[str, Any]) -> list[Any]:
    """``convert`` of the student saved in ``out`` (runs in the second process: models do not pickle)."""
    from edgestill.chain.convert import convert

    return convert(load_student(student, seed, shape, out), example, export=export, **kwargs)


SLOW_FORMATS = ("tflite",)  # litert-torch takes ~12 s a file here whatever the model: converted in a second process


def _split_formats(formats: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(formats converted here, formats converted in a second process): the slow ones go there when there are
    others to overlap them with and a second CPU to run them on."""
    import os

    there = tuple(f for f in formats if f in SLOW_FORMATS)
    here = tuple(f for f in formats if f not in there)
    if not here or not there or (os.cpu_count() or 1) < 2:
        return tuple(formats), ()
    return here, there


def evaluate_stage(rows: list[dict[str, Any]], data: Any, out: Path, torch_accuracy: float,
                   teacher_logits: np.ndarray | None, progress: Progress) -> None:
    """Score every published artifact on its own runtime over the whole test split (in place on ``rows``).

    The same functions the runner uses on a device: test accuracy and its drop vs the torch student, and top-1
    agreement and mean KL(teacher || artifact) against the teacher's outputs on the same samples.
    """
    from edgestill.runtimes import RuntimeOptions, load
    from edgestill.runtimes.accuracy import accuracy_of, session_logits, teacher_agreement

    todo = [r for r in rows if r["passed"]]
    for i, row in enumerate(todo):
        progress(i, len(todo), row["artifact"])
        session = load(out / row["manifest"], RuntimeOptions(threads=1))
        logits = session_logits(session, data.test.x)
        acc = accuracy_of(logits, data.test.y).value
        row.update(runtime=session.runtime, test_accuracy=acc, n_test=len(data.test.y),
                   accuracy_drop_points=round(100 * (torch_accuracy - acc), 2))
        agree, kl = teacher_agreement(logits, teacher_logits) if teacher_logits is not None else (None, None)
        row.update(teacher_top1_agreement=agree, teacher_kl=None if kl is None else round(kl, 6))
    progress(len(todo), len(todo), "done")


def bench_cells(recipe: Recipe, rows: list[dict[str, Any]]) -> int:
    """How many cells the bench stage measures or estimates (its progress total)."""
    spec = recipe.bench
    if spec is None:
        return 0
    passed = sum(1 for r in rows if r["passed"])
    return passed * len(spec.threads) * (spec.rounds * len(spec.devices) + len(spec.estimate))


def bench_stage(recipe: Recipe, rows: list[dict[str, Any]], out: Path, progress: Progress, *, data: Any = None,
                teacher_logits: np.ndarray | None = None) -> list[Any]:
    """Latency of every published artifact × thread count on every device of ``bench.devices`` (``host`` here, the
    others through their inventory transport: SSH or ADB), the whole list ``bench.rounds`` times interleaved, a cell's
    record its median round; then an estimate per artifact × thread count for every profile of ``bench.estimate``.

    On the host, accuracy and teacher agreement come from the evaluate stage; on another device they are measured
    there, on its own runtime (int8 kernels differ between CPUs): the test split and the teacher's outputs travel with
    the job as ``checkpoints/device-eval.npz``.

    Returns the Measurements (raw samples kept; estimates are ``kind="estimated"``), in cell order; ``rows`` gain a
    ``measurements`` list (records without raw samples).
    """
    from edgestill.benchmarks.bench import HOST, benchmark_matrix, median_round
    from edgestill.record import Accuracy
    from edgestill.runtimes import RuntimeOptions

    spec = recipe.bench
    todo = [row for row in rows if row["passed"]]
    if spec is None or not todo:
        return []
    cells = [(row, t) for row in todo for t in spec.threads]
    manifests = [out / row["manifest"] for row in todo]
    total = bench_cells(recipe, rows)
    done = 0

    def advance(i: int, n: int, label: str = "") -> None:
        progress(done + i, total, label)

    measurements = []
    for device in spec.devices:
        if device == HOST:
            ms = benchmark_matrix(manifests, spec.threads, options=RuntimeOptions(), bench=spec.timing,
                                  rounds=spec.rounds, progress=advance, prompt_tokens=spec.prompt_tokens,
                                  gen_tokens=spec.gen_tokens)
        else:
            ms = _bench_remote(spec, device, manifests, out, data, teacher_logits, advance, len(cells))
        for i, (row, threads) in enumerate(cells):
            m = median_round(ms[i::len(cells)])  # rounds outer, then artifacts, then threads
            if device == HOST:
                if row.get("test_accuracy") is not None:
                    m.accuracy = Accuracy(metric=row.get("accuracy_metric", "top1"), value=row["test_accuracy"],
                                          n=int(row["n_test"]))
                m.teacher_top1_agreement, m.teacher_kl = row.get("teacher_top1_agreement"), row.get("teacher_kl")
                m.teacher_cosine, m.retrieval_k = row.get("teacher_cosine"), row.get("retrieval_k")  # an embedder's
                m.teacher_retrieval_agreement = row.get("teacher_retrieval_agreement")
                m.provenance["device"] = HOST
            measurements.append(m)
            row.setdefault("measurements", []).append(m.to_dict(with_samples=True))  # raw samples: `edgestill gate` reads them
        done += spec.rounds * len(cells)
    for name in spec.estimate:
        for i, (row, threads) in enumerate(cells):
            advance(i, len(cells), f"estimate {name}")
            m = _estimate(spec, name, out / row["manifest"], threads)
            if m is None:
                row.setdefault("estimate_skipped", []).append(name)
                continue
            measurements.append(m)
            row.setdefault("measurements", []).append(m.to_dict())
        done += len(cells)
    progress(total, total, "done")
    return measurements


def _bench_remote(spec: Any, device: str, manifests: list[Path], out: Path, data: Any,
                  teacher_logits: np.ndarray | None, advance: Progress, n_cells: int) -> list[Any]:
    """``bench.rounds`` rounds of every artifact × thread count on an inventory device, the eval data sent along (a
    generative artifact timed there at ``bench.prompt_tokens``/``bench.gen_tokens``)."""
    from edgestill.devices.inventory import load_inventory
    from edgestill.devices.remote import bench_on_device
    from edgestill.outdir import write_bytes_atomic

    entry = load_inventory(spec.inventory).get(device)
    eval_data = data if isinstance(data, Path) else None  # a generate recipe's LLM eval arrays, already written
    if data is not None and getattr(data, "test", None) is not None:
        import io

        arrays = {"x": np.asarray(data.test.x), "y": np.asarray(data.test.y)}
        if teacher_logits is not None and len(teacher_logits) == len(arrays["x"]):
            arrays["teacher_logits"] = np.asarray(teacher_logits, dtype=np.float32)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        eval_data = out / "checkpoints" / "device-eval.npz"
        eval_data.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(eval_data, buf.getvalue())
    ms: list[Any] = []
    for r in range(spec.rounds):
        ms += bench_on_device(entry, manifests, spec.threads, bench=spec.timing, eval_data=eval_data,
                              prompt_tokens=spec.prompt_tokens, gen_tokens=spec.gen_tokens, progress=lambda i, n, label="", r=r: advance(r * n_cells + i, n_cells, f"{device}: {label}"))
    return ms


def _estimate(spec: Any, name: str, manifest: Path, threads: int) -> Any:
    """The estimate for one artifact on profile ``name`` (or an inventory device's profile); None when the cost model
    has no ONNX graph of the artifact (a format exported without an ONNX sibling)."""
    from edgestill.devices.estimator import estimate_artifact
    from edgestill.devices.profiles import load_profile
    from edgestill.errors import InputError

    profile_id = name
    if spec.inventory is not None:
        from edgestill.devices.inventory import load_inventory

        inv = load_inventory(spec.inventory)
        if name in inv.names:
            profile_id = inv.get(name).profile
    try:
        return estimate_artifact(manifest, load_profile(profile_id), threads=threads)
    except InputError:
        return None
