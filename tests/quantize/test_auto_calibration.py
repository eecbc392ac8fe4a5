"""calibration_method="auto": real candidate files scored on their runtime on a held-out split; per-format methods.

Bad inputs tried: calibration too small to split (10 samples), a method a format has no calibrator for
(entropy on OpenVINO/NNCF), an unknown method.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgestill.compress.quantize import QuantOptions, quantize_export
from edgestill.compress.quantize.auto import AUTO_METHODS, candidates, split_calibration
from edgestill.compress.quantize.onnx import mse_range
from edgestill.compress.quantize.options import FORMAT_DEFAULTS
from edgestill.errors import ConfigError, InputError


def test_auto_on_onnx_keeps_the_best_scored_file_and_records_every_candidate(tmp_path, tiny_cnn, example_inputs) -> None:
    from edgestill.export import validate

    calib = np.random.default_rng(20).standard_normal((40, 3, 32, 32)).astype(np.float32)
    art = quantize_export(tiny_cnn, example_inputs, format="onnx", calibration=calib, staging_dir=tmp_path, name="a",
                          options=QuantOptions(calibration_method="auto", equalize=False, bias_correction=False))
    auto = art.quantization["auto"]
    assert auto["split"]["fit"] == 30 and auto["split"]["held_out"] == 10
    rows = auto["candidates"]
    methods = [r["calibration_method"] for r in rows]
    assert methods[0] == FORMAT_DEFAULTS["onnx"]["calibration_method"] and sorted(methods) == sorted(AUTO_METHODS["onnx"])
    assert all(r["equalize"] is False and r["bias_correction"] is False for r in rows)  # fixed by the caller: not varied
    assert all(r["sqnr_db"] > 20 and 0 <= r["top1_agreement"] <= 1 and r["seconds"] > 0 for r in rows)
    best = max(rows, key=lambda r: (r["top1_agreement"], r["sqnr_db"]))
    assert auto["winner"] == best and art.quantization["calibration_method"] == best["calibration_method"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.onnx"]  # the candidates' folders are gone
    assert art.calibration["n"] == 30 and len(art.calibration["held_out_ids"]) == 10  # calibrated on the fit part
    assert not set(art.calibration["sample_ids"]) & set(art.calibration["held_out_ids"])
    (out,) = validate(art, tiny_cnn, calib).outputs
    assert out.sqnr_db > 20


def test_auto_refuses_calibration_too_small_to_split(tmp_path, tiny_cnn, example_inputs) -> None:
    calib = np.random.default_rng(0).standard_normal((10, 3, 32, 32)).astype(np.float32)
    with pytest.raises(InputError, match=r"at least 8 samples in each; 10 samples give 8 and 2\. Pass at least 32"):
        quantize_export(tiny_cnn, example_inputs, format="onnx", calibration=calib, staging_dir=tmp_path, name="a",
                        options=QuantOptions(calibration_method="auto"))
    assert not any(tmp_path.iterdir())
    fit, held = split_calibration(40)
    assert len(fit) == 30 and len(held) == 10 and not set(fit) & set(held)


def test_candidates_vary_only_what_was_left_to_the_format() -> None:
    free = candidates("openvino", QuantOptions(calibration_method="auto"))
    d = FORMAT_DEFAULTS["openvino"]
    assert len(free) == len(AUTO_METHODS["openvino"]) * 4  # every method x equalisation x bias correction
    assert (free[0].calibration_method, free[0].equalize, free[0].bias_correction) == (d["calibration_method"], d["equalize"], d["bias_correction"])
    fixed = candidates("onnx", QuantOptions(calibration_method="auto", equalize=True))
    assert {c.equalize for c in fixed} == {True} and {c.bias_correction for c in fixed} == {False, True}


def test_each_format_refuses_a_method_it_has_no_calibrator_for() -> None:
    with pytest.raises(ConfigError, match="'entropy' has no calibrator for openvino; openvino has minmax, percentile, mse"):
        QuantOptions(calibration_method="entropy").resolved("openvino")
    assert QuantOptions(calibration_method="entropy").resolved("onnx").calibration_method == "entropy"
    assert QuantOptions().resolved("onnx").calibration_method in AUTO_METHODS["onnx"]
    with pytest.raises(ConfigError, match="Did you mean 'mse'"):
        QuantOptions(calibration_method="mses")


def test_mse_range_clips_a_rare_outlier_and_keeps_a_dense_range() -> None:
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.standard_normal(1_000_000), [20.0]])  # one huge value among Gaussian activations
    t = np.abs(values).max()
    hist, edges = np.histogram(values, 2048, range=(-t, t))
    lo, hi = mse_range(hist, edges, values.min(), values.max())
    assert 3 < hi < 10 and lo < -3  # the outlier is clipped; the Gaussian body is kept
    uniform = rng.uniform(0, 6, 100_000)
    hist, edges = np.histogram(uniform, 2048, range=(-6, 6))
    lo, hi = mse_range(hist, edges, 0.0, float(uniform.max()))
    assert lo == 0.0 and hi > 5.8  # nothing to clip on a uniform range
