"""The chain a recipe describes: data → teacher → distill → export (+ int8) → bench → gate → report.

Resumable: every finished stage leaves a record in ``OUT/stages.json`` with a hash of what it depends on (its
recipe sections and the outputs of the stages before it). A rerun into the same folder skips a stage whose hash is
unchanged and whose outputs are still there, and redoes it and everything after it otherwise. Inside the distill
stage the trainer checkpoints every epoch, so an interrupted training continues where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgestill import __version__
from edgestill.errors import CheckFailed, ConfigError, InputError
from edgestill.outdir import MARKER, claim_output_dir, write_json_atomic, write_text_atomic
from edgestill.pipeline import Reporter, _Silent, _stratified, default_cache_dir
from edgestill.recipe import Recipe, StudentSpec, TeacherSpec

STATE_FILE = "stages.json"
VALIDATION_SAMPLES = 500  # test samples each artifact is compared with torch on


def prepare_out_dir(out: Path, *, kind: str, force: bool = False) -> tuple[Path, dict[str, Any]]:
    """Claim ``out`` for a recipe command; keep an earlier run's stage records unless ``force``.

    Returns:
        (folder, previous stage records: {} for a fresh folder).

    Raises:
        InputError: ``out`` is a file or a non-empty folder edgestill did not write.
    """
    out = Path(out)
    marker, state = out / MARKER, out / STATE_FILE
    if not force and marker.is_file() and state.is_file():
        try:
            if json.loads(marker.read_text()).get("kind") == kind:
                return out, json.loads(state.read_text())
        except (OSError, ValueError):
            pass
    claim_output_dir(out, kind=kind)
    write_json_atomic(state, {})  # from now on a rerun resumes here, even if this run is interrupted
    return out, {}


def _hash(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _file_sha(path: Path) -> str:
    from edgestill.artifact import sha256_file

    return sha256_file(path)


class _Stages:
    """Stage records in ``OUT/stages.json``: skip a stage whose key is unchanged, else rerun it and the rest."""

    def __init__(self, out: Path, previous: dict[str, Any], reporter: Reporter):
        self.out, self.previous, self.rep = out, previous, reporter
        self.records: dict[str, Any] = {}
        self.invalidated = False

    def cached(self, name: str, key: str) -> dict[str, Any] | None:
        rec = self.previous.get(name)
        if self.invalidated or not rec or rec.get("key") != key:
            self.invalidated = True
            return None
        self.records[name] = {**rec, "status": "skipped (unchanged)"}
        self.rep.stage(name)
        self.rep.done(name, 0.0, "unchanged, skipped")
        self._save()
        return rec["result"]

    def record(self, name: str, key: str, result: dict[str, Any], seconds: float) -> None:
        self.records[name] = {"key": key, "result": result, "seconds": round(seconds, 3), "status": "ran"}
        self._save()

    def _save(self) -> None:
        write_json_atomic(self.out / STATE_FILE, {**self.records})


def _build_model(spec: StudentSpec | TeacherSpec, data: Any, *, role: str, seed: int) -> Any:
    """A fresh model from a built-in name (with kwargs) or a factory, with checkpoint weights when given."""
    from edgestill.models import MODELS, create_model
    from edgestill.models.loading import load_checkpoint, resolve_model

    name = spec.model
    assert name is not None
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


def _teacher(recipe: Recipe, data: Any, log: Any, progress: Any) -> tuple[Any, np.ndarray | None, dict[str, Any]]:
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
                                             cache_dir=default_cache_dir(), progress=progress)
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
    return model, None, info


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
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(tmp))
    tmp.replace(path)
    return _file_sha(path)


def _distill(recipe: Recipe, data: Any, teacher: Any, logits: np.ndarray | None, out: Path, key: str, log: Any,
             progress: Any) -> tuple[Any, dict[str, Any]]:
    from edgestill.compress.distill.losses import LossTerm
    from edgestill.compress.distill.trainer import evaluate, train, train_generations
    from edgestill.models import count_parameters

    d = recipe.distill
    seed = d.train.seed

    def make_student() -> Any:
        return _build_model(recipe.student, data, role="student", seed=seed)

    student = make_student()
    _check_shapes(teacher, logits, student, data)
    augment = recipe.data.augment if recipe.data.augment.active else None
    common = dict(teacher_mode=d.teacher_mode, augment=augment, progress=progress, log=log)
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
        log("training the no-KD baseline (cross-entropy only, same seed and schedule)")
        base = train(make_student(), data, d.train, terms=(LossTerm(name="ce"),), augment=augment, progress=progress)
        info["baseline_test_accuracy"] = evaluate(base.model, data.test)
        info["kd_gain_points"] = round(100 * (info["test_accuracy"] - info["baseline_test_accuracy"]), 2)
    return model, info


def _load_student(recipe: Recipe, data: Any, out: Path) -> Any:
    from safetensors.torch import load_file

    model = _build_model(recipe.student, data, role="student", seed=recipe.distill.train.seed)
    model.load_state_dict(load_file(str(out / "checkpoints" / "student.safetensors")))
    return model.eval()


def _export(recipe: Recipe, data: Any, student: Any, out: Path, progress: Any) -> dict[str, Any]:
    import torch

    from edgestill.compress.distill.trainer import evaluate
    from edgestill.export import ExportConfig, export
    from edgestill.export.validate import run_artifact
    from edgestill.runtimes import RuntimeOptions, load

    spec = recipe.export
    assert spec is not None
    art_dir = out / "artifacts"
    shutil.rmtree(art_dir, ignore_errors=True)
    calib = _stratified(data.train.y, n=recipe.quantize.calibration_samples, seed=recipe.distill.train.seed)
    x_val = data.test.x[:VALIDATION_SAMPLES]
    results = export(
        student, (torch.from_numpy(data.test.x[:1]),),
        ExportConfig(formats=spec.formats, precisions=spec.precisions, name=spec.name, tolerances=recipe.validate,
                     strict=False),
        art_dir, validation_inputs=x_val,
        calibration=data.train.x[calib] if any(p.startswith("int8") for p in spec.precisions) else None,
        calibration_ids=[str(i) for i in data.train.ids[calib]],
        progress=lambda i, n, label="": progress(i, n, label),
    )
    torch_acc = evaluate(student, data.test)
    rows = []
    for r in results:
        row: dict[str, Any] = {"artifact": r.name, "format": r.format, "precision": r.precision, "passed": r.passed,
                               "error": r.error}
        if r.passed and r.artifact is not None:
            art = r.artifact
            session = load(art, RuntimeOptions(threads=1))
            pred = run_artifact(session, art, [data.test.x])[0].argmax(1)
            acc = float((pred == data.test.y).mean())
            row.update(manifest=str(art.manifest_path.relative_to(out)), model_bytes=art.model_bytes,
                       test_accuracy=acc,
                       accuracy_drop_points=None if torch_acc is None else round(100 * (torch_acc - acc), 2),
                       parity=(art.validation or {}).get("outputs", []))
        else:
            row.update(rejected_files=[str(p.relative_to(out)) for p in r.rejected_files])
        rows.append(row)
    return {"torch_test_accuracy": torch_acc, "artifacts": rows}


def _bench(recipe: Recipe, exported: dict[str, Any], out: Path, progress: Any) -> dict[str, Any]:
    from edgestill.benchmarks.bench import benchmark
    from edgestill.runtimes.harness import BenchOptions
    from edgestill.runtimes import RuntimeOptions

    spec = recipe.bench
    assert spec is not None
    cells = [(row, t) for row in exported["artifacts"] if row.get("manifest") for t in spec.threads]
    rows = []
    for i, (row, threads) in enumerate(cells):
        progress(i, len(cells), f"{row['artifact']} ({threads} thr)")
        m = benchmark(out / row["manifest"], options=RuntimeOptions(threads=threads),
                      bench=BenchOptions(min_runs=spec.min_runs, min_seconds=spec.min_seconds))
        rows.append({**m.to_dict(), "device": "host"})
    return {"measurements": rows}


def _gate(recipe: Recipe, report: dict[str, Any]) -> list[dict[str, Any]]:
    g = recipe.gate
    if g is None:
        return []
    checks = []
    student = report["student"]
    if g.min_test_accuracy is not None:
        acc = student["test_accuracy"]
        checks.append({"name": f"student test accuracy >= {g.min_test_accuracy}", "passed": acc >= g.min_test_accuracy,
                       "detail": f"{acc:.4f}"})
    for row in report.get("export", {}).get("artifacts", []):
        if not row["passed"]:
            checks.append({"name": f"{row['artifact']} exported and validated", "passed": False, "detail": row["error"]})
            continue
        if g.max_accuracy_drop_points is not None and row.get("accuracy_drop_points") is not None:
            drop = row["accuracy_drop_points"]
            checks.append({"name": f"{row['artifact']} within {g.max_accuracy_drop_points} points of torch",
                           "passed": drop <= g.max_accuracy_drop_points, "detail": f"drop {drop} points"})
        if g.max_model_bytes is not None:
            checks.append({"name": f"{row['artifact']} <= {g.max_model_bytes} bytes",
                           "passed": row["model_bytes"] <= g.max_model_bytes, "detail": f"{row['model_bytes']} bytes"})
    if g.max_p90_ms is not None:
        for m in report.get("bench", {}).get("measurements", []):
            ok = m.get("kind") == "measured" and m.get("p90_ms") is not None and m["p90_ms"] <= g.max_p90_ms
            checks.append({"name": f"{m['artifact']} ({m['threads']} thr) p90 <= {g.max_p90_ms} ms", "passed": ok,
                           "detail": f"p90 {m['p90_ms']:.3f} ms" if m.get("kind") == "measured" else m.get("error")})
    return checks


def run_recipe(recipe: Recipe, out_dir: Path, *, through: str = "gate", force: bool = False,
               reporter: Reporter | None = None, train_threads: int = 2, claimed: tuple[Path, dict] | None = None
               ) -> dict[str, Any]:
    """Run the recipe's chain up to stage ``through`` and write ``report.json`` and ``report.md`` into ``out_dir``.

    Args:
        through: the last stage: "distill" (``edgestill distill``) or "gate" (``edgestill run``, the whole chain).
        force: ignore an earlier run's stage records in ``out_dir`` and start over.
        claimed: the result of :func:`prepare_out_dir` when the caller already prepared the folder.

    Returns:
        The report (also written to disk); ``report["checks"]`` holds the gate's verdicts.

    Raises:
        InputError / ConfigError: bad data, teacher, student, layer names or shapes (exit 2).
    """
    if through not in ("distill", "gate"):
        raise ConfigError(f"through={through!r} is not valid; use 'distill' or 'gate'.")
    kind = "distill" if through == "distill" else "run"
    rep = reporter or _Silent()
    out, previous = claimed or prepare_out_dir(out_dir, kind=kind, force=force)

    from edgestill.data.loaders import load_data
    from edgestill.host import host_provenance

    stages = _Stages(out, previous, rep)
    messages: list[str] = []
    started = time.perf_counter()
    seconds: dict[str, float] = {}

    def log(message: str) -> None:
        messages.append(message)

    def train_progress(epoch: int, step: int, total: int, loss: float, acc: float) -> None:
        rep.advance(step, total, f"epoch {epoch} loss {loss:.3f} acc {acc:.3f}")

    def timed(name: str, fn: Any, total: int | None = None) -> Any:
        rep.stage(name, total)
        t0 = time.perf_counter()
        value = fn()
        seconds[name] = round(time.perf_counter() - t0, 3)
        rep.done(name, seconds[name])
        return value

    data = timed("data", lambda: load_data(recipe.data))  # bad data fails here, before torch is imported

    import torch

    torch.set_num_threads(train_threads)
    data_info = {"name": data.name, "input_shape": list(data.input_shape), "num_classes": data.num_classes,
                 "class_names": list(data.class_names), "n_train": len(data.train), "n_val": len(data.val),
                 "n_test": len(data.test), "sha256": data.sha256, "augment": recipe.data.augment.name}
    report: dict[str, Any] = {"edgestill_version": __version__, "kind": kind, "recipe": recipe.name,
                              "recipe_path": None if recipe.source is None else str(recipe.source),
                              "data": data_info}

    # teacher + distill: one resumable unit (the teacher is needed only to train the student)
    distill_key = _hash(data.sha256, recipe.fingerprint("data", "teacher", "student", "distill"), _input_files(recipe))
    student_file = out / "checkpoints" / "student.safetensors"
    done = stages.cached("distill", distill_key) if student_file.is_file() else None
    if done is not None and done.get("sha256") == _file_sha(student_file):
        student = _load_student(recipe, data, out)
        report["teacher"], report["student"] = done["teacher"], done["student"]
    else:
        stages.invalidated = True
        teacher, logits, t_info = timed("teacher", lambda: _teacher(recipe, data, log, train_progress))
        t0 = time.perf_counter()
        student, s_info = timed("distill", lambda: _distill(recipe, data, teacher, logits, out, distill_key, log, train_progress))
        report["teacher"], report["student"] = t_info, s_info
        stages.record("distill", distill_key, {"teacher": t_info, "student": s_info, "sha256": s_info["sha256"]},
                      time.perf_counter() - t0)

    if through != "distill" and recipe.export is not None:
        export_key = _hash(report["student"]["sha256"], data.sha256, recipe.fingerprint("export", "quantize", "validate"))
        exported = stages.cached("export", export_key)
        if exported is None or not all((out / r["manifest"]).is_file() for r in exported["artifacts"] if r.get("manifest")):
            stages.invalidated = True
            n = len(recipe.export.formats) * len(recipe.export.precisions)
            t0 = time.perf_counter()
            exported = timed("export", lambda: _export(recipe, data, student, out, rep.advance), total=n)
            stages.record("export", export_key, exported, time.perf_counter() - t0)
        report["export"] = exported
        if recipe.bench is not None:
            bench_key = _hash(export_key, recipe.fingerprint("bench"))
            benched = stages.cached("bench", bench_key)
            if benched is None:
                t0 = time.perf_counter()
                benched = timed("bench", lambda: _bench(recipe, exported, out, rep.advance))
                stages.record("bench", bench_key, benched, time.perf_counter() - t0)
            report["bench"] = benched
    report["checks"] = _gate(recipe, report) if through != "distill" else []
    report["stages"] = {k: {"status": v["status"], "seconds": v.get("seconds")} for k, v in stages.records.items()}
    report["stage_seconds"] = {**seconds, "total": round(time.perf_counter() - started, 3)}
    report["log"] = messages
    report["provenance"] = host_provenance()
    write_json_atomic(out / "report.json", report)
    write_text_atomic(out / "report.md", render_markdown(report))
    return report


def _input_files(recipe: Recipe) -> dict[str, str]:
    """Size and mtime of the files the teacher/student sections name: a changed file reruns the distill stage."""
    files = {}
    for spec, keys in ((recipe.teacher, ("checkpoint", "program", "predictions", "artifact")), (recipe.student, ("checkpoint",))):
        for k in keys if spec is not None else ():
            p = getattr(spec, k, None)
            if p is not None and Path(p).exists():
                st = Path(p).stat()
                files[f"{k}:{p}"] = f"{st.st_size}:{st.st_mtime_ns}"
    return files


def failed_checks(report: dict[str, Any]) -> list[str]:
    """Names of the gate checks that failed."""
    return [c["name"] for c in report.get("checks", []) if not c["passed"]]


def raise_for_checks(report: dict[str, Any]) -> None:
    """Raise CheckFailed when a gate budget was missed.

    Raises:
        CheckFailed: one or more checks failed (listed).
    """
    failed = failed_checks(report)
    if failed:
        raise CheckFailed(f"gate failed: {'; '.join(failed)}. See report.json for the numbers.")


def render_markdown(report: dict[str, Any]) -> str:
    """A human summary of a recipe report."""
    d, s, t = report["data"], report["student"], report.get("teacher", {})
    lines = [f"# edgestill {report['kind']}: {report['recipe']}", "",
             f"Data `{d['name']}` {d['input_shape']} × {d['num_classes']} classes (train {d['n_train']}, val "
             f"{d['n_val']}, test {d['n_test']}), augmentation {d['augment']}.", "",
             "## Models (torch)", "", "| model | source | parameters | test accuracy |", "|---|---|---:|---:|"]
    if t.get("source") not in (None, "none"):
        acc = t.get("test_accuracy")
        shown = f"{100 * acc:.2f}%" if acc is not None else (
            f"train {100 * t['train_accuracy']:.2f}% (from its answers)" if t.get("train_accuracy") is not None else "—")
        lines.append(f"| teacher | {t['source']}: {t.get('model') or t.get('path')} | {format(t['parameters'], ',') if 'parameters' in t else '—'} | {shown} |")
    lines.append(f"| student | {s['model']} | {s['parameters']:,} | {100 * s['test_accuracy']:.2f}% |")
    if "baseline_test_accuracy" in s:
        lines.append(f"| student, no KD | {s['model']} | {s['parameters']:,} | {100 * s['baseline_test_accuracy']:.2f}% |")
        lines += ["", f"KD gain: **{s['kd_gain_points']:+.2f} points**."]
    losses = ", ".join(f"{x['name']}×{x['weight']}" for x in s["losses"])
    lines += ["", f"Losses: {losses}; {s['epochs_run']} epoch(s), best val accuracy {100 * s['best_val_accuracy']:.2f}% "
              f"at epoch {s['best_epoch']}{' (stopped early)' if s['stopped_early'] else ''}; teacher mode "
              f"{s['teacher_mode']}."]
    if report.get("export"):
        lines += ["", "## Artifacts", "", "| artifact | precision | parity | test acc | drop (pts) | KB |",
                  "|---|---|---|---:|---:|---:|"]
        for r in report["export"]["artifacts"]:
            acc = "—" if r.get("test_accuracy") is None else f"{100 * r['test_accuracy']:.2f}%"
            kb = "" if r.get("model_bytes") is None else f"{r['model_bytes'] / 1024:.0f}"
            lines.append(f"| {r['artifact']} | {r['precision']} | {'pass' if r['passed'] else 'FAIL'} | {acc} | "
                         f"{r.get('accuracy_drop_points', '—')} | {kb} |")
    if report.get("bench"):
        lines += ["", "## Latency (host)", "", "| artifact | runtime | threads | p50 ms | p90 ms | CV % |",
                  "|---|---|---:|---:|---:|---:|"]
        for m in report["bench"]["measurements"]:
            if m.get("kind") == "measured":
                lines.append(f"| {m['artifact']} | {m['runtime']} | {m['threads']} | {m['p50_ms']:.3f} | "
                             f"{m['p90_ms']:.3f} | {m['cv_percent']:.1f} |")
            else:
                lines.append(f"| {m['artifact']} | {m['runtime']} | {m['threads']} | failed | | |")
    if report.get("checks"):
        lines += ["", "## Gate", ""]
        lines += [f"- {'PASS' if c['passed'] else 'FAIL'}: {c['name']} ({c['detail']})" for c in report["checks"]]
    lines += ["", "## Stages", "", "| stage | status | seconds |", "|---|---|---:|"]
    lines += [f"| {k} | {v['status']} | {v['seconds'] or 0:.1f} |" for k, v in report["stages"].items()]
    return "\n".join(lines) + "\n"
