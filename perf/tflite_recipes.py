"""Which TFLite static int8 recipe holds on trained networks: PT2E (MinMax or histogram "mse" observers) vs
ai-edge-quantizer's static_wi8_ai8, by logits SQNR, top-1 agreement with fp32 and accuracy drop.

Models: the zoo CNNs ``perf/quant_real_models.py`` trained on ``digits`` at 3×64×64 (``load_trained``). For each:
300 class-stratified calibration samples from its train split (``select_calibration``, seed 0), evaluated on its
597 test images on the LiteRT interpreter (1 thread) through ``edgestill.runtimes.load``, against torch fp32.
Prints one JSON line per model × recipe (× calibration method for pt2e). No latency is measured.

Usage: python perf/tflite_recipes.py [--models mobilenet_v2,...] [--variants pt2e:minmax,pt2e:mse,aeq-static:minmax]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _sqnr_db(ref: np.ndarray, got: np.ndarray) -> float:
    noise = float(np.sum((ref.astype(np.float64) - got) ** 2))
    return float("inf") if noise == 0 else 10 * np.log10(float(np.sum(ref.astype(np.float64) ** 2)) / noise)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", default="mobilenet_v2,mobilenet_v3_small,efficientnet_lite0,resnet18,squeezenet1_1")
    parser.add_argument("--variants", default="pt2e:minmax,pt2e:mse,aeq-static:minmax")
    args = parser.parse_args()

    import torch

    from edgestill.compress.quantize import QuantOptions, quantize_export, select_calibration
    from edgestill.runtimes import load
    from quant_real_models import load_trained

    torch.set_num_threads(1)
    for name in args.models.split(","):
        try:
            model, example, data = load_trained(name)
        except FileNotFoundError as exc:
            print(json.dumps({"model": name, "skipped": str(exc)}), flush=True)
            continue
        idx = select_calibration(len(data.train_x), labels=data.train_y, n=300, seed=0)
        with torch.no_grad():
            ref = np.concatenate([model(torch.from_numpy(data.test_x[i : i + 100])).numpy() for i in range(0, len(data.test_x), 100)])
        for variant in args.variants.split(","):
            recipe, method = variant.split(":")
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                art = quantize_export(model, (example,), format="tflite", calibration=data.train_x[idx], staging_dir=Path(tmp),
                                      name="q", options=QuantOptions(tflite_recipe=recipe, calibration_method=method))
                seconds = time.perf_counter() - t0
                session = load(art)
                key_in, key_out = art.inputs[0].name, art.outputs[0].name
                got = np.concatenate([session.run({key_in: data.test_x[i : i + 1]})[key_out] for i in range(len(data.test_x))])
            fp32_acc = float((ref.argmax(1) == data.test_y).mean())
            int8_acc = float((got.argmax(1) == data.test_y).mean())
            print(json.dumps({
                "model": name, "recipe": recipe, "calibration_method": method, "n_eval": int(len(ref)),
                "sqnr_db": round(_sqnr_db(ref, got), 2), "top1_agreement": round(float((ref.argmax(1) == got.argmax(1)).mean()), 4),
                "fp32_accuracy": round(fp32_acc, 4), "int8_accuracy": round(int8_acc, 4),
                "drop_points": round(100 * (fp32_acc - int8_acc), 2), "seconds": round(seconds, 1),
                "io": art.quantization.get("io"), "observer": art.quantization.get("activation_observer"),
                "equalize": (art.quantization.get("equalize") or {}).get("applied"),
                "bias_correction": (art.quantization.get("bias_correction") or {}).get("applied"),
            }), flush=True)


if __name__ == "__main__":
    main()
