"""The built-in model zoo: standard architectures registered in MODELS, with their standard inputs and published costs.

Importing this module registers the CNNs of :mod:`edgestill.models.zoo_cnn` and the transformers of
:mod:`edgestill.models.zoo_transformer`. Each zoo model is built at its standard shape (224×224 RGB for the
image models, 128 int64 token ids for ``text_transformer``); :func:`standard_input` says which, and
:func:`example_input` / :func:`sample_inputs` make seeded inputs of that shape.

Costs at the standard input with the default class count (counted by :func:`edgestill.models.costs.model_costs`;
reference = ``reference_costs.csv``, all within 5%):

==================  =======  ========  ==========  ==============================================
model               classes  MACs (M)  params (M)  reference MACs / params (M)
==================  =======  ========  ==========  ==============================================
mobilenet_v1        1001     568.7     4.233       569 / 4.24 (TF-slim)
mobilenet_v2        1001     300.8     3.506       300 / 3.47 (TF-slim)
mobilenet_v3_small  1001     56.5      2.544       56 / 2.5 (revised paper; slim README: 66 / 2.9)
mobilenet_v3_large  1001     216.6     5.484       217 / 5.4 (TF-slim)
efficientnet_lite0  1001     385.2     4.653       385 / 4.65 (TF-TPU README: 407 / 4.7)
resnet18            1000     1814.1    11.690      1810 / 11.7 (torchvision)
resnet50            1000     4089.2    25.557      4090 / 25.6 (torchvision)
squeezenet1_1       1000     349.2     1.235       none published here
vit_small           1000     437.3     2.159       none (patch 16, width 192, 4 layers, 3 heads)
text_transformer    2        58.7      1.437       none (vocab 8000, 128 ids, width 128, 2 layers)
==================  =======  ========  ==========  ==============================================
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

import numpy as np

import edgestill.models.zoo_cnn  # noqa: F401  (registers the CNNs)
import edgestill.models.zoo_transformer  # noqa: F401  (registers the transformers)
from edgestill.errors import InputError
from edgestill.models.builtin import MODELS
from edgestill.models.zoo_transformer import TEXT_SEQ_LEN, TEXT_VOCAB

if TYPE_CHECKING:
    import torch

ZOO: tuple[str, ...] = (
    "mobilenet_v1", "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_lite0",
    "resnet18", "resnet50", "squeezenet1_1", "vit_small", "text_transformer",
)


@dataclass(frozen=True, kw_only=True)
class InputSpec:
    """The standard batch-1 input of a model: shape, numpy dtype name, and for integer ids their range [low, high)."""

    shape: tuple[int, ...]
    dtype: str
    low: int | None = None
    high: int | None = None


_IMAGE_224 = InputSpec(shape=(1, 3, 224, 224), dtype="float32")
_IMAGE_32 = InputSpec(shape=(1, 3, 32, 32), dtype="float32")
_STANDARD_INPUTS: dict[str, InputSpec] = {
    **{name: _IMAGE_224 for name in ZOO if name != "text_transformer"},
    "text_transformer": InputSpec(shape=(1, TEXT_SEQ_LEN), dtype="int64", low=0, high=TEXT_VOCAB),
    "resnet-teacher": _IMAGE_32,
    "mobilenetv2-student": _IMAGE_32,
}
# 1001 = background + 1000 ImageNet classes, as in the TF-slim / TF-TPU checkpoints the published figures describe.
_NUM_CLASSES: dict[str, int] = {
    "mobilenet_v1": 1001, "mobilenet_v2": 1001, "mobilenet_v3_small": 1001, "mobilenet_v3_large": 1001,
    "efficientnet_lite0": 1001, "resnet18": 1000, "resnet50": 1000, "squeezenet1_1": 1000, "vit_small": 1000,
    "text_transformer": 2, "resnet-teacher": 10, "mobilenetv2-student": 10,
}


def _known(name: str) -> None:
    MODELS.get(name)  # unknown → UnknownNameError listing the valid names
    if name not in _STANDARD_INPUTS:
        raise InputError(f"model {name!r} has no standard input shape; models with one: "
                         f"{', '.join(sorted(_STANDARD_INPUTS))}. "
                         "Give the input shape explicitly (e.g. --input-shape).")


def standard_input(name: str) -> InputSpec:
    """The batch-1 input a built-in model is exported and measured at (image models assume 3 channels).

    Raises:
        UnknownNameError: ``name`` is not a registered model.
        InputError: the model is registered but has no standard input.
    """
    _known(name)
    return _STANDARD_INPUTS[name]


def default_num_classes(name: str) -> int:
    """The class count at which a built-in model matches its published MAC and parameter figures.

    Raises:
        UnknownNameError: ``name`` is not a registered model.
        InputError: the model is registered but has no default.
    """
    _known(name)
    return _NUM_CLASSES[name]


def sample_inputs(name: str, n: int, *, seed: int = 0, in_channels: int | None = None) -> np.ndarray:
    """``n`` seeded samples of a model's standard input, stacked as one ``(n, ...)`` numpy array.

    Images are standard-normal float32; token ids are uniform int64 in the model's vocabulary.

    Args:
        name: a model with a standard input.
        n: number of samples (>= 1).
        seed: seed of the numpy generator.
        in_channels: replaces the channel count of image inputs (ignored for token ids).

    Raises:
        UnknownNameError, InputError: unknown model, no standard input, or a bad ``n`` / ``in_channels``.
    """
    spec = standard_input(name)
    for key, value in (("n", n), ("in_channels", 1 if in_channels is None else in_channels)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise InputError(f"sample_inputs({name!r}): {key} must be a positive integer, got {value!r}.")
    rng = np.random.default_rng(seed)
    if spec.dtype == "int64":
        return rng.integers(spec.low, spec.high, size=(n, *spec.shape[1:]), dtype=np.int64)
    shape = list(spec.shape[1:])
    if in_channels is not None:
        shape[0] = in_channels
    return rng.standard_normal((n, *shape)).astype(spec.dtype)


def example_input(name: str, *, batch: int = 1, seed: int = 0, in_channels: int | None = None) -> torch.Tensor:
    """A seeded torch tensor of a model's standard input (``batch`` samples): what export() takes as example.

    Raises:
        UnknownNameError, InputError: as :func:`sample_inputs`.
    """
    import torch

    return torch.from_numpy(sample_inputs(name, batch, seed=seed, in_channels=in_channels))


def reference_costs() -> dict[str, dict[str, Any]]:
    """Published MAC and parameter figures per zoo model (``reference_costs.csv`` beside this module).

    Returns:
        ``{model: {"input", "macs", "params", "source", "note"}}`` with ``macs`` and ``params`` as ints.
    """
    text = resources.files("edgestill.models").joinpath("reference_costs.csv").read_text(encoding="utf-8")
    return {
        row["model"]: {
            "input": row["input"],
            "macs": round(float(row["macs_millions"]) * 1e6),
            "params": round(float(row["params_millions"]) * 1e6),
            "source": row["source"],
            "note": row["note"],
        }
        for row in csv.DictReader(text.splitlines())
    }
