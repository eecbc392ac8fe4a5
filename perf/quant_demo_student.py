"""Acceptance check for the demo student: static int8 per format within the default budget and its latency vs fp32.

Loads a demo student checkpoint (``edgestill demo`` writes OUT/checkpoints/student-kd.safetensors), quantizes it
for ONNX, TFLite and OpenVINO with ``quantize(...)`` (300 class-stratified calibration samples from the training
split, budget 1.0 point on the test split, each artifact on its own runtime) and times fp32 and int8 at 1 thread
in ``--rounds`` interleaved rounds (runner subprocesses). Prints one JSON line per format.

``--max-float-layers`` (default: no limit, the product's default) lets the accuracy-aware search keep layers in
float when all-int8 misses the budget; ``0`` measures all-int8 only. Each line reports the all-int8 ("naive")
and the final artifact: accuracy, drop, which layers stayed float, and int8/fp32 p50 ratios per round.

Usage: python perf/quant_demo_student.py CHECKPOINT [--rounds 5] [--openvino-preset performance|mixed]
       [--max-float-layers N] [--tflite-recipe pt2e|aeq-static] [--formats onnx,tflite,openvino]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("checkpoint")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--formats", default="onnx,tflite,openvino")
    parser.add_argument("--openvino-preset", default="performance")
    parser.add_argument("--max-float-layers", type=int, default=None)
    parser.add_argument("--tflite-recipe", default=None)
    args = parser.parse_args()

    import numpy as np
    import torch

    from demo_settings import DEMO
    from edgestill.compress.quantize import QuantizeConfig, QuantOptions, quantize, select_calibration
    from edgestill.data import load_dataset
    from edgestill.models import create_model
    from edgestill.models.loading import load_checkpoint

    torch.set_num_threads(1)
    data = load_dataset(DEMO.dataset, seed=DEMO.seed, size=DEMO.dataset_size)
    model = create_model(DEMO.student_model, num_classes=data.num_classes, in_channels=3, **dict(DEMO.student_kwargs))
    load_checkpoint(model, args.checkpoint)
    idx = select_calibration(len(data.train), labels=data.train.y, n=300, seed=DEMO.seed)
    config = QuantizeConfig(formats=tuple(args.formats.split(",")), name="student", max_float_layers=args.max_float_layers,
                            bench_rounds=args.rounds,
                            options=QuantOptions(openvino_preset=args.openvino_preset, tflite_recipe=args.tflite_recipe))
    with tempfile.TemporaryDirectory() as tmp:
        result = quantize(model.eval(), (torch.from_numpy(data.test.x[:1]),), config, Path(tmp) / "out",
                          calibration=data.train.x[idx], calibration_ids=[str(i) for i in data.train.ids[idx]],
                          eval_x=data.test.x, eval_y=data.test.y)
    for f in result.formats:
        lat = f.latency or {}
        each = lat.get("p50_ms_each", {})
        ratios = [b / a for a, b in zip(each.get("fp32", []), each.get("naive", [])) if a]
        final_ratios = [b / a for a, b in zip(each.get("fp32", []), each.get("final", [])) if a]
        if not final_ratios and f.final is not None and f.final.label == f.naive.label:
            final_ratios = ratios  # the all-int8 file met the budget: it is the final artifact
        print(json.dumps({
            "format": f.format, "runtime": f.runtime, "fp32_acc": f.fp32_accuracy, "int8_acc": f.naive.accuracy,
            "drop_points": f.naive.drop_points, "within_budget": f.budget_met, "p50_ms": lat.get("p50_ms"),
            "int8_vs_fp32_median_ratio": round(float(np.median(ratios)), 3) if ratios else None,
            "ratio_each_round": [round(r, 3) for r in ratios],
            "final_acc": f.final.accuracy if f.final else None, "final_drop_points": f.final.drop_points if f.final else None,
            "final_float_layers": list(f.final.float_layers) if f.final else None,
            "final_vs_fp32_median_ratio": round(float(np.median(final_ratios)), 3) if final_ratios else None,
            "openvino_preset": args.openvino_preset, "tflite_recipe": args.tflite_recipe,
            "max_float_layers": args.max_float_layers,
            "load_average_1m": round(__import__("os").getloadavg()[0], 2),
        }), flush=True)


if __name__ == "__main__":
    main()
