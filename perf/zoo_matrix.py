"""Export every zoo model to every format at fp32 and validate it: prints one JSON line per cell.

Each cell runs ``edgestill.export.api.export`` (non-strict, so one failing cell does not stop the matrix)
at the model's standard input with ``--samples`` seeded validation samples, and prints:
model, format, precision, passed, max_abs, cosine, top1_agreement, export_seconds, validate_seconds,
macs, params, error. A final line ``{"summary": ...}`` counts passed cells. Exit code 0 when all passed.

Usage: python perf/zoo_matrix.py [--models a,b] [--formats onnx,tflite,openvino] [--samples 8] [--out DIR]
       [--threads 1]
Converter logs go to --log, so stdout carries only the JSON lines.
(slow: minutes per large model on a shared 2-core machine; run it with nohup and redirect to a .jsonl file)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path


def run_cell(model_name: str, fmt: str, samples: int, out_dir: Path) -> dict:
    from edgestill.export.api import ExportConfig, export
    from edgestill.models import create_model, default_num_classes, example_input, sample_inputs
    from edgestill.models.costs import model_costs

    model = create_model(model_name, num_classes=default_num_classes(model_name), seed=0).eval()
    example = example_input(model_name, seed=0)
    costs = model_costs(model, example)
    config = ExportConfig(formats=(fmt,), precisions=("fp32",), name=model_name, strict=False)
    row = {"model": model_name, "format": fmt, "precision": "fp32", **costs}
    t0 = time.perf_counter()
    try:
        (result,) = export(model, (example,), config, out_dir / model_name,
                           validation_inputs=sample_inputs(model_name, samples, seed=1))
    except Exception as exc:  # a converter crash: record it and keep going
        return {**row, "passed": False, "error": f"{type(exc).__name__}: {exc}"[:2000],
                "export_seconds": round(time.perf_counter() - t0, 2)}
    parity = result.report.outputs[0] if result.report and result.report.outputs else None
    return {
        **row,
        "passed": result.passed,
        "max_abs": parity.max_abs if parity else None,
        "cosine": parity.cosine if parity else None,
        "top1_agreement": parity.top1_agreement if parity else None,
        "export_seconds": round(result.export_seconds, 2),
        "validate_seconds": round(result.validate_seconds, 2),
        "error": result.error,
    }


def main() -> int:
    from edgestill.commands.streams import library_output_to
    from edgestill.models import ZOO

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(ZOO), help="comma-separated zoo model names (default: all)")
    parser.add_argument("--formats", default="onnx,tflite,openvino")
    parser.add_argument("--samples", type=int, default=8, help="validation samples per cell")
    parser.add_argument("--out", default=None, help="keep the artifacts here (default: a temporary folder)")
    parser.add_argument("--log", default=str(Path(tempfile.gettempdir()) / "zoo_matrix.log"),
                        help="converter chatter (stdout/stderr of the libraries) goes here")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the machine is shared)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    models = [m for m in args.models.split(",") if m]
    formats = [f for f in args.formats.split(",") if f]
    passed = total = 0
    with tempfile.TemporaryDirectory(prefix="zoo-matrix-") as tmp:
        out = Path(args.out) if args.out else Path(tmp)
        for name in models:
            for fmt in formats:
                with library_output_to(Path(args.log)) as (term_out, _):
                    row = run_cell(name, fmt, args.samples, out)
                    print(json.dumps(row), file=term_out, flush=True)
                total += 1
                passed += bool(row["passed"])
    print(json.dumps({"summary": {"cells": total, "passed": passed, "failed": total - passed}}), flush=True)
    return 0 if passed == total else 1


if __name__ == "__main__":
    sys.exit(main())
