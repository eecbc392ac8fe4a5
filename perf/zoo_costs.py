"""Writes ``src/edgestill/devices/zoo_costs.json``: the cost model of every zoo model's exported ONNX graph.

Each zoo model (``edgestill.models.zoo.ZOO``) is built with its builder at its default class count, exported with the
project's ONNX writer (``torch.onnx.export``, dynamo, opset 20, one file) at its standard batch-1 input into a
temporary folder, and read by :func:`edgestill.devices.costmodel.graph_cost`. The stored entry per model is
:func:`~edgestill.devices.costmodel.cost_summary` plus the input's dtype and the MACs the zoo documents
(:mod:`edgestill.models.costs`, counted on the torch module), so a reader sees both counts agree.
``edgestill estimate --model NAME`` reads this file and needs no torch.

Prints ONE JSON line: the models written and the largest MAC difference from the zoo's own count (target < 2%).

Usage: python perf/zoo_costs.py [--models a,b] [--out src/edgestill/devices/zoo_costs.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parents[1] / "src" / "edgestill" / "devices" / "zoo_costs.json"


def zoo_entry(name: str, folder: Path) -> dict[str, Any]:
    """Export zoo model ``name`` into ``folder`` and return its stored entry (deterministic: seed 0)."""
    from edgestill.devices.costmodel import cost_summary, graph_cost
    from edgestill.export.onnx import write_onnx
    from edgestill.models.builtin import create_model
    from edgestill.models.costs import model_costs
    from edgestill.models.zoo import default_num_classes, example_input, standard_input

    model = create_model(name, num_classes=default_num_classes(name), seed=0).eval()
    x = example_input(name)
    path = folder / f"{name}.onnx"
    write_onnx(model, (x,), path)
    entry = cost_summary(graph_cost(path))
    entry["input_dtype"] = standard_input(name).dtype
    entry["torch_macs"] = model_costs(model, x)["macs"]
    return entry


def main(argv: list[str] | None = None) -> int:
    from edgestill.models.zoo import ZOO

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(ZOO))
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    names = [m for m in args.models.split(",") if m]
    stored = json.loads(args.out.read_text()) if args.out.is_file() else {}
    models = dict(stored.get("models", {}))
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            models[name] = zoo_entry(name, Path(tmp))
            print(f"{name}: {models[name]['total_macs'] / 1e6:.1f} M MACs", file=sys.stderr, flush=True)
    doc = {
        "schema": "edgestill-zoo-costs", "schema_version": 1,
        "method": "perf/zoo_costs.py: zoo builder (seed 0, default classes) -> edgestill.export.onnx.write_onnx "
                  "(torch.onnx dynamo, opset 20) at the standard batch-1 input -> edgestill.devices.costmodel.graph_cost",
        "models": {k: models[k] for k in sorted(models)},
    }
    args.out.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    worst = max(abs(m["total_macs"] / m["torch_macs"] - 1) for m in models.values())
    print(json.dumps({"written": str(args.out), "models": sorted(models),
                      "max_mac_difference_percent": round(100 * worst, 3)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
