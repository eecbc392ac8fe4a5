"""What a model takes: :class:`InputShape` (one input's name, shape, dtype and meaning), :class:`LoadedModel` (a model
ready to export), and random inputs that respect what each input means. Torch is imported inside functions only.

Its own module (below :mod:`edgestill.models.loading` and :mod:`edgestill.models.hf`, which both build these), so the
two loaders need not import each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgestill.artifact import INPUT_KINDS, TensorSpec  # noqa: F401  (INPUT_KINDS: what InputShape.kind may be)
from edgestill.export.base import NAMED_KINDS, kind_of  # noqa: F401  (re-exported: the names that decide a kind)

if TYPE_CHECKING:
    import torch

_RANDOM_BYTES = 8  # seeded samples are drawn as float64, then cast: 8 transient bytes per element on top of the result


def random_input(kind: str | None, shape: tuple[int, ...], dtype: str, rng: np.random.Generator, *,
                 low: int | None = None, high: int | None = None) -> np.ndarray:
    """Seeded random samples of ``shape`` (batch first) that respect what the input means (``kind``):

    ids: uniform in [low or 0, high) (the vocabulary, 100 when unknown); mask: per sample, ones then a zero tail of
    random length along dim 1 (at least one 1, as a tokenizer pads); type_ids: zeros (one segment); int: uniform in
    [low or 0, high or 100); float (and None for floats): standard normal.
    """
    if kind == "mask":
        steps = shape[1] if len(shape) > 1 else 1
        lengths = rng.integers(1, steps + 1, size=shape[0])
        keep = np.arange(steps)[None, :] < lengths[:, None]
        return np.broadcast_to(keep.reshape(shape[:2] + (1,) * (len(shape) - 2)), shape).astype(dtype)
    if kind == "type_ids":
        return np.zeros(shape, dtype=dtype)
    if np.dtype(dtype).kind in "iu" or kind in ("ids", "int"):
        return rng.integers(low or 0, high or 100, size=shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


@dataclass(frozen=True, kw_only=True)
class InputShape:
    """One model input: its name, batch-1 shape, which dims are dynamic, dtype and meaning (``kind``, see INPUT_KINDS).

    ``name`` is the input's name in every exported file (None: the exporter's default, for single-input models);
    ``dynamic_seq`` makes dim 1 (the sequence) symbolic where the format allows (ONNX, OpenVINO); ids are in [low, high).
    """

    dims: tuple[int, ...]
    dynamic_batch: bool = False
    dtype: str = "float32"
    low: int | None = None
    high: int | None = None
    name: str | None = None
    kind: str = "float"
    dynamic_seq: bool = False

    def __str__(self) -> str:
        dims = ["N" if self.dynamic_batch else str(self.dims[0]), *map(str, self.dims[1:])]
        if self.dynamic_seq and len(dims) > 1:
            dims[1] = "S"
        return "x".join(dims)

    def check_samples(self, n: int) -> None:
        """Refuse (InputError) ``n`` random samples of this input that would not fit the machine's memory."""
        from edgestill.limits import check_allocation, element_count

        check_allocation(element_count((n, *self.dims[1:])) * (_RANDOM_BYTES + np.dtype(self.dtype).itemsize),
                         what=f"{n} random samples of input {self} ({self.dtype})",
                         fix="Pass a smaller --samples (64 is the default), a smaller --input-shape, or --data with real samples.")

    def samples(self, n: int, *, seed: int = 0) -> np.ndarray:
        """``n`` seeded random samples, (n, *dims[1:]): standard normal floats, or ids in [low, high).

        Raises:
            InputError: the samples would not fit the machine's memory (checked before anything is allocated).
        """
        self.check_samples(n)
        return random_input(self.kind, (n, *self.dims[1:]), self.dtype, np.random.default_rng(seed),
                            low=self.low, high=self.high)

    def tensor_spec(self, name: str | None = None) -> TensorSpec:
        """This input as the TensorSpec exported files take: its name (``name`` when it has none), symbolic ``batch``
        and ``seq`` dims where dynamic, dtype, kind and (ids) vocabulary size."""
        dims: list[int | str] = ["batch" if self.dynamic_batch else self.dims[0], *self.dims[1:]]
        if self.dynamic_seq and len(dims) > 1:
            dims[1] = "seq"
        return TensorSpec(name=self.name or name or "input", shape=tuple(dims), dtype=self.dtype, kind=self.kind,
                          high=self.high if self.kind == "ids" else None)

    def example(self, *, seed: int = 0) -> torch.Tensor:
        """A seeded example tensor of the exact (batch-1) shape, the tensor exporters trace with."""
        import torch

        return torch.from_numpy(self.samples(self.dims[0], seed=seed))


@dataclass(kw_only=True)
class LoadedModel:
    """A model ready to export: the torch module (None for an ONNX source), its example inputs and provenance."""

    model: Any  # torch.nn.Module | None
    example_inputs: tuple  # tuple[torch.Tensor, ...]; empty for an ONNX source
    input_shapes: list[InputShape]
    source: dict[str, Any] = field(default_factory=dict)
    onnx_path: Path | None = None

    @property
    def kind(self) -> str:
        return self.source.get("kind", "")
