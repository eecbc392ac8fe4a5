"""The accuracy budget needs a float reference above chance: 0% → 0% must not 'meet' it (issue 12, class 4)."""

from __future__ import annotations

import numpy as np
import pytest

from edgestill.compress.quantize.budget import check_reference_accuracy
from edgestill.errors import InputError


class _Fixed:
    """A stand-in classifier over 10 classes that predicts ``pred[i]`` for row ``i`` (x holds the row index)."""

    def __init__(self, pred: np.ndarray):
        self.pred = pred

    def __call__(self, x):
        import torch

        rows = x[:, 0].long().numpy()
        logits = torch.zeros(len(rows), 10)
        logits[torch.arange(len(rows)), torch.from_numpy(self.pred[rows])] = 1.0
        return logits


def _case(n: int, correct: int) -> tuple[_Fixed, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, n)
    pred = (y + 1) % 10
    pred[:correct] = y[:correct]
    return _Fixed(pred), np.arange(n, dtype=np.float32)[:, None], y


@pytest.mark.parametrize(("n", "correct"), [(200, 0), (200, 20), (200, 28), (64, 11), (5, 1)])
def test_chance_level_reference_is_refused(n, correct) -> None:
    """At n=200 over 10 classes guessing reaches 20 ± 4.2: up to 29 correct is not told apart from guessing at 1%;
    5 samples can never show a model beats chance."""
    model, x, y = _case(n, correct)
    with pytest.raises(InputError, match="chance level for 10 classes"):
        check_reference_accuracy(model, x, y)


@pytest.mark.parametrize(("n", "correct"), [(200, 30), (200, 180), (64, 12)])
def test_reference_above_chance_is_accepted(n, correct) -> None:
    model, x, y = _case(n, correct)
    assert check_reference_accuracy(model, x, y) is None


def test_flag_instead_of_refusing() -> None:
    """The library default (QuantizeConfig.chance_level='flag') returns the message for the result's warnings."""
    model, x, y = _case(200, 0)
    assert "chance level for 10 classes" in check_reference_accuracy(model, x, y, refuse=False)


def test_labels_outside_the_model_classes_are_refused() -> None:
    model, x, y = _case(50, 50)
    y[7] = 12
    with pytest.raises(InputError, match=r"outside the model's 10 classes .*y\[7\] = 12"):
        check_reference_accuracy(model, x, y)


def test_library_quantize_flags_a_chance_level_reference(tmp_path, digits) -> None:
    """quantize() with the default chance_level='flag' goes on, but says the budget means nothing, in the result's
    warnings and in the file's manifest (a recipe run records it rather than stopping after training)."""
    import json

    import torch

    from edgestill.compress.quantize import QuantizeConfig, quantize
    from edgestill.export.validate import Tolerances
    from tests.quantize.models import digits_cnn

    torch.manual_seed(0)
    model = digits_cnn().eval()  # untrained: at chance on the digits labels
    loose = Tolerances.parse(["int8.min_sqnr_db=none,int8.min_cosine=none,int8.min_top1_agreement=none"])
    config = QuantizeConfig(formats=("onnx",), name="u", max_accuracy_drop=100.0, max_float_layers=0, bench_latency=False)
    result = quantize(model, (torch.from_numpy(digits.test.x[:1]),), config, tmp_path / "out",
                      calibration=digits.train.x[:64], eval_x=digits.test.x, eval_y=digits.test.y, tolerances=loose)
    assert any("accuracy budget not meaningful" in w and "chance level for 10 classes" in w for w in result.warnings)
    (manifest,) = (tmp_path / "out").glob("u-onnx-int8-static.manifest.json*")
    assert json.loads(manifest.read_text())["quantization"]["reference_at_chance"] is True
    with pytest.raises(InputError, match="chance level"):
        quantize(model, (torch.from_numpy(digits.test.x[:1]),), QuantizeConfig(formats=("onnx",), chance_level="refuse"),
                 tmp_path / "out2", calibration=digits.train.x[:64], eval_x=digits.test.x, eval_y=digits.test.y)
    assert not (tmp_path / "out2").exists()
