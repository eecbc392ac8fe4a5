"""How long TFLite static int8 quantization of a 224×224 network takes here (issue 17: ≤ 60 s with 300 samples).

Times ``quantize_export(..., format="tflite", precision="int8-static")`` of a zoo network (default mobilenet_v2,
3×224×224, 1001 classes, random weights: the time does not depend on them) with 300 calibration samples
from ``edgestill.models.sample_inputs`` (seeded, generated: nothing is downloaded), for each recipe. Prints one
JSON line per recipe: total seconds, and the calibration / conversion seconds the quantizer records (PT2E:
export + prepare + batched calibration + convert_pt2e, then litert-torch conversion; ai-edge-quantizer: its
per-sample calibration on the interpreter, then fp32 conversion + quantization), the observer, the batch, the
torch thread count and the 1-minute load average before and after (the machine is shared: a load above the core
count stretches every figure). ``seconds`` also covers what runs before the quantizer (the format's default
equalisation and bias correction in torch, whether they ran is in the line) and the first import of the libraries.

Usage: python perf/tflite_quant_time.py [--model mobilenet_v2] [--samples 300] [--recipes pt2e,aeq-static]
       [--method minmax] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="mobilenet_v2")
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--recipes", default="pt2e,aeq-static")
    parser.add_argument("--method", default="minmax")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch

    from edgestill.compress.quantize import QuantOptions, quantize_export
    from edgestill.models import create_model, default_num_classes, sample_inputs

    torch.set_num_threads(args.threads)
    model = create_model(args.model, num_classes=default_num_classes(args.model)).eval()
    calibration = sample_inputs(args.model, args.samples, seed=0)
    example = (torch.from_numpy(calibration[:1].copy()),)
    for recipe in args.recipes.split(","):
        load_before = os.getloadavg()[0]
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            art = quantize_export(model, example, format="tflite", precision="int8-static", calibration=calibration,
                                  staging_dir=Path(tmp), name="q",
                                  options=QuantOptions(tflite_recipe=recipe, calibration_method=args.method))
            total = time.perf_counter() - t0
        q = art.quantization
        print(json.dumps({
            "model": args.model, "input_shape": list(calibration.shape[1:]), "samples": args.samples, "recipe": recipe,
            "calibration_method": args.method, "seconds": round(total, 1),
            "calibration_seconds": q.get("calibration_seconds"), "conversion_seconds": q.get("conversion_seconds"),
            "activation_observer": q.get("activation_observer"), "calibration_batch": q.get("calibration_batch"),
            "io": q.get("io"), "equalize": (q.get("equalize") or {}).get("applied"),
            "bias_correction": (q.get("bias_correction") or {}).get("applied"), "target_seconds": 60, "torch_threads": args.threads, "cpu_count": os.cpu_count(),
            "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        }), flush=True)


if __name__ == "__main__":
    main()
