"""How close the latency estimator comes to measurements; prints ONE JSON line.

(a) ``published``: :func:`edgestill.devices.estimator.cross_validate_published`, leave-one-model-out on
    ``published_latencies.csv``: share of rows within ±25% and the median absolute % error.
(b) ``host``: on this machine after self-calibration. First ``calibrate_device("host", ...)`` times the microbenchmarks
    (each compute micro, a residual Add and, for LiteRT int8, a 1×1 conv + HardSwish as one layer and as a stack of 4:
    per-layer times from the slope; two stems as one layer) at 1 thread for onnxruntime, openvino and litert (fp32 and
    int8) and writes its calibration file and the raw micro timings (``host.micro.json``) to
    ``perf/.cache/estimator_accuracy/profiles/``; then every zoo model × format (onnx, openvino, tflite) × fp32/int8 is
    exported with the project's writers (fp32: ``edgestill.export``'s writer per format; int8: static int8 through
    ``edgestill.compress.quantize.quantize_export`` with 32 seeded samples, no equalisation or bias correction: see
    ``INT8_OPTIONS``), measured at 1 thread with
    ``benchmark_matrix``, and estimated with ``estimate(graph_cost(onnx), host profile with that calibration, ...)``
    where the graph is the ONNX artifact of the same precision for onnx, the fp32 ONNX graph for openvino (which the
    estimator scales to int8), and the ``.tflite`` file itself for tflite (``tflite_cost``: its int8 ops, the fp32
    islands the int8 files keep, their DEQUANTIZE/QUANTIZE passes, the ops XNNPACK leaves to LiteRT's builtin kernels,
    listed in a row's ``outside_xnnpack``). ``by_fit`` says which cells used the calibration and which the published
    fit. Reported: the same two figures over all cells (target: >= 80% within ±25%), per format × precision, one row
    per cell, the calibration entries and the micro timings they were fitted from (``calibration_micro``).

Nothing in (b) is fitted on the zoo cells: the estimate of a cell comes from the micro timings and that cell's graph.

``perf/results/estimator_accuracy.json`` holds the last full run (this Xeon at 1 thread, 2026-12-03, quiet): 60 cells,
90% within ±25%, median |error| 8% (target 80%: met); fp32 29/30, int8 25/30 (OpenVINO int8 6/10).
``perf/results/estimator_accuracy_runs.jsonl`` holds the five full runs of that day, one JSON line each (83%, then 77%
and 82% with the intensity curves, then 88% and 90% with the softmax class).

Re-scoring without measuring (``--reuse-measurements [RUN.json]``, default ``perf/results/estimator_accuracy.json``):
the saved run's measured p50s are taken as the measured side and its micro timings are refitted with the current
calibration code (a run saved before the timings were kept: its calibration entries as they are), so a change to the
cost model, the calibration fit or the estimator is scored offline against the same measurements in about a minute
(the exports must be in the cache or are made again). The output names the file and that run's load average.

Exported artifacts are cached in ``perf/.cache/estimator_accuracy/<model>/`` (delete the folder to re-export).
Converter and quantizer logs go to stderr, so stdout carries only the JSON line.

Usage: python perf/estimator_accuracy.py [--models a,b] [--formats onnx,openvino,tflite] [--precisions fp32,int8]
       [--quick-calibration] [--reuse-calibration] [--reuse-measurements [RUN.json]] [--skip-host]
       [--min-seconds 1.0]
(--reuse-calibration: the calibration file and micro timings a previous run left in
perf/.cache/estimator_accuracy/profiles/, not re-timed)
(slow: a full run exports 10 models × 3 formats × 2 precisions; run it with nohup on a quiet machine)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
CACHE = ROOT / ".cache" / "estimator_accuracy"
FORMAT_RUNTIME = {"onnx": "onnxruntime", "openvino": "openvino", "tflite": "litert"}
CALIBRATED_RUNTIMES = ("onnxruntime", "openvino", "litert")
WITHIN = 25.0
TARGET = 0.80
CALIBRATION_SAMPLES = 32
# int8 as the saved runs were made (before equalisation and bias correction became format defaults): the same graphs
# as the measurements --reuse-measurements re-scores; bias correction also fails on a Linear over a 3-D input (vit)
INT8_OPTIONS = {"equalize": False, "bias_correction": False}


def _summary(errors: list[float]) -> dict[str, Any]:
    import numpy as np

    if not errors:
        return {"n": 0, "within_25_percent": None, "median_abs_percent": None}
    a = np.abs(np.asarray(errors, dtype=float))
    return {"n": len(errors), "within_25_percent": round(float(np.mean(a <= WITHIN)), 4),
            "median_abs_percent": round(float(np.median(a)), 2)}


def _cached(manifest: Path) -> bool:
    from edgestill.artifact import Artifact

    try:
        Artifact.load(manifest).verify_files()
        return True
    except Exception:  # noqa: BLE001 - anything wrong with a cached file: export it again
        return False


def export_cell(name: str, fmt: str, precision: str) -> Path:
    """The manifest of zoo model ``name`` in ``fmt`` × ``precision`` (fp32 or int8), exported once and cached."""
    import shutil

    folder = CACHE / name / f"{fmt}-{precision}"
    manifest = folder / f"{name}-{fmt}-{precision}.manifest.json"
    if _cached(manifest):
        return manifest
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    from edgestill.models import create_model, default_num_classes, example_input, sample_inputs

    model = create_model(name, num_classes=default_num_classes(name), seed=0).eval()
    example = example_input(name, seed=0)
    stem = f"{name}-{fmt}-{precision}"
    if precision == "fp32":
        from edgestill.export.api import get_exporter

        art = get_exporter(fmt)(model, (example,), staging_dir=folder, name=stem, precision="fp32")
    else:
        from edgestill.compress.quantize.api import quantize_export
        from edgestill.compress.quantize.options import QuantOptions

        art = quantize_export(model, (example,), format=fmt, precision="int8-static", staging_dir=folder, name=stem,
                              calibration=sample_inputs(name, CALIBRATION_SAMPLES, seed=1),
                              options=QuantOptions(**INT8_OPTIONS))
    art.hash_files()
    return art.write_manifest()


def calibrate_host(quick: bool, reuse: bool = False,
                   saved: dict[str, Any] | None = None) -> tuple[Any, list[dict[str, Any]], list[dict[str, Any]]]:
    """Calibrate this machine at 1 thread; return the host profile with that calibration merged, the entries, and the
    raw micro timings (one row per runtime × precision × micro: its p50).

    ``reuse``: take the calibration file a previous run left in ``perf/.cache/estimator_accuracy/profiles/`` (and the
    micro timings beside it, ``host.micro.json``) instead of timing the microbenchmarks again (it must hold every
    runtime × precision at 1 thread).
    ``saved``: the ``host`` block of a previous run's JSON (``--reuse-measurements``): its micro timings are refitted
    with the current :func:`~edgestill.devices.calibrate.fit_entry` (its stored entries are taken as they are when it
    has no timings), nothing is timed."""
    from edgestill.devices import profiles
    from edgestill.devices.calibrate import calibrate_device, calibration_path, write_calibration

    folder = CACHE / "profiles"
    cached = calibration_path(folder, "host")
    timings = folder / "host.micro.json"  # the micro timings behind the cached calibration, for a later refit
    micro: list[dict[str, Any]] = []
    if saved is not None:
        micro = list(saved.get("calibration_micro") or [])
        entries = _refit(micro) if micro else [e for e in saved.get("calibration") or [] if e.get("threads") == 1]
        if not entries:
            raise SystemExit("--reuse-measurements: the saved run has no calibration entries or micro timings")
        cached.unlink(missing_ok=True)
        write_calibration(cached, "host", entries)
        if micro:
            timings.write_text(json.dumps(micro))
        else:
            timings.unlink(missing_ok=True)
        print(f"calibration {'refitted from the saved micro timings' if micro else 'taken from the saved run'}",
              file=sys.stderr)
    elif reuse and cached.is_file():
        import yaml

        entries = [e for e in (yaml.safe_load(cached.read_text()) or {}).get("entries", []) if e.get("threads") == 1]
        if timings.is_file():
            micro = json.loads(timings.read_text())
        print(f"reusing the calibration in {cached}", file=sys.stderr)
    else:
        res = calibrate_device("host", runtimes=CALIBRATED_RUNTIMES, precisions=("fp32", "int8"), threads=(1,),
                               out_folder=folder, quick=quick, db=None)
        entries = res.entries
        micro = [{k: r[k] for k in ("runtime", "precision", "threads", "name", "p50_ms")} for r in res.micro]
        timings.write_text(json.dumps(micro))
    os.environ["EDGESTILL_PROFILES"] = os.pathsep.join([str(folder), *filter(None, [os.environ.get("EDGESTILL_PROFILES")])])
    profile = profiles.load_profile("host", search_path=[folder, *profiles.profile_search_path()])
    missing = [(e["runtime"], e["precision"]) for e in entries
               if profile.calibration_for(e["runtime"], e["precision"], 1) is None]
    if missing:
        raise SystemExit(f"the host profile did not merge the calibration written to {cached} (missing {missing})")
    keep = ("runtime", "precision", "threads", "efficiency", "bandwidth_efficiency", "elementwise_bandwidth_efficiency",
            "overhead_ms", "call_overhead_ms", "per_node_ms", "builtin_ns_per_byte", "builtin_lut_ns_per_byte",
            "stem_curve", "efficiency_curve", "softmax_bandwidth_efficiency", "error")
    return profile, [{k: e.get(k) for k in keep} for e in entries], micro


def _refit(micro: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Calibration entries refitted from saved micro timings (rows of ``runtime, precision, threads, name, p50_ms``)."""
    from edgestill.devices import profiles
    from edgestill.devices.calibrate import fit_entry
    from edgestill.devices.microbench import micro_models

    host = profiles.host_profile()
    by_name = {m.name: m for q in (False, True) for m in micro_models(quick=q)}  # names carry their shapes
    groups: dict[tuple[str, str, int], list[Any]] = {}
    for r in micro:
        if r["name"] in by_name:
            groups.setdefault((r["runtime"], r["precision"], int(r["threads"])), []).append((by_name[r["name"]],
                                                                                             float(r["p50_ms"])))
    entries = []
    for (runtime, precision, threads), points in sorted(groups.items()):
        entry, _ = fit_entry(points, peak_macs_per_s=host.peak_macs_per_s(precision, threads),
                             bandwidth_gbs=host.bandwidth_gbs, runtime=runtime, precision=precision, threads=threads)
        entries.append(entry)
    return entries


def host_cells(models: list[str], formats: list[str], precisions: list[str], profile: Any, min_seconds: float,
               log: Any, saved: dict[tuple[str, str, str], float] | None = None) -> list[dict[str, Any]]:
    """Export, measure and estimate every model × format × precision at 1 thread; one row per cell.

    ``saved``: measured p50s by (model, format, precision) from a previous run (``--reuse-measurements``): those cells
    are not measured again; a cell missing from it is measured."""
    from edgestill.benchmarks.bench import benchmark_matrix
    from edgestill.runtimes.harness import BenchOptions

    saved = saved or {}
    rows: list[dict[str, Any]] = []
    cells: list[tuple[dict[str, Any], Path, Path]] = []
    for name in models:
        for fmt in formats:
            for precision in precisions:
                row = {"model": name, "format": fmt, "precision": precision, "runtime": FORMAT_RUNTIME[fmt]}
                rows.append(row)
                t0 = time.perf_counter()
                try:
                    with contextlib.redirect_stdout(log):
                        manifest = export_cell(name, fmt, precision)
                        graph = manifest if fmt == "onnx" else export_cell(name, "onnx", "fp32")
                except Exception as exc:  # one cell a converter cannot make must not stop the matrix
                    row["error"] = f"export: {type(exc).__name__}: {str(exc)[:300]}"
                    continue
                row["export_s"] = round(time.perf_counter() - t0, 1)
                cells.append((row, manifest, graph))
    to_measure = [c for c in cells if (c[0]["model"], c[0]["format"], c[0]["precision"]) not in saved]
    bench = BenchOptions(min_runs=30, min_seconds=min_seconds, warmup_runs=5)
    measured = benchmark_matrix([str(c[1]) for c in to_measure], [1], bench=bench) if to_measure else []
    for (row, _, _), m in zip(to_measure, measured):
        if m.kind != "measured" or m.latency is None:
            row["error"] = f"measure: {(m.error or 'no latency').splitlines()[0][:300]}"
        else:
            row["measured_p50_ms"] = round(m.latency.p50_ms, 4)
    for row, manifest, graph in cells:
        key = (row["model"], row["format"], row["precision"])
        if key in saved:
            row["measured_p50_ms"], row["measurement"] = saved[key], "reused"
        if "measured_p50_ms" in row:
            _estimate_cell(row, manifest, graph, profile)
    return rows


def _estimate_cell(row: dict[str, Any], manifest: Path, graph: Path, profile: Any) -> None:
    """Estimate one measured cell with the calibrated host profile; fills the row's estimate and % error."""
    from edgestill.artifact import Artifact
    from edgestill.devices.costmodel import graph_cost
    from edgestill.devices.estimator import estimate
    from edgestill.devices.tflite_cost import outside_xnnpack, tflite_cost

    fmt, precision, measured = row["format"], row["precision"], row["measured_p50_ms"]
    try:
        if fmt == "tflite":  # the file's own graph: its int8 ops and the fp32 islands it keeps
            cost = tflite_cost(_model_path(manifest))
            row["graph"] = "tflite file"
            left = outside_xnnpack(_model_path(manifest))
            if left:  # ops on LiteRT's builtin kernels
                row["outside_xnnpack"] = left
        else:
            cost = graph_cost(_model_path(graph))
            row["graph"] = "onnx " + ("artifact" if fmt == "onnx" else "fp32 export")
        est = estimate(cost, profile, runtime=row["runtime"], precision=precision, threads=1,
                       artifact=Artifact.load(manifest).name, format=fmt)
    except Exception as exc:  # noqa: BLE001 - an estimator refusal is reported in the row
        row["error"] = f"estimate: {type(exc).__name__}: {str(exc)[:300]}"
        return
    point = est.settings["estimate_ms"]
    row.update({"estimated_ms": point, "low_ms": est.low_ms, "high_ms": est.high_ms,
                "fit": est.provenance["estimator"]["fit"],
                "error_percent": round((point - measured) / measured * 100.0, 2)})


def _saved_host(path: Path) -> dict[str, Any]:
    """The ``host`` block of a previous run's JSON line (the last line of ``path`` that parses)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise SystemExit(f"--reuse-measurements: cannot read {path}: {exc.strerror or exc}") from None
    for line in reversed(lines):
        with contextlib.suppress(ValueError):
            doc = json.loads(line)
            if isinstance(doc, dict) and isinstance(doc.get("host"), dict) and doc["host"].get("cells"):
                return doc["host"]
    raise SystemExit(f"--reuse-measurements: {path} holds no run with host cells (a JSON line of this script)")


def _model_path(manifest: Path) -> Path:
    from edgestill.artifact import Artifact

    return Artifact.load(manifest).model_path


def main() -> int:
    from edgestill.models import ZOO

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(ZOO), help="comma-separated zoo models (default: all)")
    parser.add_argument("--formats", default="onnx,openvino,tflite")
    parser.add_argument("--precisions", default="fp32,int8")
    parser.add_argument("--quick-calibration", action="store_true", help="small micro shapes (a smoke test)")
    parser.add_argument("--reuse-calibration", action="store_true",
                        help="use the calibration a previous run cached in perf/.cache/estimator_accuracy/profiles/")
    parser.add_argument("--reuse-measurements", type=Path, nargs="?", const=ROOT / "results" / "estimator_accuracy.json",
                        metavar="RUN.json", help="re-score against a saved run (default perf/results/estimator_accuracy"
                        ".json): its measured p50s and micro timings (refitted) are taken, nothing is timed")
    parser.add_argument("--skip-host", action="store_true", help="only (a), the published cross-validation")
    parser.add_argument("--min-seconds", type=float, default=1.0, help="steady-state seconds per measured cell")
    args = parser.parse_args()
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    bad = [f for f in formats if f not in FORMAT_RUNTIME] + [p for p in precisions if p not in ("fp32", "int8")]
    if bad:
        parser.error(f"unknown format or precision: {bad}; formats {list(FORMAT_RUNTIME)}, precisions fp32, int8")

    from edgestill.devices.estimator import cross_validate_published

    t0 = time.perf_counter()
    published = cross_validate_published()
    out: dict[str, Any] = {
        "published": {"n": published["n"], "within_25_percent": published["within_25_percent"],
                      "median_abs_percent": published["median_abs_percent"], "method": published.get("method"),
                      "dropped": len(published.get("dropped") or [])},
    }
    if not args.skip_host:
        CACHE.mkdir(parents=True, exist_ok=True)
        saved_host = _saved_host(args.reuse_measurements) if args.reuse_measurements else None
        with contextlib.redirect_stdout(sys.stderr):
            profile, entries, micro = calibrate_host(args.quick_calibration, args.reuse_calibration, saved_host)
        saved = None if saved_host is None else {
            (c["model"], c["format"], c["precision"]): c["measured_p50_ms"]
            for c in saved_host.get("cells", []) if c.get("measured_p50_ms")}
        rows = host_cells(models, formats, precisions, profile, args.min_seconds, sys.stderr, saved)
        errors = [r["error_percent"] for r in rows if "error_percent" in r]
        host = {**_summary(errors), "target_within_25_percent": TARGET,
                "met": bool(errors) and _summary(errors)["within_25_percent"] >= TARGET,
                "failed_cells": sum(1 for r in rows if "error" in r), "threads": 1,
                "by_format": {f: _summary([r["error_percent"] for r in rows if r["format"] == f and "error_percent" in r])
                              for f in formats},
                "by_format_precision": {f"{f}/{p}": _summary([r["error_percent"] for r in rows if r["format"] == f
                                                              and r["precision"] == p and "error_percent" in r])
                                        for f in formats for p in precisions},
                "by_fit": {fit: _summary([r["error_percent"] for r in rows if r.get("fit") == fit and "error_percent" in r])
                           for fit in sorted({r["fit"] for r in rows if "fit" in r})},
                "calibration": entries, "calibration_reused": args.reuse_calibration,
                "calibration_micro": micro, "cells": rows, "quick_calibration": args.quick_calibration,
                "load_average_1m": round(os.getloadavg()[0], 2)}
        if saved_host is not None:
            host["measurements_reused_from"] = {"file": str(args.reuse_measurements),
                                                "load_average_1m": saved_host.get("load_average_1m")}
        out["host"] = host
    out["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
