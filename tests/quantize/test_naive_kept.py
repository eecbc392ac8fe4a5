"""``quantize`` never loses the naive int8 result: a step after it that raises (the sensitivity pass, the latency
timing) is reported and the naive file is still kept (published within budget, else ``*.rejected``); only the naive
attempt itself failing ends a format, and the other formats go on.

Bad inputs tried: the sensitivity pass raising (as it did with exit 3 on TF-SAME convolutions; that real case runs
end to end in test_sensitivity_modules.py), the latency timing raising, the naive int8 conversion of one format
raising a library failure while another format follows it.
"""

from __future__ import annotations

import pytest

from edgestill.compress.quantize import QuantizeConfig, quantize
from edgestill.errors import RuntimeFailure
from tests.quantize.models import add_outliers, train_digits_cnn


@pytest.fixture(scope="module")
def plain_model(digits):
    import torch

    torch.set_num_threads(1)
    return train_digits_cnn(digits, epochs=3)


@pytest.fixture(scope="module")
def outlier_model(plain_model):
    return add_outliers(plain_model, factor=400.0)  # naive per-tensor int8 misses a 1-point budget (and parity)


def _example(digits):
    import torch

    return (torch.from_numpy(digits.test.x[:1]),)


def _boom(*_a, **_k):
    raise RuntimeError("simulated failure in this step")


@pytest.mark.parametrize("budget", [1.0, 100.0], ids=["over-budget-kept-rejected", "within-budget-published"])
def test_a_failing_sensitivity_pass_and_latency_keep_the_naive_file(tmp_path, digits, outlier_model, plain_model, monkeypatch,
                                                                   budget) -> None:
    from edgestill.compress.quantize import budget as budget_mod
    from edgestill.compress.quantize import sensitivity

    monkeypatch.setattr(sensitivity, "layer_sensitivity", _boom)
    monkeypatch.setattr(budget_mod, "_latency", _boom)
    config = QuantizeConfig(formats=("onnx",), name="n", max_accuracy_drop=budget, report=True, bench_latency=True,
                            calibration_samples=128)
    model = outlier_model if budget == 1.0 else plain_model
    result = quantize(model, _example(digits), config, tmp_path, calibration=digits.train.x[:128],
                      eval_x=digits.test.x, eval_y=digits.test.y)
    (f,) = result.formats
    assert f.naive is not None and f.final is f.naive and f.naive.top1_agreement is not None
    assert f.failures == ["sensitivity failed: simulated failure in this step", "latency timing failed: simulated failure in this step"]
    doc = result.to_dict()["formats"][0]
    assert doc["naive"]["accuracy"] == f.naive.accuracy and doc["failures"] == f.failures
    assert "sensitivity failed" in result.markdown()
    if budget == 1.0:
        assert f.naive.drop_points > budget and f.stopped_by == "sensitivity failed"
        assert "missed the accuracy budget" in f.error and "sensitivity failed" in f.error
        assert (tmp_path / "n-onnx-int8-static.onnx.rejected").is_file()
        assert not (tmp_path / "n-onnx-int8-static.onnx").exists() and result.exit_code == 1
    else:
        assert f.error is None and f.artifact is not None and f.stopped_by == "budget met"
        assert (tmp_path / "n-onnx-int8-static.onnx").is_file() and f.passed and result.exit_code == 0


def test_a_failing_naive_attempt_ends_only_its_format(tmp_path, digits, plain_model, monkeypatch) -> None:
    from edgestill.compress.quantize import api

    real = api.quantize_export

    def fails_for_openvino(*args, format, **kwargs):
        if format == "openvino":
            raise RuntimeFailure("simulated converter crash")
        return real(*args, format=format, **kwargs)

    monkeypatch.setattr(api, "quantize_export", fails_for_openvino)
    config = QuantizeConfig(formats=("openvino", "onnx"), name="m", max_accuracy_drop=100.0, bench_latency=False,
                            max_float_layers=0)
    result = quantize(plain_model, _example(digits), config, tmp_path, calibration=digits.train.x[:128],
                      eval_x=digits.test.x, eval_y=digits.test.y)
    ov, onnx = result.formats
    assert ov.naive is None and ov.stopped_by == "naive int8 failed" and ov.exit_code == 3
    assert ov.error.startswith("naive int8 failed, so openvino has no int8 file: simulated converter crash")
    assert onnx.naive is not None and onnx.passed  # the next format went on
    assert (tmp_path / "m-onnx-int8-static.onnx").is_file() and not list(tmp_path.glob("m-openvino-int8*"))
    assert result.exit_code == 3 and result.to_dict()["formats"][0]["naive"] is None
    assert "NO" in result.markdown()
