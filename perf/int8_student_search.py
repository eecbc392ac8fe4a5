"""Which demo-student size makes static int8 faster than fp32 at 1 thread on all three runtimes?

For each candidate ``mobilenetv2-student`` configuration (width_mult, last_channels, stem_stride; input 3×32×32,
10 classes, seeded untrained weights) it exports fp32 with ``export(...)`` and static int8 with the project's
``quantize_export`` for ONNX, TFLite and OpenVINO (calibration: class-stratified samples of the real
synthetic-shapes training split), then times all six artifacts at 1 thread with ``benchmark_matrix`` (runner
subprocesses) in ``--rounds`` interleaved rounds (every artifact once per round), so drift on a shared machine
hits fp32 and int8 alike. Prints one JSON line per candidate × runtime: the median of the per-round int8/fp32
p50 ratios, their range, both p50 medians, the MACs and parameters, and the load average.

Candidates are ``W:LC:S`` triples (width_mult, last_channels, stem_stride), comma separated.

Usage: python perf/int8_student_search.py [--candidates 0.5:128:2,1.25:128:2,...] [--rounds 5] [--formats onnx,tflite,openvino]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

# the current demo student, the stride-2 width ladder, then stride-1 points (4x the compute of stride 2)
DEFAULT_CANDIDATES = "0.5:128:2,1.0:256:2,1.25:128:2,1.25:256:2,1.5:256:2,2.0:256:2,0.5:128:1,1.0:128:1"


def parse_candidates(text: str) -> list[dict]:
    """``"0.5:128:2,1.0:256:1"`` → student_kwargs dicts."""
    out = []
    for item in (c.strip() for c in text.split(",") if c.strip()):
        w, lc, s = item.split(":")
        out.append({"width_mult": float(w), "last_channels": int(lc), "stem_stride": int(s)})
    return out


def count_macs(model, x) -> int:
    """Multiply-accumulates of the Conv2d and Linear layers for one input (forward hooks)."""
    import torch.nn as nn

    total = [0]

    def hook(mod, inp, out):
        if isinstance(mod, nn.Conv2d):
            k = mod.kernel_size[0] * mod.kernel_size[1] * (mod.in_channels // mod.groups)
            total[0] += int(out.numel() * k)
        else:
            total[0] += int(mod.in_features * mod.out_features)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    model(x)
    for h in handles:
        h.remove()
    return total[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candidates", default=DEFAULT_CANDIDATES)
    parser.add_argument("--formats", default="onnx,tflite,openvino")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calibration-samples", type=int, default=300)
    parser.add_argument("--min-seconds", type=float, default=0.3, help="steady-state minimum per cell and round")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log", default=str(Path(tempfile.gettempdir()) / "int8_student_search.log"),
                        help="where the converters' own output goes (stdout keeps only the JSON lines)")
    args = parser.parse_args()

    from edgestill.commands.streams import library_output_to

    with library_output_to(Path(args.log)) as (term_out, _):
        search(args, term_out)


def search(args: argparse.Namespace, out) -> None:
    """Build, time and print every candidate (JSON lines to ``out``)."""
    import numpy as np
    import torch

    from edgestill.benchmarks.bench import benchmark_matrix
    from edgestill.runtimes.harness import BenchOptions
    from edgestill.compress.quantize import select_calibration
    from edgestill.compress.quantize.api import quantize_export
    from edgestill.data import load_dataset
    from edgestill.export import ExportConfig, export
    from edgestill.models import count_parameters, create_model

    torch.set_num_threads(1)
    formats = tuple(f.strip() for f in args.formats.split(",") if f.strip())
    data = load_dataset("synthetic-shapes", seed=args.seed, size="default")
    idx = select_calibration(len(data.train), labels=data.train.y, n=args.calibration_samples, seed=args.seed)
    calib, calib_ids = data.train.x[idx], [str(i) for i in data.train.ids[idx]]
    x1 = torch.from_numpy(data.test.x[:1])
    bench = BenchOptions(min_runs=50, min_seconds=args.min_seconds)

    for kwargs in parse_candidates(args.candidates):
        tag = f"w{kwargs['width_mult']:g}-lc{kwargs['last_channels']}-s{kwargs['stem_stride']}"
        model = create_model("mobilenetv2-student", num_classes=data.num_classes, in_channels=3, seed=args.seed, **kwargs).eval()
        with torch.no_grad():
            macs = count_macs(model, x1)
        with tempfile.TemporaryDirectory(prefix="int8-search-") as tmp:
            t0 = time.perf_counter()
            pairs = {}
            for fmt in formats:
                (res,) = export(model, (x1,), ExportConfig(formats=(fmt,), precisions=("fp32",), name=f"{tag}-fp32"),
                                Path(tmp) / "fp32", validation_inputs=data.test.x[:32])
                q = quantize_export(model, (x1,), format=fmt, precision="int8-static", calibration=calib,
                                    calibration_ids=calib_ids, staging_dir=Path(tmp) / f"int8-{fmt}", name=f"{tag}-int8")
                q.write_manifest()
                pairs[fmt] = (res.artifact.manifest_path, q.manifest_path)
            build_s = time.perf_counter() - t0
            paths = [str(p) for fmt in formats for p in pairs[fmt]]
            load_before = os.getloadavg()[0]
            ms = benchmark_matrix(paths, (1,), bench=bench, rounds=args.rounds)
            load_after = os.getloadavg()[0]
        p50: dict[str, list[float | None]] = {p: [] for p in paths}
        runtimes: dict[str, str] = {}
        for i, m in enumerate(ms):
            path = paths[i % len(paths)]
            p50[path].append(m.latency.p50_ms if m.kind == "measured" and m.latency is not None else None)
            runtimes[path] = m.runtime
        for fmt in formats:
            fp, q = (str(p) for p in pairs[fmt])
            ratios = [b / a for a, b in zip(p50[fp], p50[q]) if a and b]
            fp_ok = [v for v in p50[fp] if v]
            q_ok = [v for v in p50[q] if v]
            print(json.dumps({
                "candidate": kwargs, "tag": tag, "macs": macs, "params": count_parameters(model), "format": fmt,
                "runtime": runtimes.get(fp), "threads": 1, "rounds": args.rounds,
                "int8_vs_fp32_median_ratio": round(float(np.median(ratios)), 3) if ratios else None,
                "ratio_min": round(min(ratios), 3) if ratios else None, "ratio_max": round(max(ratios), 3) if ratios else None,
                "ratio_each_round": [round(r, 3) for r in ratios],
                "int8_faster": bool(ratios) and float(np.median(ratios)) < 1.0,
                "fp32_p50_ms": round(float(np.median(fp_ok)), 4) if fp_ok else None,
                "int8_p50_ms": round(float(np.median(q_ok)), 4) if q_ok else None,
                "failed_cells": sum(v is None for v in p50[fp] + p50[q]),
                "build_s": round(build_s, 1),
                "load_average_1m": [round(load_before, 2), round(load_after, 2)],
            }), file=out, flush=True)


if __name__ == "__main__":
    main()
