"""The engine: runs a recipe's stages in order, resumes finished ones, writes the report and the results store.

data → teacher → distill (+ no-KD baseline) → export (floats validated against torch, int8 through the quantize
budget) → evaluate (each artifact on its runtime: test accuracy, agreement with the teacher) → bench (latency per
thread count, runner subprocesses) → checks → ``report.json`` / ``report.md`` → ``results.db``.

``edgestill demo`` is the built-in recipe ``demo`` run by :func:`run_recipe`, like any ``edgestill run RECIPE.yaml``.
A text recipe (``task: text-classify | text-embed``) runs through the same stages with their text forms
(:mod:`edgestill.chain.text_stages`): Hugging Face folders for teacher and student, held-out texts for parity and
scores, and an embedder scored by its cosine and retrieval agreement with the teacher.

Resumable: every finished stage leaves a record in ``OUT/stages.json`` with a hash of what it depends on (its
recipe sections and the outputs of the stages before it). A rerun into the same folder skips a stage whose hash is
unchanged and whose outputs are still there, and redoes it and everything after it otherwise. Inside the distill
stage the trainer checkpoints every epoch, so an interrupted training continues where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edgestill import __version__, signals
from edgestill.chain.recipe import Recipe
from edgestill.errors import ConfigError
from edgestill.record import RESULTS_SCHEMA_VERSION
from edgestill.outdir import (
    MARKER,
    adopt_output_dir,
    check_output_dir,
    claim_output_dir,
    marker_kind,
    write_json_atomic,
    write_text_atomic,
)

STATE_FILE = "stages.json"
# the top-level names a recipe run writes: what a run killed before it could record its files left is still its own
OWNED = ("artifacts", "checkpoints", "logs", "report.json", "report.md", "report.html", STATE_FILE,
         ".stages.json.*.tmp", ".report.*.tmp")
DEFAULT_DB = Path(".edgestill") / "results.db"
THROUGH = ("distill", "gate")


class Reporter(Protocol):
    """What the engine tells its caller: stages, and steps inside a long stage."""

    def stage(self, name: str, total: int | None = None) -> None: ...

    def advance(self, completed: int, total: int | None = None, info: str = "") -> None: ...

    def done(self, name: str, seconds: float, info: str = "") -> None: ...


class _Silent:
    def stage(self, name: str, total: int | None = None) -> None:
        pass

    def advance(self, completed: int, total: int | None = None, info: str = "") -> None:
        pass

    def done(self, name: str, seconds: float, info: str = "") -> None:
        pass


class _Checked:
    """A reporter whose every step first raises an interrupt a library swallowed (see :mod:`edgestill.signals`)."""

    def __init__(self, inner: Reporter):
        self.inner = inner

    def stage(self, name: str, total: int | None = None) -> None:
        signals.check()
        self.inner.stage(name, total)

    def advance(self, completed: int, total: int | None = None, info: str = "") -> None:
        signals.check()
        self.inner.advance(completed, total, info)

    def done(self, name: str, seconds: float, info: str = "") -> None:
        self.inner.done(name, seconds, info)


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    """How a recipe is run (not what it computes): where, resumed or not, threads, the results store.

    through: the last stage, "distill" (``edgestill distill``) or "gate" (the whole chain).
    train_threads: torch threads for training (inference threads are the recipe's ``bench.threads``).
    db: the SQLite results store the run's measurements go to; None writes none.
    overwrite: replace an --out folder another edgestill command wrote (else that is refused, exit 2).
    cache_dir: trained teachers, no-KD baselines and teacher outputs (default ``$EDGESTILL_CACHE`` or
        ~/.cache/edgestill).
    """

    out_dir: Path
    through: str = "gate"
    force: bool = False
    train_threads: int = 2
    db: Path | None = DEFAULT_DB
    cache_dir: Path | None = None
    command: str = "run"
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.through not in THROUGH:
            raise ConfigError(f"through={self.through!r} is not valid; use 'distill' or 'gate'.")
        if isinstance(self.train_threads, bool) or not isinstance(self.train_threads, int) or self.train_threads < 1:
            raise ConfigError(f"--train-threads must be a whole number >= 1, got {self.train_threads!r}.")
        object.__setattr__(self, "out_dir", Path(self.out_dir))

    @property
    def kind(self) -> str:
        return "distill" if self.through == "distill" else "run"


def prepare_out_dir(out: Path, *, kind: str, force: bool = False, overwrite: bool = False,
                    inputs: Iterable[tuple[str, Path | str | None]] = (),
                    before_emptying: Callable[[], Any] | None = None) -> tuple[Path, dict[str, Any]]:
    """Claim ``out`` for a recipe command; keep an earlier run's stage records unless ``force``.

    Args:
        overwrite: replace a folder another edgestill command wrote (``--overwrite``).
        inputs: (option, path) of the recipe's own files: a folder holding one is never emptied.
        before_emptying: called before a non-empty folder is emptied (e.g. to check the data), so that a bad input
            leaves an earlier run untouched.

    Returns:
        (folder, previous stage records: {} for a fresh folder).

    Raises:
        InputError: ``out`` is a file, a non-empty folder edgestill did not write, another command's folder (without
            ``overwrite``) or one holding an input; or what ``before_emptying`` raises.
    """
    out = Path(out)
    marker, state = out / MARKER, out / STATE_FILE
    if not force and marker.is_file() and state.is_file() and marker_kind(out) == kind:
        adopt_output_dir(out, kind)  # locked before the records are read: a second run into it stops here
        try:
            previous = json.loads(state.read_text())
        except (OSError, ValueError):
            previous = None
        if isinstance(previous, dict):
            return out, previous
    if check_output_dir(out, kind=kind, overwrite=overwrite, inputs=inputs) and before_emptying is not None:
        before_emptying()
    claim_output_dir(out, kind=kind, overwrite=overwrite, inputs=inputs, owns=OWNED)
    write_json_atomic(state, {})  # from now on a rerun resumes here, even if this run is interrupted
    return out, {}


def recipe_inputs(recipe: Recipe) -> list[tuple[str, Path | str | None]]:
    """(recipe key, path) of every file or folder the recipe reads."""
    if recipe.is_text:
        return [("data.text", None if recipe.data.builtin else recipe.data.path), ("teacher.hf", recipe.teacher.hf),
                ("student.hf", recipe.student.hf)]
    if recipe.is_llm:
        return [("data.corpus", None if recipe.data.builtin else recipe.data.path), ("teacher.hf", recipe.teacher.hf),
                ("teacher.generations", recipe.teacher.generations), ("student.hf", recipe.student.hf)]
    found: list[tuple[str, Path | str | None]] = [(f"data.{k}", getattr(recipe.data, k, None)) for k in ("folder", "npz", "csv")]
    for section, spec, keys in (("teacher", recipe.teacher, ("checkpoint", "program", "predictions", "artifact")),
                                ("student", recipe.student, ("checkpoint",))):
        found += [(f"{section}.{k}", getattr(spec, k, None)) for k in keys if spec is not None]
    return found


def _hash(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


class _Stages:
    """Stage records in ``OUT/stages.json``: skip a stage whose key is unchanged, else rerun it and the rest."""

    def __init__(self, out: Path, previous: dict[str, Any], reporter: Reporter):
        self.out, self.previous, self.rep = out, previous, reporter
        self.records: dict[str, Any] = {}
        self.invalidated = False
        self.seconds: dict[str, float] = {}

    def cached(self, name: str, key: str) -> Any:
        rec = self.previous.get(name)
        if self.invalidated or not rec or rec.get("key") != key:
            self.invalidated = True
            return None
        self.records[name] = {**rec, "status": "skipped (unchanged)"}
        self.rep.stage(name)
        self.rep.done(name, 0.0, "unchanged, skipped")
        self._save()
        return rec["result"]

    def run(self, name: str, fn: Callable[[], Any], total: int | None = None) -> Any:
        """Time ``fn`` as stage ``name`` (not recorded: see :meth:`record`)."""
        signals.check()  # a Ctrl-C a library swallowed during the last stage stops the run here
        self.rep.stage(name, total)
        t0 = time.perf_counter()
        value = fn()
        self.seconds[name] = round(time.perf_counter() - t0, 3)
        self.rep.done(name, self.seconds[name])
        return value

    def record(self, name: str, key: str, result: Any, *, parts: tuple[str, ...] = (), **extra: Any) -> None:
        """Record stage ``name`` as done; its time is its own plus that of the timed ``parts`` it includes; ``extra``
        fields are kept in the record (and in the record a later skip copies)."""
        seconds = sum(self.seconds.get(n, 0.0) for n in (name, *parts))
        self.records[name] = {"key": key, "result": result, "seconds": round(seconds, 3), "status": "ran", **extra}
        self._save()
        signals.check()  # the finished stage is recorded; an interrupt received during it stops the run now

    def _save(self) -> None:
        write_json_atomic(self.out / STATE_FILE, {**self.records})


def load_recipe_data(recipe: Recipe) -> Any:
    """The recipe's data: images (:func:`edgestill.data.loaders.load_data`) or texts
    (:func:`edgestill.chain.text.load_text_data`).

    Raises:
        InputError: bad data (missing, empty, not UTF-8, a CSV without the named column, ...).
    """
    if recipe.is_llm:
        from edgestill.chain.llm_stages import load_llm_data

        return load_llm_data(recipe)
    if recipe.is_text:
        from edgestill.chain.text import load_text_data, teacher_labels

        return load_text_data(recipe.data, recipe.task, label_names=teacher_labels(recipe.teacher.hf))
    from edgestill.data.loaders import load_data

    return load_data(recipe.data)


def _input_files(recipe: Recipe) -> dict[str, str]:
    """Size and mtime of the files the teacher/student sections name: a changed file reruns the distill stage."""
    files = {}
    if recipe.is_llm and recipe.teacher.generations is not None:
        st = Path(recipe.teacher.generations).stat()
        files[f"generations:{recipe.teacher.generations}"] = f"{st.st_size}:{st.st_mtime_ns}"
    if recipe.is_text or recipe.is_llm:  # the files of the teacher and student folders
        for folder in (recipe.teacher.hf, recipe.student.hf):
            for p in sorted(Path(folder).iterdir()) if folder is not None and Path(folder).is_dir() else ():
                if p.is_file():
                    st = p.stat()
                    files[str(p)] = f"{st.st_size}:{st.st_mtime_ns}"
        return files
    for spec, keys in ((recipe.teacher, ("checkpoint", "program", "predictions", "artifact")), (recipe.student, ("checkpoint",))):
        for k in keys if spec is not None else ():
            p = getattr(spec, k, None)
            if p is not None and Path(p).exists():
                st = Path(p).stat()
                files[f"{k}:{p}"] = f"{st.st_size}:{st.st_mtime_ns}"
    return files


def run_recipe(recipe: Recipe, options: RunOptions, reporter: Reporter | None = None, *,
               claimed: tuple[Path, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Run the recipe's chain up to ``options.through``; write ``report.json``, ``report.md`` and the results store.

    Args:
        claimed: the result of :func:`prepare_out_dir` when the caller already prepared the folder.

    Returns:
        The report (also written to disk); ``report["checks"]`` holds every check's verdict.

    Raises:
        InputError / ConfigError: bad data, teacher, student, layer names or shapes (exit 2).
    """
    from edgestill.chain import stages as st
    from edgestill.chain.checks import run_checks
    from edgestill.chain.report import render_markdown
    from edgestill.compress.distill.teacher_outputs import default_cache_dir
    from edgestill.host import host_provenance

    rep = _Checked(reporter or _Silent())
    early = None
    if claimed is None and (recipe.is_text or recipe.is_llm):  # texts are cheap to read: bad text is refused first
        early = load_recipe_data(recipe)
    out, previous = claimed or prepare_out_dir(options.out_dir, kind=options.kind, force=options.force,
                                               overwrite=options.overwrite, inputs=recipe_inputs(recipe))
    cache_dir = options.cache_dir or default_cache_dir()
    stages = _Stages(out, previous, rep)
    messages: list[str] = []
    started = time.perf_counter()

    def train_progress(epoch: int, step: int, total: int, loss: float, acc: float) -> None:
        rep.advance(step, total, f"epoch {epoch} loss {loss:.3f} acc {acc:.3f}")

    data = stages.run("data", lambda: early or load_recipe_data(recipe))  # bad data fails here, before torch is imported

    import torch

    torch.set_num_threads(options.train_threads)
    report: dict[str, Any] = {
        "schema_version": RESULTS_SCHEMA_VERSION, "edgestill_version": __version__, "kind": options.kind, "recipe": recipe.name,
        "task": recipe.task, "recipe_sha256": recipe.fingerprint(),
        "recipe_path": None if recipe.source is None else str(recipe.source), "data": _data_summary(recipe, data),
    }

    # teacher + distill: one resumable unit (the teacher is needed only to train the student and to score agreement)
    sections = (("task", "data", "teacher", "student", "distill") if recipe.is_text or recipe.is_llm
                else ("data", "teacher", "student", "distill"))
    distill_key = _hash(data.sha256, recipe.fingerprint(*sections), _input_files(recipe))
    if recipe.is_llm:
        from edgestill.chain import llm_stages as ls

        student_file = out / ls.STUDENT_DIR / "model.safetensors"
        logits_file = out / ls.TEST_EVAL
    elif recipe.is_text:
        from edgestill.chain import text_stages as ts

        student_file = out / ts.STUDENT_DIR / "model.safetensors"
        logits_file = out / ts.TEACHER_OUTPUTS
    else:
        student_file = out / "checkpoints" / "student.safetensors"
        logits_file = out / "checkpoints" / "teacher-test-logits.npy"
    done = stages.cached("distill", distill_key) if student_file.is_file() else None
    if recipe.is_llm:
        if done is not None and done.get("sha256") == st._file_sha(student_file) and logits_file.is_file():
            student = student_file.parent
            report["teacher"], report["student"] = done["teacher"], done["student"]
        else:
            stages.invalidated = True
            teacher_dir, t_info = stages.run("teacher", lambda: ls.teacher_stage(
                recipe, data, messages.append, train_progress, cache_dir=cache_dir))
            student, s_info = stages.run("distill", lambda: ls.distill_stage(
                recipe, data, teacher_dir, out, messages.append, train_progress))
            ls.eval_files(recipe, data, student, teacher_dir, out)
            report["teacher"], report["student"] = t_info, s_info
            stages.record("distill", distill_key, {"teacher": t_info, "student": s_info, "sha256": s_info["sha256"]},
                          parts=("teacher",))
    elif recipe.is_text:
        if done is not None and done.get("sha256") == st._file_sha(student_file) and logits_file.is_file():
            student = student_file.parent
            report["teacher"], report["student"] = done["teacher"], done["student"]
        else:
            stages.invalidated = True
            teacher_dir, t_info = stages.run("teacher", lambda: ts.teacher_stage(
                recipe, data, messages.append, train_progress, cache_dir=cache_dir, train_threads=options.train_threads))
            reference = ts.teacher_outputs(recipe, teacher_dir, data)
            logits_file.parent.mkdir(parents=True, exist_ok=True)
            np.save(logits_file, reference)
            student, s_info = stages.run("distill", lambda: ts.distill_stage(
                recipe, data, teacher_dir, reference, out, messages.append, train_progress,
                train_threads=options.train_threads))
            report["teacher"], report["student"] = t_info, s_info
            stages.record("distill", distill_key, {"teacher": t_info, "student": s_info, "sha256": s_info["sha256"]},
                          parts=("teacher",))
    elif done is not None and done.get("sha256") == st._file_sha(student_file):
        student = st.load_student(recipe.student, recipe.distill.train.seed, data, out)
        report["teacher"], report["student"] = done["teacher"], done["student"]
    else:
        stages.invalidated = True
        teacher, logits, t_info = stages.run("teacher", lambda: st.teacher_stage(recipe, data, messages.append,
                                                                                   train_progress, cache_dir=cache_dir))
        test_logits = st.teacher_test_logits(teacher, recipe, data, cache_dir=cache_dir)
        logits_file.parent.mkdir(parents=True, exist_ok=True)
        if test_logits is not None:
            np.save(logits_file, test_logits)
        elif logits_file.exists():
            logits_file.unlink()  # this run's own file, from an earlier recipe in the same folder
        student, s_info = stages.run("distill", lambda: st.distill_stage(
            recipe, data, teacher, logits, out, distill_key, messages.append, train_progress, cache_dir=cache_dir))
        report["teacher"], report["student"] = t_info, s_info
        stages.record("distill", distill_key, {"teacher": t_info, "student": s_info, "sha256": s_info["sha256"]},
                      parts=("teacher",))
    teacher_logits = np.load(logits_file) if logits_file.is_file() and not recipe.is_llm else None

    measurements: list[Any] = []
    report["artifacts"] = []
    exports = recipe.llm_export if recipe.is_llm else recipe.export
    if options.through != "distill" and exports is not None:
        export_key = _hash(report["student"]["sha256"], data.sha256, recipe.fingerprint("export", "quantize", "validate"))
        rows = stages.cached("export", export_key)
        if rows is None or not all((out / r["manifest"]).is_file() for r in rows if r.get("manifest")):
            stages.invalidated = True
            n = len(exports.formats) * len(exports.precisions)
            if recipe.is_llm:
                rows = stages.run("export", lambda: ls.export_stage(recipe, student, out, rep.advance), total=n)
                stages.run("evaluate", lambda: ls.evaluate_stage(rows, out, report["student"], rep.advance))
            elif recipe.is_text:
                rows = stages.run("export", lambda: ts.export_stage(recipe, data, student, out, rep.advance), total=n)
                stages.run("evaluate", lambda: ts.evaluate_stage(recipe, rows, data, out, report["student"],
                                                                 teacher_logits, rep.advance))
            else:
                rows = stages.run("export", lambda: st.export_stage(recipe, data, student, out, rep.advance), total=n)
                stages.run("evaluate", lambda: st.evaluate_stage(rows, data, out, report["student"]["test_accuracy"],
                                                                 teacher_logits, rep.advance))
            stages.record("export", export_key, rows, parts=("evaluate",))
        if recipe.bench is not None:
            bench_key = _hash(export_key, recipe.fingerprint("bench"))
            benched = stages.cached("bench", bench_key)
            if benched is None:
                for r in rows:
                    r.pop("measurements", None)
                # a text recipe's devices time the files only (their eval data travels as image arrays x, y)
                bench_data = out / ls.TEST_EVAL if recipe.is_llm else None if recipe.is_text else data
                measurements = stages.run("bench", lambda: st.bench_stage(recipe, rows, out, rep.advance,
                                                                          data=bench_data,
                                                                          teacher_logits=teacher_logits),
                                          total=st.bench_cells(recipe, rows))
                # a fresh key for the rows this bench measured: a rerun that skips bench stores them under the same key
                stages.record("bench", bench_key, rows, run_key=f"run:{uuid.uuid4()}")
            else:
                rows = benched
                from edgestill.record import measurement_from_dict

                measurements = [measurement_from_dict(m) for r in rows for m in r.get("measurements") or []]
        report["artifacts"] = rows

    report["checks"] = [c.to_dict() for c in run_checks(report, recipe.gate)] if options.through != "distill" else []
    report["stages"] = {k: {"status": v["status"], "seconds": v.get("seconds")} for k, v in stages.records.items()}
    report["stage_seconds"] = {**stages.seconds, "total": round(time.perf_counter() - started, 3)}
    report["log"] = messages
    report["provenance"] = host_provenance()
    report["store"] = _store(options, recipe, report, measurements, stages)
    write_json_atomic(out / "report.json", report)
    write_text_atomic(out / "report.md", render_markdown(report))
    if report["store"] is not None:
        from edgestill.benchmarks.report import write_report

        write_report(options.db, [report["store"]["run_id"]], html=out / "report.html")
    return report


def _data_summary(recipe: Recipe, data: Any) -> dict[str, Any]:
    """The report's data section: what was read, its splits and content hash."""
    if recipe.is_llm:
        from edgestill.chain.llm_stages import data_summary

        return data_summary(recipe, data)
    if recipe.is_text:
        from edgestill.chain.text_stages import seq_len

        return {"name": data.name, "task": recipe.task, "input_shape": [seq_len(recipe)], "num_classes": data.num_classes,
                "class_names": list(data.class_names), "n_train": len(data.train), "n_val": len(data.val),
                "n_test": len(data.test), "sha256": data.sha256, "augment": "none",
                "labelled": data.train.labels is not None}
    return {"name": data.name, "input_shape": list(data.input_shape), "num_classes": data.num_classes,
            "class_names": list(data.class_names), "n_train": len(data.train), "n_val": len(data.val),
            "n_test": len(data.test), "sha256": data.sha256, "augment": recipe.data.augment.name}


def _store(options: RunOptions, recipe: Recipe, report: dict[str, Any], measurements: list[Any],
           stages: _Stages) -> dict[str, Any] | None:  # fmt: skip
    """Write the run and its measurements (raw samples included) into the results store, in one transaction.

    Once per set of measurements: the bench stage's record carries a run key, and the store keeps one run per key. A
    rerun whose bench stage was unchanged (also one killed after the store committed, before that was recorded) gets
    the run it stored back instead of storing the same rows again; a run killed before it stored anything stores them
    on its rerun."""
    if options.db is None or options.through == "distill":
        return None
    from edgestill.benchmarks.store import ResultsStore

    key = _hash(*(str(stages.records.get(n, {}).get("key")) for n in ("distill", "export", "bench")), str(Path(options.db).resolve()))
    run_key = stages.records.get("bench", {}).get("run_key") or f"run:{_hash(key, str(stages.out.resolve()))}"
    with ResultsStore(options.db) as store:
        earlier = stages.cached("store", key)
        found = store.run_by_key(run_key)
        if found is not None or (earlier is not None and any(r["id"] == earlier.get("run_id") for r in store.runs())):
            run_id = found if found is not None else earlier["run_id"]
            result = {"path": str(options.db), "run_id": run_id, "measurements": len(measurements), "reused": True}
            if earlier is None or earlier.get("run_id") != run_id:
                stages.record("store", key, {k: v for k, v in result.items() if k != "reused"})
            return result
        run_id = store.add_run(f"{options.command} {recipe.name}", label=recipe.name,
                               recipe_sha256=report["recipe_sha256"], measurements=measurements, run_key=run_key)
    result = {"path": str(options.db), "run_id": run_id, "measurements": len(measurements)}
    stages.record("store", key, result)
    return result


def failed_checks(report: dict[str, Any]) -> list[str]:
    """One line for every check that failed (what, measured against what)."""
    from edgestill.chain.checks import describe_check

    return [describe_check(c) for c in report.get("checks", []) if c["verdict"] != "pass"]
