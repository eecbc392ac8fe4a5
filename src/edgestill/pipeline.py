"""The whole chain on built-in data: train teacher → distill student → baseline → int8 + export →
validate → accuracy per artifact on its runtime → host latency → report.json / report.md."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edgestill import __version__
from edgestill.errors import ConfigError
from edgestill.outdir import claim_output_dir, write_json_atomic, write_text_atomic

INT8_BUDGET_POINTS = 2.0  # each int8 artifact within this many accuracy points of the fp32 student


class Reporter(Protocol):
    """What the pipeline tells its caller: stages, and steps inside a long stage."""

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


@dataclass(frozen=True, kw_only=True)
class DemoConfig:
    """Settings of ``edgestill demo``."""

    out_dir: Path
    quick: bool = False
    bench_threads: int = 1
    train_threads: int = 2
    cache_dir: Path | None = None
    formats: tuple[str, ...] = ("onnx", "tflite", "openvino")
    precisions: tuple[str, ...] = ("fp32", "int8-static")
    calibration_samples: int = 300  # class-stratified, from the training split

    def __post_init__(self) -> None:
        if self.bench_threads < 1 or self.train_threads < 1:
            raise ConfigError("thread counts must be >= 1.")
        if self.calibration_samples < 10:
            raise ConfigError(f"calibration_samples must be >= 10, got {self.calibration_samples}.")


@dataclass
class _Clock:
    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str, reporter: Reporter, total: int | None = None) -> Iterator[None]:
        reporter.stage(name, total)
        t0 = time.perf_counter()
        yield
        self.seconds[name] = round(time.perf_counter() - t0, 3)
        reporter.done(name, self.seconds[name])


def default_cache_dir() -> Path:
    import os

    env = os.environ.get("EDGESTILL_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "edgestill"


def run_demo(config: DemoConfig, reporter: Reporter | None = None, *, claimed: bool = False) -> dict[str, Any]:
    """Run the whole chain and write ``report.json`` and ``report.md`` into ``config.out_dir``.

    Args:
        claimed: the caller already made ``config.out_dir`` ready with :func:`claim_output_dir`.

    Returns:
        The report (also written to disk).

    Raises:
        InputError: the output folder cannot be used (see :func:`claim_output_dir`).
    """
    rep = reporter or _Silent()
    out = config.out_dir if claimed else claim_output_dir(config.out_dir, kind="demo")  # before heavy imports

    import torch

    from edgestill.benchmarks.bench import benchmark
    from edgestill.runtimes.harness import BenchOptions
    from edgestill.compress.distill.presets import DEMO, QUICK
    from edgestill.compress.distill.teacher_cache import train_or_load_teacher
    from edgestill.compress.distill.trainer import evaluate, train
    from edgestill.data import load_dataset
    from edgestill.host import host_provenance
    from edgestill.export import ExportConfig, export
    from edgestill.models import count_parameters, create_model
    from edgestill.runtimes import RuntimeOptions

    preset = QUICK if config.quick else DEMO
    clock = _Clock()
    t_start = time.perf_counter()
    torch.set_num_threads(config.train_threads)

    def progress(epoch: int, step: int, total_steps: int, loss: float, acc: float) -> None:
        rep.advance(step, total_steps, f"epoch {epoch} loss {loss:.3f} acc {acc:.3f}")

    with clock.stage("data", rep):
        data = load_dataset(preset.dataset, seed=preset.seed, size=preset.dataset_size)
    c, h, w = data.input_shape

    with clock.stage("teacher", rep):
        teacher, teacher_info = train_or_load_teacher(
            preset.teacher_model,
            dict(preset.teacher_kwargs),
            data,
            preset.teacher_train,
            cache_dir=config.cache_dir or default_cache_dir(),
            progress=progress,
        )
    teacher_acc = evaluate(teacher, data.test)

    def macs(model: torch.nn.Module) -> int:
        """Multiply-accumulates per sample (conv, linear, matmul), as ``edgestill.models.costs`` counts them."""
        from edgestill.models.costs import model_costs

        return model_costs(model, (torch.zeros(1, c, h, w),))["macs"]

    def make_student() -> torch.nn.Module:
        torch.manual_seed(preset.seed)
        return create_model(preset.student_model, num_classes=data.num_classes, in_channels=c, **dict(preset.student_kwargs))

    with clock.stage("distill", rep):
        kd = train(make_student(), data, preset.student_train_kd, teacher=teacher, progress=progress)
    with clock.stage("baseline", rep):
        base = train(make_student(), data, preset.student_train_baseline, teacher=None, progress=progress)
    student = kd.model.eval()
    kd_acc, base_acc = evaluate(student, data.test), evaluate(base.model, data.test)

    ckpt_dir = out / "checkpoints"
    ckpt_dir.mkdir()
    from safetensors.torch import save_file

    save_file(student.state_dict(), str(ckpt_dir / "student-kd.safetensors"))
    save_file(base.model.state_dict(), str(ckpt_dir / "student-baseline.safetensors"))

    # Calibration from the training split, stratified by class; validation on the whole test split.
    calib_idx = _stratified(data.train.y, n=config.calibration_samples if not config.quick else min(100, config.calibration_samples), seed=preset.seed)
    art_dir = out / "artifacts"
    n_cells = len(config.formats) * len(config.precisions)
    with clock.stage("export", rep, total=n_cells):
        results = export(
            student,
            (torch.from_numpy(data.test.x[:1]),),
            # not strict: a cell that misses parity is kept as *.rejected and reported as a failed check
            ExportConfig(formats=config.formats, precisions=config.precisions, name="student", strict=False),
            art_dir,
            validation_inputs=data.test.x,
            calibration=data.train.x[calib_idx],
            calibration_ids=[str(i) for i in data.train.ids[calib_idx]],
            progress=lambda i, n, label="": rep.advance(i, n, label),
        )
    artifacts = [r.artifact for r in results if r.passed and r.artifact is not None]
    rejected = [r for r in results if not (r.passed and r.artifact is not None)]

    eval_path = out / "checkpoints" / "test-data.npz"
    np.savez(eval_path, x=data.test.x, y=data.test.y)
    measurements = []
    with clock.stage("bench", rep, total=len(artifacts)):
        for i, art in enumerate(artifacts):
            rep.advance(i, len(artifacts), art.name)
            m = benchmark(
                art.manifest_path,
                options=RuntimeOptions(threads=config.bench_threads),
                bench=BenchOptions(min_runs=50 if not config.quick else 20, min_seconds=1.0 if not config.quick else 0.2),
                eval_data=eval_path,
            )
            measurements.append((art, m))
    eval_path.unlink()

    fp32_acc = kd_acc
    rows = []
    for art, m in measurements:
        row = m.to_dict()
        row["manifest"] = str(art.manifest_path.relative_to(out))
        row["parity"] = art.validation.get("outputs", []) if art.validation else []
        row["parity_passed"] = bool(art.validation and art.validation.get("passed"))
        acc = m.accuracy.value if m.accuracy else None
        row["test_accuracy"] = acc
        row["accuracy_drop_points"] = None if acc is None else round(100 * (fp32_acc - acc), 2)
        rows.append(row)
    for r in rejected:
        rows.append({
            "artifact": r.name, "format": r.format, "precision": r.precision, "runtime": None,
            "threads": config.bench_threads, "kind": "failed", "parity_passed": False,
            "parity": r.report.to_dict().get("outputs", []) if r.report else [],
            "rejected_files": [str(p.relative_to(out)) for p in r.rejected_files],
            "error": r.error or (r.report.summary() if r.report else "export failed"),
            "test_accuracy": None, "accuracy_drop_points": None, "model_bytes": None,
        })
    report = {
        "edgestill_version": __version__,
        "kind": "demo",
        "quick": config.quick,
        "provenance": host_provenance(),
        "dataset": {
            "name": data.name,
            "input_shape": list(data.input_shape),
            "num_classes": data.num_classes,
            "n_train": len(data.train.y),
            "n_val": len(data.val.y),
            "n_test": len(data.test.y),
            "sha256": data.sha256,
        },
        "models": {
            "teacher": {
                "model": preset.teacher_model,
                "kwargs": dict(preset.teacher_kwargs),
                "parameters": count_parameters(teacher),
                "macs": macs(teacher),
                "test_accuracy": teacher_acc,
                "cache": teacher_info.get("cache"),
            },
            "student_kd": {
                "model": preset.student_model,
                "kwargs": dict(preset.student_kwargs),
                "parameters": count_parameters(student),
                "macs": macs(student),
                "test_accuracy": kd_acc,
                "best_val_accuracy": kd.best_val_accuracy,
                "temperature": preset.student_train_kd.temperature,
                "alpha": preset.student_train_kd.alpha,
                "epochs": preset.student_train_kd.epochs,
            },
            "student_baseline": {
                "model": preset.student_model,
                "kwargs": dict(preset.student_kwargs),
                "parameters": count_parameters(base.model),
                "macs": macs(base.model),
                "test_accuracy": base_acc,
                "best_val_accuracy": base.best_val_accuracy,
                "epochs": preset.student_train_baseline.epochs,
            },
        },
        "kd_gain_points": round(100 * (kd_acc - base_acc), 2),
        "teacher_lead_points": round(100 * (teacher_acc - base_acc), 2),
        "bench": {"threads": config.bench_threads, "runtime_options": RuntimeOptions(threads=config.bench_threads).to_dict()},
        "artifacts": rows,
        "stage_seconds": clock.seconds,
    }
    report["checks"] = _checks(report, enforced=not config.quick)
    report["stage_seconds"]["total"] = round(time.perf_counter() - t_start, 3)
    write_json_atomic(out / "report.json", report)
    write_text_atomic(out / "report.md", render_markdown(report))
    return report


def _stratified(y: np.ndarray, *, n: int, seed: int) -> np.ndarray:
    """Indices of about ``n`` samples with every class represented in proportion."""
    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    per = max(1, n // len(classes))
    picks = [rng.permutation(np.flatnonzero(y == k))[:per] for k in classes]
    return np.sort(np.concatenate(picks))


def _checks(report: dict[str, Any], *, enforced: bool) -> list[dict[str, Any]]:
    """The demo's own acceptance checks, recomputed from the report's numbers.

    ``enforced`` is False for ``--quick``: its barely-trained models make the checks informational.
    """
    checks = []
    for row in report["artifacts"]:
        if row["kind"] != "measured":
            checks.append({"name": f"{row['artifact']} validated and measured", "passed": False,
                           "detail": row.get("error")})
            continue
        if row["precision"] == "fp32":
            agree = min((o.get("top1_agreement") or 0.0) for o in row["parity"]) if row["parity"] else 0.0
            checks.append({"name": f"{row['artifact']} top-1 agrees with torch on every test sample",
                           "passed": agree == 1.0, "detail": f"top-1 agreement {agree:.4f}"})
        else:
            drop = row["accuracy_drop_points"]
            checks.append({"name": f"{row['artifact']} within {INT8_BUDGET_POINTS} points of the fp32 student",
                           "passed": drop is not None and drop <= INT8_BUDGET_POINTS, "detail": f"drop {drop} points"})
    for c in checks:
        c["enforced"] = enforced
    return checks


def render_markdown(report: dict[str, Any]) -> str:
    """A human summary of a demo report."""
    m = report["models"]
    ds = report["dataset"]
    prov = report["provenance"]
    lines = [
        "# edgestill demo report",
        "",
        f"Dataset `{ds['name']}` {ds['input_shape']} × {ds['num_classes']} classes "
        f"(train {ds['n_train']}, val {ds['n_val']}, test {ds['n_test']}). Host: {prov.get('cpu_model', '?')}, "
        f"{report['bench']['threads']} thread(s).{' Quick run: numbers are a smoke test.' if report['quick'] else ''}",
        "",
        "## Models (test accuracy, torch)",
        "",
        "| model | architecture | parameters | MACs / sample | test accuracy |",
        "|---|---|---:|---:|---:|",
    ]
    for key, label in (("teacher", "teacher"), ("student_kd", "student, KD"), ("student_baseline", "student, no KD")):
        d = m[key]
        lines.append(f"| {label} | {d['model']} {d['kwargs']} | {d['parameters']:,} | {d['macs']:,} | "
                     f"{100 * d['test_accuracy']:.2f}% |")
    lines += [
        "",
        f"KD gain over the no-KD student: **{report['kd_gain_points']:+.2f} points**; "
        f"teacher lead over the no-KD student: {report['teacher_lead_points']:+.2f} points.",
        "",
        "## Artifacts (each on its own runtime)",
        "",
        "| artifact | format | precision | runtime | test acc | drop (pts) | parity | p50 ms | p90 ms | CV % | size KB |",
        "|---|---|---|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    for r in report["artifacts"]:
        acc = "—" if r["test_accuracy"] is None else f"{100 * r['test_accuracy']:.2f}%"
        p50 = "failed" if r["kind"] != "measured" else f"{r['p50_ms']:.3f}"
        p90 = "" if r["kind"] != "measured" else f"{r['p90_ms']:.3f}"
        cv = "" if r["kind"] != "measured" else f"{r['cv_percent']:.1f}"
        size = "" if r.get("model_bytes") is None else f"{r['model_bytes'] / 1024:.0f}"
        lines.append(
            f"| {r['artifact']} | {r['format']} | {r['precision']} | {r['runtime']} | {acc} | "
            f"{r['accuracy_drop_points']} | {'pass' if r['parity_passed'] else 'FAIL'} | {p50} | {p90} | {cv} | {size} |"
        )
    lines += ["", "## Checks", ""]
    lines += [f"- {'PASS' if c['passed'] else 'FAIL'}: {c['name']} ({c['detail']})" for c in report["checks"]]
    lines += ["", "## Stage wall time (s)", "", "| stage | seconds |", "|---|---:|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in report["stage_seconds"].items()]
    return "\n".join(lines) + "\n"
