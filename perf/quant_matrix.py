"""int8 accuracy drop and int8/fp32 latency per model × format at 1 thread; one JSON line per cell.

Models: the demo student (DEMO preset architecture) and zoo models, each trained briefly on the generated
synthetic-shapes data (3×32×32, 10 classes) so accuracy means something. Per format: static int8 (all-int8, no
float fallback, so the drop is the quantizer's own), accuracy of fp32 and int8 artifacts on the format's runtime
over the test split, and p50 at 1 thread of both in ``--rounds`` interleaved rounds (runner subprocesses;
the ratio is the median of the per-round ratios). With ``--markdown`` it also prints the README table.

Usage: python perf/quant_matrix.py [--models demo-student,mobilenet_v2,...] [--epochs 2] [--rounds 3] [--markdown]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_MODELS = "demo-student,mobilenet_v2,mobilenet_v3_small,resnet18,squeezenet1_1,efficientnet_lite0"


def _build(name: str, num_classes: int, seed: int):
    from demo_settings import DEMO
    from edgestill.models import create_model

    if name == "demo-student":
        return create_model(DEMO.student_model, num_classes=num_classes, in_channels=3, seed=seed, **dict(DEMO.student_kwargs))
    return create_model(name, num_classes=num_classes, in_channels=3, seed=seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", default=DEFAULT_MODELS)
    parser.add_argument("--formats", default="onnx,tflite,openvino")
    parser.add_argument("--epochs", type=int, default=2, help="training epochs per model on the generated data")
    parser.add_argument("--size", default="default", choices=("default", "quick"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calibration-samples", type=int, default=300)
    parser.add_argument("--train-threads", type=int, default=2, help="training threads")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()

    import numpy as np
    import torch

    from edgestill.compress.distill.trainer import TrainConfig, evaluate, train
    from edgestill.compress.quantize import QuantizeConfig, quantize, select_calibration
    from edgestill.data import load_dataset
    from edgestill.models import count_parameters

    torch.set_num_threads(args.train_threads)
    data = load_dataset("synthetic-shapes", size=args.size)
    idx = select_calibration(len(data.train), labels=data.train.y, n=args.calibration_samples)
    rows = []
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        t0 = time.perf_counter()
        model = _build(name, data.num_classes, seed=0)
        res = train(model, data, TrainConfig(epochs=args.epochs, batch_size=128, lr=0.05, warmup_epochs=min(1, args.epochs - 1)))
        model = res.model.eval()
        torch_acc = evaluate(model, data.test)
        train_s = time.perf_counter() - t0
        config = QuantizeConfig(formats=tuple(args.formats.split(",")), name=name.replace("_", "-"), max_float_layers=0,
                                bench_rounds=args.rounds)
        with tempfile.TemporaryDirectory(prefix="quant-matrix-") as tmp:
            try:
                result = quantize(model, (torch.from_numpy(data.test.x[:1]),), config, Path(tmp) / "out",
                                  calibration=data.train.x[idx], calibration_ids=[str(i) for i in data.train.ids[idx]],
                                  eval_x=data.test.x, eval_y=data.test.y)
            except Exception as exc:  # one model failing (an op a format cannot express) must not stop the matrix
                row = {"model": name, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
                print(json.dumps(row), flush=True)
                rows.append(row)
                continue
        for f in result.formats:
            lat = f.latency or {}
            each = lat.get("p50_ms_each", {})
            ratios = [b / a for a, b in zip(each.get("fp32", []), each.get("naive", [])) if a]
            row = {
                "model": name, "params": count_parameters(model), "train_epochs": args.epochs, "train_s": round(train_s, 1),
                "torch_acc": round(torch_acc, 4), "format": f.format, "runtime": f.runtime,
                "fp32_acc": round(f.fp32_accuracy, 4), "int8_acc": round(f.naive.accuracy, 4),
                "int8_drop_points": round(f.naive.drop_points, 2), "int8_sqnr_db": f.naive.sqnr_db,
                "fp32_p50_ms": lat.get("p50_ms", {}).get("fp32"), "int8_p50_ms": lat.get("p50_ms", {}).get("naive"),
                "int8_vs_fp32_latency": round(float(np.median(ratios)), 3) if ratios else None,
                "ratio_each_round": [round(r, 3) for r in ratios], "threads": 1, "rounds": args.rounds,
                "load_average_1m": round(__import__("os").getloadavg()[0], 2),
            }
            print(json.dumps(row), flush=True)
            rows.append(row)
    if args.markdown:
        print(markdown(rows), file=sys.stderr)


def markdown(rows: list[dict]) -> str:
    """The README table from the JSON rows."""
    lines = ["| model | params | format | fp32 acc | int8 acc | drop (pts) | int8/fp32 p50 (1 thr) | fp32 p50 ms | int8 p50 ms |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | | failed: {r['error'][:80]} | | | | | | |")
            continue
        lines.append(
            f"| {r['model']} | {r['params']:,} | {r['format']} | {100 * r['fp32_acc']:.2f}% | {100 * r['int8_acc']:.2f}% | "
            f"{r['int8_drop_points']:.2f} | {r['int8_vs_fp32_latency']} | {r['fp32_p50_ms']:.3f} | {r['int8_p50_ms']:.3f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
