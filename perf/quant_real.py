"""int8 on trained zoo CNNs, per model × format, through the product's own ``quantize`` verb (issue 17).

Models: the zoo CNNs ``perf/quant_real_models.py`` trains and caches (``digits`` upsampled to 3×32×32, trained
from scratch to the fp32 test accuracy its JSON states; see that module for how). For each model and format,
``edgestill.compress.quantize.quantize`` runs with the product's defaults (static int8, budget 1 point of
accuracy on the test split, float fallback, KD repair with the fp32 model as the oracle on the unlabelled
training images, the final file's parity with torch) on 300 class-stratified calibration samples from the
training split. Per cell it records: fp32 accuracy (torch and the format's runtime), the naive (all-int8)
file's logits SQNR, top-1 agreement with the fp32 file and accuracy drop, the final file's (after fallback or
repair), the layers kept in float, int8/fp32 p50 at 1 thread (the verb's own interleaved runner rounds), the
quantization wall time, and the options that ran (the manifest's ``quantization`` record).

``--latency-size 224`` also times the same trained weights at that input size (the zoo CNNs are fully
convolutional with a global pool): at 32×32 the feature maps are tiny and per-op overhead hides much of int8's
arithmetic saving, so this shows the speed at the size the architectures were designed for (all-int8, 64
upsampled calibration images, the label-free agreement as a sanity check; accuracy there means nothing).

Each cell is marked against issue 17's acceptance: final agreement ≥ 97%, drop ≤ 1 point, int8 ≥ 1.5× faster
than fp32; per model, ≥ 1.5× on at least two runtimes. One JSON line per cell, then one summary line; with
``--markdown`` the README table goes to stderr (and to ``--md-out`` when given).

Usage: python perf/quant_real.py [--models mobilenet_v2,...] [--formats onnx,tflite,openvino] [--rounds 5]
       [--no-latency] [--no-repair] [--label-free] [--latency-size 224] [--markdown] [--md-out FILE]
       python perf/quant_real.py --from RUN1.jsonl [RUN2.jsonl ...] [--markdown] [--md-out FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

MIN_AGREEMENT = 0.97
MAX_DROP_POINTS = 1.0
MIN_SPEEDUP = 1.5
CALIBRATION_SAMPLES = 300


def _r(v: Any, nd: int = 4) -> Any:
    return round(float(v), nd) if isinstance(v, (int, float)) and not isinstance(v, bool) else v


def _manifest_quantization(f) -> dict[str, Any]:
    """The final file's ``quantization`` record: from the published artifact, else its rejected manifest."""
    if f.artifact is not None:
        return dict(getattr(f.artifact, "quantization", None) or {})
    for p in getattr(f, "rejected_files", []) or []:
        if "manifest" in Path(p).name:
            try:
                return dict(json.loads(Path(p).read_text()).get("quantization") or {})
            except (OSError, ValueError):
                pass
    return {}


def _speedup(latency: dict[str, Any] | None, key: str) -> tuple[float | None, list[float]]:
    """fp32 p50 / int8 p50: the median of the per-round ratios, and the ratios."""
    import numpy as np

    each = (latency or {}).get("p50_ms_each", {})
    int8 = each.get(key) or (each.get("naive") if key == "final" else None) or []
    ratios = [a / b for a, b in zip(each.get("fp32", []), int8) if a and b]
    return (round(float(np.median(ratios)), 3) if ratios else None), [round(r, 3) for r in ratios]


def cell_row(model_name: str, info: dict[str, Any], f, seconds: float, latency_on: bool) -> dict[str, Any]:
    """One JSON row from a FormatResult (read through ``to_dict`` with ``.get``, so new fields do not break it)."""
    d = f.to_dict()
    naive, final = d.get("naive") or {}, d.get("final") or {}
    q = _manifest_quantization(f)
    lat = d.get("latency") or {}
    speed_naive, _ = _speedup(lat, "naive")
    speed_final, ratios = _speedup(lat, "final")
    p50 = lat.get("p50_ms", {})
    row: dict[str, Any] = {
        "kind": "cell", "model": model_name, "format": d.get("format"), "runtime": d.get("runtime"),
        "dataset": info.get("dataset"), "image_size": info.get("image_size"), "train_epochs": info.get("epochs"),
        "torch_fp32_acc": info.get("fp32_test_accuracy"), "fp32_acc": _r(d.get("fp32_accuracy")),
        "metric": d.get("metric"),
        "naive_sqnr_db": naive.get("sqnr_db"), "naive_agreement": naive.get("top1_agreement"), "naive_kl": naive.get("kl"),
        "naive_acc": _r(naive.get("accuracy")), "naive_drop_points": _r(naive.get("drop_points"), 2),
        "final_label": final.get("label"), "final_sqnr_db": final.get("sqnr_db"), "final_agreement": final.get("top1_agreement"),
        "final_kl": final.get("kl"), "final_acc": _r(final.get("accuracy")), "final_drop_points": _r(final.get("drop_points"), 2),
        "float_layers": d.get("float_layers") or [], "precision": d.get("precision"), "passed": d.get("passed"),
        "budget_met": d.get("budget_met"), "stopped_by": d.get("stopped_by"), "error": d.get("error"),
        "failures": d.get("failures") or (q.get("search") or {}).get("failures") or [],
        "repair": d.get("repair"), "attempts": [{k: a.get(k) for k in ("label", "accuracy", "drop_points", "top1_agreement", "sqnr_db")}
                                                for a in d.get("attempts") or []],
        "fp32_p50_ms": _r(p50.get("fp32")), "naive_p50_ms": _r(p50.get("naive")), "final_p50_ms": _r(p50.get("final")),
        "naive_speedup": speed_naive, "final_speedup": speed_final, "speedup_each_round": ratios,
        "latency_failed": lat.get("failed"), "quantize_s": round(seconds, 1),
        "options": q.get("options"), "quantization": {k: v for k, v in q.items() if k not in ("search", "calibration")},
    }
    row["verdict"], row["misses"] = verdict(row, latency_on)
    return row


def _short_error(error: str | None) -> str:
    """The verb's rejection reason in a few words (for the table)."""
    import re

    text = " ".join(str(error or "").split())
    m = re.search(r"failed parity with torch: (.*?) \(max_abs", text)
    if m:
        return f"parity: {m.group(1)}"
    m = re.search(r"missed the accuracy budget: (.*?);", text)
    if m:
        return f"over budget: {m.group(1)}"
    return text[:160]


def verdict(row: dict[str, Any], latency_on: bool) -> tuple[str, list[str]]:
    """``pass`` or ``miss`` and why, against the acceptance (agreement, drop, speed) and the verb's own verdict."""
    misses = []
    if row.get("error") and row.get("final_acc") is None:
        return "miss", [f"no int8 file: {_short_error(row['error'])}"]
    agree, drop = row.get("final_agreement"), row.get("final_drop_points")
    if agree is None or agree < MIN_AGREEMENT:
        misses.append("agreement " + ("unknown" if agree is None else f"{100 * agree:.1f}%") + f" < {100 * MIN_AGREEMENT:g}%")
    if drop is None or drop > MAX_DROP_POINTS:
        misses.append(f"drop {drop} pts > {MAX_DROP_POINTS:g}")
    if latency_on:
        sp = row.get("final_speedup")
        if sp is None or sp < MIN_SPEEDUP:
            misses.append(("speed-up unknown" if sp is None else f"speed-up {sp:.2f}×") + f" < {MIN_SPEEDUP:g}×")
    if row.get("passed") is False:
        misses.append(f"rejected by the verb ({_short_error(row.get('error'))})")
    return ("pass" if not misses else "miss"), misses


def run_cell(name: str, fmt: str, model, example, data, info: dict[str, Any], args) -> dict[str, Any]:
    import numpy as np

    from edgestill.compress.quantize import QuantizeConfig, quantize, select_calibration

    idx = select_calibration(len(data.train_y), labels=data.train_y, n=args.calibration_samples, seed=0)
    repair = None
    if args.repair:
        from edgestill.compress.quantize.repair import ORACLE_FP32, RepairConfig

        repair = RepairConfig(teacher=model, train_x=data.train_x, oracle=ORACLE_FP32, epochs=args.repair_epochs)
    config = QuantizeConfig(formats=(fmt,), name=name.replace("_", "-"), bench_latency=args.latency, bench_rounds=args.rounds,
                            time_budget_s=args.time_budget, max_float_layers=args.max_float_layers)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="quant-real-") as tmp, contextlib.redirect_stdout(sys.stderr):
        try:
            result = quantize(model, (example,), config, Path(tmp) / "out", calibration=data.train_x[idx],
                              calibration_ids=[str(i) for i in idx], eval_x=data.test_x,
                              eval_y=None if args.label_free else data.test_y, repair=repair)
        except Exception as exc:  # one cell failing (an op a format cannot express) must not stop the matrix
            row = {"model": name, "format": fmt, "error": f"{type(exc).__name__}: {' '.join(str(exc).split())[:400]}",
                   "quantize_s": round(time.perf_counter() - t0, 1), "torch_fp32_acc": info.get("fp32_test_accuracy")}
            row["verdict"], row["misses"] = "miss", [f"quantize raised: {row['error'][:200]}"]
            return row
        seconds = time.perf_counter() - t0
        row = cell_row(name, info, result.formats[0], seconds, args.latency)
    row.update(label_free=bool(args.label_free), calibration_samples=int(len(idx)), eval_samples=int(len(data.test_y)), threads=1,
               rounds=args.rounds if args.latency else 0, load_average=[round(v, 2) for v in os.getloadavg()],
               calibration_class_counts=np.bincount(data.train_y[idx], minlength=data.num_classes).tolist())
    return row


def run_speed_cell(name: str, fmt: str, model, data, args) -> dict[str, Any]:
    """int8/fp32 p50 of the same trained weights at ``--latency-size`` (the networks are fully convolutional with a
    global pool, so they run at any size): the verb with all layers int8 (no fallback), calibration and eval images
    upsampled from the data; accuracy at that size means nothing (the model was trained at 32×32), so the budget is
    the label-free agreement with fp32 and only the speed is the point."""
    import numpy as np
    import torch

    from edgestill.compress.quantize import QuantizeConfig, quantize, select_calibration

    size = args.latency_size

    def up(x: np.ndarray) -> np.ndarray:
        t = torch.nn.functional.interpolate(torch.from_numpy(x), size=(size, size), mode="bilinear", align_corners=False)
        return np.ascontiguousarray(t.numpy())

    idx = select_calibration(len(data.train_y), labels=data.train_y, n=args.latency_calibration, seed=0)
    calib, evalx = up(data.train_x[idx]), up(data.test_x[:args.latency_eval])
    config = QuantizeConfig(formats=(fmt,), name=f"{name.replace('_', '-')}-{size}", max_float_layers=0, bench_latency=True,
                            bench_rounds=args.rounds)
    t0 = time.perf_counter()
    row: dict[str, Any] = {"kind": "speed_at_size", "model": name, "format": fmt, "image_size": size,
                           "calibration_samples": int(len(idx)), "eval_samples": int(len(evalx))}
    with tempfile.TemporaryDirectory(prefix="quant-real-speed-") as tmp, contextlib.redirect_stdout(sys.stderr):
        try:
            result = quantize(model, (torch.from_numpy(evalx[:1].copy()),), config, Path(tmp) / "out", calibration=calib,
                              eval_x=evalx, eval_y=None)
        except Exception as exc:  # noqa: BLE001 - one cell failing must not stop the matrix
            row.update(error=f"{type(exc).__name__}: {' '.join(str(exc).split())[:400]}", quantize_s=round(time.perf_counter() - t0, 1))
            return row
        d = result.formats[0].to_dict()
    naive, lat = d.get("naive") or {}, d.get("latency") or {}
    speed, ratios = _speedup(lat, "naive")
    p50 = lat.get("p50_ms", {})
    row.update(runtime=d.get("runtime"), naive_sqnr_db=naive.get("sqnr_db"), naive_agreement=naive.get("top1_agreement"),
               fp32_p50_ms=_r(p50.get("fp32")), int8_p50_ms=_r(p50.get("naive")), speedup=speed, speedup_each_round=ratios,
               latency_failed=lat.get("failed"), error=d.get("error") if not d.get("passed") else None,
               quantize_s=round(time.perf_counter() - t0, 1), threads=1, rounds=args.rounds,
               load_average=[round(v, 2) for v in os.getloadavg()])
    return row


def summarize(rows: list[dict[str, Any]], latency_on: bool) -> dict[str, Any]:
    """Per model: cells passing, and whether ≥ 2 runtimes are ≥ 1.5× faster; overall verdict."""
    models: dict[str, Any] = {}
    for r in rows:
        if r.get("kind") == "speed_at_size":
            m = models.setdefault(r["model"], {"cells": 0, "passed": 0, "fast_runtimes": [], "misses": {}})
            key = f"fast_runtimes_at_{r['image_size']}"
            m.setdefault(key, [])
            if (r.get("speedup") or 0) >= MIN_SPEEDUP:
                m[key].append(r.get("runtime") or r["format"])
            continue
        m = models.setdefault(r["model"], {"cells": 0, "passed": 0, "fast_runtimes": [], "misses": {}})
        m["cells"] += 1
        m["passed"] += r.get("verdict") == "pass"
        if (r.get("final_speedup") or 0) >= MIN_SPEEDUP:
            m["fast_runtimes"].append(r.get("runtime") or r.get("format"))
        if r.get("misses"):
            m["misses"][r["format"]] = r["misses"]
    for m in models.values():
        m["two_fast_runtimes"] = len(m["fast_runtimes"]) >= 2 if latency_on and m["cells"] else None
        for key in [k for k in m if k.startswith("fast_runtimes_at_")]:
            m["two_" + key] = len(m[key]) >= 2
    return {"summary": True, "models": models, "cells": sum(m["cells"] for m in models.values()), "cells_passed": sum(m["passed"] for m in models.values()),
            "all_pass": all(m["passed"] == m["cells"] and m["two_fast_runtimes"] is not False for m in models.values()),
            "latency": latency_on, "load_average": [round(v, 2) for v in os.getloadavg()]}


def markdown(rows: list[dict[str, Any]]) -> str:
    """The README table from the JSON rows."""
    def pct(v):
        return "—" if v is None else f"{100 * v:.1f}%"

    def num(v, fmt="{:.2f}"):
        return "—" if v is None else fmt.format(v)

    lines = ["| model | fp32 acc | format | naive SQNR dB | naive agree | naive drop | final agree | final drop | float layers | "
             "int8/fp32 speed-up (1 thr) | quantize s | verdict |", "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        if r.get("kind") == "speed_at_size":
            continue
        verdict_txt = r.get("verdict", "?") + (f": {'; '.join(r['misses'])}" if r.get("misses") else "")
        lines.append(
            f"| {r['model']} | {pct(r.get('torch_fp32_acc'))} | {r['format']} | {num(r.get('naive_sqnr_db'), '{:.1f}')} | "
            f"{pct(r.get('naive_agreement'))} | {num(r.get('naive_drop_points'))} | {pct(r.get('final_agreement'))} | "
            f"{num(r.get('final_drop_points'))} | {len(r.get('float_layers') or [])} | "
            f"{num(r.get('final_speedup'), '{:.2f}×')} | {num(r.get('quantize_s'), '{:.0f}')} | {verdict_txt} |"
        )
    speed = [r for r in rows if r.get("kind") == "speed_at_size"]
    if speed:
        lines += ["", f"The same weights at {speed[0]['image_size']}×{speed[0]['image_size']} (all-int8, latency only):", "",
                  "| model | format | fp32 p50 ms | int8 p50 ms | int8/fp32 speed-up (1 thr) | naive SQNR dB |",
                  "|---|---|---:|---:|---:|---:|"]
        for r in speed:
            lines.append(f"| {r['model']} | {r['format']} | {num(r.get('fp32_p50_ms'), '{:.3f}')} | "
                         f"{num(r.get('int8_p50_ms'), '{:.3f}')} | {num(r.get('speedup'), '{:.2f}×')} | "
                         f"{num(r.get('naive_sqnr_db'), '{:.1f}')} |" + (f" failed: {r['error'][:80]}" if r.get("error") and r.get("speedup") is None else ""))
    return "\n".join(lines)


def summary_markdown(summary: dict[str, Any]) -> str:
    """Per model: cells within the acceptance, and the runtimes where int8 is ≥ 1.5× faster."""
    lines = []
    for name, m in summary["models"].items():
        fast = ", ".join(m["fast_runtimes"]) or "none"
        speed = "" if m["two_fast_runtimes"] is None else f"; ≥ {MIN_SPEEDUP:g}× faster on {fast}"
        for key in [k for k in m if k.startswith("fast_runtimes_at_")]:
            speed += f"; at {key.rsplit('_', 1)[1]}×{key.rsplit('_', 1)[1]} ≥ {MIN_SPEEDUP:g}× faster on {', '.join(m[key]) or 'none'}"
        lines.append(f"- {name}: {m['passed']}/{m['cells']} cells pass{speed}.")
    return "\n".join(lines)


def _commit() -> str | None:
    """The repository's HEAD (and whether the tree had changes), for the record."""
    import subprocess

    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10,
                              cwd=Path(__file__).parent).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True,
                               timeout=10, cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (head + ("+changes" if dirty else "")) or None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="mobilenet_v2,mobilenet_v3_small,efficientnet_lite0,resnet18,squeezenet1_1")
    parser.add_argument("--formats", default="onnx,tflite,openvino")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved latency rounds (fp32, naive, final)")
    parser.add_argument("--no-latency", dest="latency", action="store_false")
    parser.add_argument("--no-repair", dest="repair", action="store_false", help="no KD repair when fallback misses")
    parser.add_argument("--repair-epochs", type=int, default=2)
    parser.add_argument("--time-budget", type=float, default=180.0, help="float-fallback search seconds per cell")
    parser.add_argument("--label-free", action="store_true",
                        help="the verb's label-free budget: top-1 agreement with the fp32 file (drop = 100 × (1 − agreement))")
    parser.add_argument("--max-float-layers", type=int, default=None, help="float-fallback limit (default: none; 0: all-int8)")
    parser.add_argument("--calibration-samples", type=int, default=CALIBRATION_SAMPLES)
    parser.add_argument("--latency-size", type=int, default=None,
                        help="also time fp32 vs all-int8 of the same weights at this input size (e.g. 224)")
    parser.add_argument("--latency-calibration", type=int, default=64, help="calibration samples for --latency-size")
    parser.add_argument("--latency-eval", type=int, default=64, help="agreement samples for --latency-size")
    parser.add_argument("--only-latency-size", action="store_true", help="skip the accuracy cells (with --latency-size)")
    parser.add_argument("--from", dest="from_files", nargs="+", default=None,
                        help="no runs: read the rows of these JSON-lines files (earlier runs) and print the summary/table")
    parser.add_argument("--cache", default=None, help="trained-model cache folder (default perf/.cache/quant_real)")
    parser.add_argument("--markdown", action="store_true", help="print the README table to stderr")
    parser.add_argument("--md-out", default=None, help="also write the table (with the summary) to this file")
    args = parser.parse_args(argv)

    import torch

    import quant_real_models as qm

    torch.set_num_threads(1)
    cache = Path(args.cache) if args.cache else qm.CACHE
    rows = []
    if args.from_files:
        for path in args.from_files:
            rows += [r for r in (json.loads(s) for s in Path(path).read_text().splitlines() if s.startswith("{"))
                     if not r.get("summary")]
        for r in rows:  # judged again: the acceptance code may be newer than the run
            if r.get("kind", "cell") == "cell" and "final_agreement" in r:
                r["verdict"], r["misses"] = verdict(r, bool(r.get("rounds")))
        args.latency = any(r.get("kind", "cell") == "cell" and r.get("rounds") for r in rows)
    for name in [] if args.from_files else [m.strip() for m in args.models.split(",") if m.strip()]:
        model, example, data = qm.load_trained(name, cache=cache)
        info = qm.trained_info(name, cache=cache)
        for fmt in [f.strip() for f in args.formats.split(",") if f.strip()]:
            if not args.only_latency_size:
                row = run_cell(name, fmt, model, example, data, info, args)
                print(json.dumps(row), flush=True)
                rows.append(row)
            if args.latency_size:
                row = run_speed_cell(name, fmt, model, data, args)
                print(json.dumps(row), flush=True)
                rows.append(row)
    summary = summarize(rows, args.latency)
    summary["commit"] = _commit()
    print(json.dumps(summary), flush=True)
    if args.markdown or args.md_out:
        table = markdown(rows)
        if args.markdown:
            print(table, file=sys.stderr)
        if args.md_out:
            Path(args.md_out).write_text(f"{table}\n\n{summary_markdown(summary)}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
