"""Which int8 settings hold per format: calibration method × cross-layer equalisation × bias correction.

For each zoo CNN trained on built-in data (``perf/quant_real_models.py``: digits upsampled to 3×64×64, cached
under ``perf/.cache/quant_real``; a model missing there is trained briefly with the same recipe and
``--fallback-epochs``, and its line says so) and each format, every setting is quantized by
``quantize_export`` (static int8, all layers) with ``--calibration-samples`` class-stratified training images,
and the file is run on its own runtime (1 thread) on the test images: logits SQNR and top-1 agreement with the
fp32 torch model, int8 accuracy beside fp32's, and the quantization wall time. One JSON line per cell, then one
``summary`` line per format × setting (mean and minimum over the models) that the per-format defaults in
``edgestill.compress.quantize.options.FORMAT_DEFAULTS`` are read from. No latency is measured here.

Settings: ``off`` (no equalisation, no bias correction), ``eq`` (equalisation), ``bc`` (bias correction: in
torch for onnx/tflite, NNCF's fast bias correction for openvino), ``eq+bc``, and ``bc-full`` (openvino only:
NNCF's full BiasCorrection instead of the fast one).

Usage: python perf/quant_methods.py [--models mobilenet_v2,efficientnet_lite0,mobilenet_v3_small]
       [--formats onnx,openvino,tflite] [--methods minmax,mse] [--settings off,eq,bc,eq+bc]
       [--calibration-samples 300] [--eval-samples 597] [--grid full|axes]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

SETTINGS = {"off": (False, False), "eq": (True, False), "bc": (False, True), "eq+bc": (True, True), "bc-full": (False, True)}


def _model(name: str, fallback_epochs: int):
    import quant_real_models as qr

    try:
        model, example, data = qr.load_trained(name)
        info = qr.trained_info(name)
        return model, example, data, {"trained": "perf/quant_real_models.py cache", "fp32_test_accuracy": info.get("fp32_test_accuracy"),
                                      "image_size": info.get("image_size"), "epochs": info.get("epochs")}
    except FileNotFoundError:
        import torch

        data = qr.load_data()
        recipe = qr.RECIPES.get(name, {"lr": 3e-3})
        model = qr.train_one(name, data, epochs=fallback_epochs, lr=float(recipe["lr"]))
        model = model[0] if isinstance(model, tuple) else model
        model.eval()
        return model, torch.from_numpy(data.test_x[:1].copy()), data, {"trained": f"here, {fallback_epochs} epochs (no cached model)"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="mobilenet_v2,efficientnet_lite0,mobilenet_v3_small")
    parser.add_argument("--formats", default="onnx,openvino,tflite")
    parser.add_argument("--methods", default="", help="comma-separated; default: the methods auto tries per format")
    parser.add_argument("--settings", default="off,eq,bc,eq+bc")
    parser.add_argument("--calibration-samples", type=int, default=300)
    parser.add_argument("--eval-samples", type=int, default=597)
    parser.add_argument("--fallback-epochs", type=int, default=3)
    parser.add_argument("--grid", default="full", choices=("full", "axes"),
                        help="full: every method x setting; axes: each method with 'off', then each setting with the first method")
    args = parser.parse_args()

    import numpy as np
    import torch

    from edgestill.compress.quantize import QuantOptions, quantize_export, select_calibration
    from edgestill.compress.quantize import openvino as ov
    from edgestill.compress.quantize.auto import AUTO_METHODS
    from edgestill.errors import EdgestillError
    from edgestill.export.validate import compare_output, run_artifact, torch_reference
    from edgestill.runtimes import RuntimeOptions, load

    torch.set_num_threads(1)
    settings = [s for s in args.settings.split(",") if s]
    rows = []
    for name in [m for m in args.models.split(",") if m]:
        model, example, data, origin = _model(name, args.fallback_epochs)
        idx = select_calibration(len(data.train_x), labels=data.train_y, n=args.calibration_samples, seed=0)
        calib = data.train_x[idx]
        eval_x, eval_y = data.test_x[: args.eval_samples], data.test_y[: args.eval_samples]
        (reference,) = torch_reference(model, eval_x)
        fp32_acc = float((reference.argmax(1) == eval_y).mean())
        for fmt in [f for f in args.formats.split(",") if f]:
            methods = [m for m in args.methods.split(",") if m] or list(AUTO_METHODS[fmt])
            for method in methods:
                for setting in settings:
                    if args.grid == "axes" and setting != "off" and method != methods[0]:
                        continue
                    eq, bc = SETTINGS[setting]
                    if setting == "bc-full" and fmt != "openvino":
                        continue
                    ov.BIAS_CORRECTION = "full" if setting == "bc-full" else "fast"
                    row = {"model": name, "format": fmt, "method": method, "setting": setting, **origin,
                           "calibration_samples": len(calib), "eval_samples": len(eval_x), "fp32_accuracy": round(fp32_acc, 4)}
                    with tempfile.TemporaryDirectory() as tmp:
                        t0 = time.perf_counter()
                        try:
                            art = quantize_export(model, (example,), format=fmt, calibration=calib, staging_dir=Path(tmp), name="m",
                                                  options=QuantOptions(calibration_method=method, equalize=eq, bias_correction=bc))
                        except EdgestillError as exc:
                            row["error"] = str(exc).splitlines()[0][:300]
                            print(json.dumps(row), flush=True)
                            continue
                        row["quantize_s"] = round(time.perf_counter() - t0, 1)
                        art.hash_files()
                        got = run_artifact(load(art, RuntimeOptions(threads=1)), art, [eval_x])[0]
                        out = compare_output("logits", got, reference)
                        eqr = art.quantization.get("equalize", {})
                        row.update(sqnr_db=round(out.sqnr_db, 2), top1_agreement=round(out.top1_agreement, 4),
                                   int8_accuracy=round(float((got.argmax(1) == eval_y).mean()), 4),
                                   equalized_pairs=len(eqr.get("pairs", [])) if eqr.get("applied") else 0,
                                   bias_corrected=bool(art.quantization.get("bias_correction", {}).get("applied")))
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["format"], r["method"], r["setting"]), []).append(r)
    for (fmt, method, setting), rs in sorted(groups.items()):
        print(json.dumps({"summary": True, "format": fmt, "method": method, "setting": setting, "models": len(rs),
                          "mean_sqnr_db": round(float(np.mean([r["sqnr_db"] for r in rs])), 2),
                          "min_sqnr_db": round(float(np.min([r["sqnr_db"] for r in rs])), 2),
                          "mean_top1_agreement": round(float(np.mean([r["top1_agreement"] for r in rs])), 4),
                          "min_top1_agreement": round(float(np.min([r["top1_agreement"] for r in rs])), 4),
                          "mean_accuracy_drop_points": round(100 * float(np.mean([r["fp32_accuracy"] - r["int8_accuracy"] for r in rs])), 2)}),
              flush=True)


if __name__ == "__main__":
    main()
