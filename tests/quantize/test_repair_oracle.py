"""Label-free KD repair with the fp32 model as the oracle: a small BatchNorm + Hardswish CNN whose crafted outlier
channels break all-int8 PTQ is fine-tuned under fake quantization toward its own float outputs, without labels."""

from __future__ import annotations

import numpy as np
import pytest

from edgestill.errors import ConfigError, InputError


def _bn_hardswish_cnn():
    """conv-BN-Hardswish, conv-BN-ReLU (the outlier layer), conv-BN-Hardswish (its consumer), pool, linear."""
    from torch import nn

    def block(i, o, act):
        return [nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), act()]

    return nn.Sequential(*block(1, 16, nn.Hardswish), *block(16, 32, nn.ReLU), *block(32, 32, nn.Hardswish),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))


OUTLIER_BN, CONSUMER = 4, 6  # indices in the Sequential


FACTOR = 200.0


def trained_cnn(digits):
    """The CNN trained on the digits training split for a few seconds (seeded)."""
    import torch

    from tests.quantize.models import fit_on_digits

    torch.set_num_threads(1)
    torch.manual_seed(0)
    return fit_on_digits(_bn_hardswish_cnn(), digits, epochs=6)


def add_outliers(model, factor: float):
    """Channels 0-1 of the middle BN scaled by ``factor`` and the consumer conv's matching inputs by 1/factor: ReLU
    and zero padding commute with a positive scale, so the float function is unchanged, but those channels now set
    the per-tensor int8 range of the activation between the two convs."""
    import copy

    import torch

    model = copy.deepcopy(model)
    with torch.no_grad():
        for c in (0, 1):
            model[OUTLIER_BN].weight[c] *= factor
            model[OUTLIER_BN].bias[c] *= factor
            model[CONSUMER].weight[:, c] /= factor
    return model.eval()


@pytest.fixture(scope="module")
def outlier_cnn(digits):
    return add_outliers(trained_cnn(digits), FACTOR)


def _onnx_agreement(model, reference, digits, tmp_path, name: str) -> float:
    """Top-1 agreement of ``model``'s int8 ONNX file (onnxruntime) with ``reference`` (torch fp32) on the test split."""
    import torch

    from edgestill.compress.quantize import artifact_accuracy
    from edgestill.compress.quantize.api import quantize_export

    art = quantize_export(model, (torch.from_numpy(digits.test.x[:1]),), format="onnx", calibration=digits.train.x[:256],
                          staging_dir=tmp_path / name, name=name)
    _, out = artifact_accuracy(art, digits.test.x, digits.test.y)
    with torch.no_grad():
        ref = reference(torch.from_numpy(digits.test.x)).argmax(1).numpy()
    return float((out.argmax(1) == ref).mean())


def test_oracle_repair_without_labels_beats_naive_int8_and_says_so(digits, outlier_cnn, tmp_path) -> None:
    import torch

    from edgestill.compress.quantize.repair import oracle_repair_config, repair_with_teacher

    example = (torch.from_numpy(digits.test.x[:1]),)
    config = oracle_repair_config(outlier_cnn, example, train_x=digits.train.x[:640], epochs=3, batch_size=64, lr=1e-3)
    assert config.oracle == "fp32 model" and not config.labelled
    assert config.teacher is not outlier_cnn  # a frozen copy, so training the student cannot move the oracle
    before = {k: v.clone() for k, v in outlier_cnn.state_dict().items()}
    repaired, info = repair_with_teacher(outlier_cnn, example, config, calibration=digits.train.x[:256])
    assert all(torch.equal(before[k], v) for k, v in outlier_cnn.state_dict().items())  # the student is untouched
    assert type(repaired) is type(outlier_cnn) and repaired.state_dict().keys() == outlier_cnn.state_dict().keys()
    assert info["oracle"] == "fp32 model" and info["labels"] == "no"
    assert info["bn"].startswith("folded into 3 convs")  # every conv-BN pair folded, so the simulation matches the file
    assert len(info["fake_quant_sqnr_db_per_epoch"]) == 4 and not np.isnan(info["final_loss"])
    naive = _onnx_agreement(outlier_cnn, outlier_cnn, digits, tmp_path, "naive")
    fixed = _onnx_agreement(repaired, outlier_cnn, digits, tmp_path, "repaired")
    assert naive < 0.9  # the crafted outliers really break all-int8 PTQ...
    assert fixed >= naive + 0.2, (naive, fixed, info)  # ...and label-free repair recovers agreement with fp32


def test_bad_repair_inputs_are_input_errors_that_say_what_to_do(digits, outlier_cnn) -> None:
    """Tried: fewer samples than one batch, labels of the wrong length, float labels, samples shaped unlike the
    model input, a teacher with a different class count, an unknown schedule option, a negative freeze epoch."""
    import torch

    from edgestill.compress.quantize.repair import RepairConfig, oracle_repair_config

    example = (torch.from_numpy(digits.test.x[:1]),)
    x = digits.train.x
    with pytest.raises(InputError, match=r"at least one batch \(64\).*got 10.*smaller batch size"):
        oracle_repair_config(outlier_cnn, example, train_x=x[:10])
    with pytest.raises(InputError, match=r"one integer per training sample: 1200 samples.*\(5,\).*train_y=None"):
        oracle_repair_config(outlier_cnn, example, train_x=x, train_y=digits.train.y[:5])
    with pytest.raises(InputError, match="integer class ids"):
        RepairConfig(teacher=outlier_cnn, train_x=x, train_y=digits.train.y.astype(np.float32))
    with pytest.raises(InputError, match=r"shaped like the model input \[1, 8, 8\].*\[1200, 64\]"):
        oracle_repair_config(outlier_cnn, example, train_x=x.reshape(len(x), -1))
    with pytest.raises(InputError, match="teacher gives 5 outputs and the student 10"):
        oracle_repair_config(outlier_cnn, example, train_x=x, teacher=torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 5)))
    with pytest.raises(ConfigError, match="unknown repair option.*epoch_count"):
        oracle_repair_config(outlier_cnn, example, train_x=x, epoch_count=2)
    with pytest.raises(ConfigError, match="freeze_bn_epochs"):
        oracle_repair_config(outlier_cnn, example, train_x=x, freeze_bn_epochs=-1)
