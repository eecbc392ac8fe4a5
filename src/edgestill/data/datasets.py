"""Built-in datasets: fixed, seeded train/val/test splits as float32 NCHW arrays. Torch-free."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from edgestill.errors import ConfigError
from edgestill.registry import Registry

Size = Literal["default", "quick"]
SIZES: tuple[str, ...] = ("default", "quick")


@dataclass(frozen=True, kw_only=True, eq=False)
class Split:
    """One split: images ``x`` (float32, N×C×H×W), labels ``y`` (int64) and stable sample ``ids`` (int64)."""

    x: np.ndarray
    y: np.ndarray
    ids: np.ndarray

    def __len__(self) -> int:
        return int(self.y.shape[0])


@dataclass(frozen=True, kw_only=True, eq=False)
class DataSplits:
    """A dataset's fixed train/val/test splits plus what a model needs to know about it."""

    name: str
    size: str
    seed: int
    train: Split
    val: Split
    test: Split
    num_classes: int
    input_shape: tuple[int, int, int]
    class_names: tuple[str, ...]
    sha256: str


DatasetFactory = Callable[[int, str], DataSplits]
DATASETS: Registry[DatasetFactory] = Registry("dataset")


def load_dataset(name: str, *, seed: int = 0, size: Size = "default") -> DataSplits:
    """Load a built-in dataset by name; the same (name, seed, size) always gives the same arrays.

    Args:
        name: a registered dataset name (see :func:`dataset_names`).
        seed: seeds generation (synthetic sets) and the split assignment.
        size: ``"default"`` for meaningful numbers, ``"quick"`` for tests and smoke runs.

    Raises:
        UnknownNameError: ``name`` is not registered.
        ConfigError: ``size`` or ``seed`` is not valid.
    """
    factory = DATASETS.get(name)
    if size not in SIZES:
        raise ConfigError(f"dataset size {size!r} is not valid. Valid sizes: {', '.join(SIZES)}. "
                          "Use 'default' for meaningful accuracies or 'quick' for a fast smoke run.")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"dataset seed must be a non-negative integer, got {seed!r}.")
    return factory(seed, size)


def dataset_names() -> list[str]:
    """Names accepted by :func:`load_dataset`."""
    return DATASETS.names()


def _split_indices(n: int, counts: tuple[int, int, int], rng: np.random.Generator) -> list[np.ndarray]:
    order = rng.permutation(n)
    a, b, c = counts
    return [np.sort(order[:a]), np.sort(order[a:a + b]), np.sort(order[a + b:a + b + c])]


def _data_sha256(name: str, size: str, seed: int, splits: list[Split]) -> str:
    h = hashlib.sha256(f"{name}|{size}|{seed}".encode())
    for split in splits:
        for arr in (split.x, split.y, split.ids):
            h.update(str(arr.shape).encode())
            h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def _build(name: str, size: str, seed: int, x: np.ndarray, y: np.ndarray, ids: np.ndarray,
           counts: tuple[int, int, int], rng: np.random.Generator, class_names: tuple[str, ...]) -> DataSplits:
    parts = [Split(x=np.ascontiguousarray(x[i]), y=y[i], ids=ids[i]) for i in _split_indices(len(y), counts, rng)]
    return DataSplits(name=name, size=size, seed=seed, train=parts[0], val=parts[1], test=parts[2],
                      num_classes=len(class_names), input_shape=tuple(int(d) for d in x.shape[1:]),
                      class_names=class_names, sha256=_data_sha256(name, size, seed, parts))


@DATASETS.register("digits")
def _digits(seed: int, size: str) -> DataSplits:
    """scikit-learn's bundled 8×8 handwritten digits (1,797 images, 1 channel), scaled to mean 0, std 1."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.images.astype(np.float32) / 16.0 - 0.3) / 0.4  # pixel values 0..16
    x = x[:, None, :, :]
    y = bunch.target.astype(np.int64)
    ids = np.arange(len(y), dtype=np.int64)
    counts = (1200, 250, 347) if size == "default" else (400, 100, 200)
    rng = np.random.default_rng(seed)
    return _build("digits", size, seed, x, y, ids, counts, rng, tuple(str(d) for d in range(10)))


SHAPES = ("circle", "square", "triangle", "cross", "ring")
TEXTURES = ("stripes", "checks")
SHAPES_CLASSES = tuple(f"{s}-{t}" for s in SHAPES for t in TEXTURES)
_SHAPES_COUNTS = {"default": (4000, 1000, 2000), "quick": (600, 200, 200)}
_SHAPES_MEAN, _SHAPES_STD = 0.5, 0.28


def _shape_masks(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Masks of every shape in unit coordinates (u, v): an array of shape (len(SHAPES), *u.shape)."""
    r = np.sqrt(u * u + v * v)
    return np.stack([
        r <= 1.0,                                                               # circle
        np.maximum(np.abs(u), np.abs(v)) <= 0.8,                                # square
        (v <= 0.75) & (np.abs(u) <= (v + 0.95) * 0.6),                          # triangle
        ((np.abs(u) <= 0.3) & (np.abs(v) <= 0.95)) | ((np.abs(v) <= 0.3) & (np.abs(u) <= 0.95)),  # cross
        (r <= 1.0) & (r >= 0.55),                                               # ring
    ])


def _pick(masks: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Per sample n, masks[index[n], n]."""
    return np.take_along_axis(masks, index[None, :, None, None], axis=0)[0]


def generate_shapes(n: int, seed: int, image_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Generate ``n`` cluttered RGB images of textured shapes; the class is the (shape, texture) pair.

    Each image: a random two-colour gradient background with blotchy low-frequency noise, one smaller solid
    distractor shape, the main shape (random position, scale, rotation) filled with a stripes or checks
    texture of random period, orientation and contrasting colours, sometimes an occluding bar, and pixel noise.

    Returns:
        (x, y): x float32 of shape (n, 3, image_size, image_size) normalised to about mean 0, std 1;
        y int64 labels in ``range(len(SHAPES_CLASSES))``.
    """
    rng = np.random.default_rng(seed)
    s = image_size
    grid = np.arange(s, dtype=np.float32) + 0.5
    gy, gx = np.meshgrid(grid, grid, indexing="ij")
    gx, gy = gx[None], gy[None]  # (1, s, s)

    def col(k: int) -> np.ndarray:
        return rng.uniform(0.0, 1.0, size=(k, 3, 1, 1)).astype(np.float32)

    def unit_coords(cx, cy, radius, theta):
        c, si = np.cos(theta)[:, None, None], np.sin(theta)[:, None, None]
        dx, dy = gx - cx[:, None, None], gy - cy[:, None, None]
        r = radius[:, None, None]
        return (dx * c + dy * si) / r, (-dx * si + dy * c) / r

    # Background: a linear gradient between two colours, plus blotches from upsampled coarse noise.
    a, b = col(n), col(n)
    phi = rng.uniform(0, 2 * np.pi, n)
    t = ((gx * np.cos(phi)[:, None, None] + gy * np.sin(phi)[:, None, None]) / s)[:, None]
    t = (t - t.min(axis=(2, 3), keepdims=True)) / (np.ptp(t, axis=(2, 3), keepdims=True) + 1e-6)
    img = a * (1 - t) + b * t
    coarse = rng.normal(0, 0.06, size=(n, 3, 4, 4)).astype(np.float32)
    img += np.repeat(np.repeat(coarse, s // 4, axis=2), s // 4, axis=3)

    # Distractor: a smaller solid shape of any kind, drawn under the main shape.
    for _ in range(1):
        kind = rng.integers(0, len(SHAPES), n)
        u, v = unit_coords(rng.uniform(3, s - 3, n), rng.uniform(3, s - 3, n), rng.uniform(2.5, 4.5, n),
                           rng.uniform(0, 2 * np.pi, n))
        mask = _pick(_shape_masks(u, v), kind)[:, None]
        img = np.where(mask, col(n), img)

    # Main object: class = shape * len(TEXTURES) + texture.
    y = rng.integers(0, len(SHAPES_CLASSES), n).astype(np.int64)
    shape_idx, texture_idx = y // len(TEXTURES), y % len(TEXTURES)
    radius = rng.uniform(9.0, 13.0, n)
    cx, cy = rng.uniform(radius * 0.8, s - radius * 0.8), rng.uniform(radius * 0.8, s - radius * 0.8)
    u, v = unit_coords(cx, cy, radius, rng.uniform(0, 2 * np.pi, n))
    mask = _pick(_shape_masks(u, v), shape_idx)[:, None]
    period = rng.uniform(4.0, 7.0, n)[:, None, None]
    psi = rng.uniform(0, 2 * np.pi, n)
    c, si = np.cos(psi)[:, None, None], np.sin(psi)[:, None, None]
    pu, pv = (gx * c + gy * si) / period, (-gx * si + gy * c) / period
    off = rng.uniform(0, 1, (2, n, 1, 1))
    stripes = np.sin(2 * np.pi * (pu + off[0])) > 0
    checks = (np.sin(2 * np.pi * (pu + off[0])) * np.sin(2 * np.pi * (pv + off[1]))) > 0
    pattern = np.where((texture_idx == 0)[:, None, None], stripes, checks)[:, None]
    fg1 = col(n)
    delta = rng.uniform(0.4, 0.8, (n, 3, 1, 1)).astype(np.float32)  # second colour: away from the first
    fg2 = np.clip(np.where(fg1 > 0.5, fg1 - delta, fg1 + delta), 0, 1)
    img = np.where(mask, np.where(pattern, fg1, fg2.astype(np.float32)), img)

    # Occluder: a bar of random colour, width and angle crossing somewhere near the object.
    u, v = unit_coords(cx + rng.uniform(-8, 8, n), cy + rng.uniform(-8, 8, n), np.ones(n), rng.uniform(0, np.pi, n))
    bar = (np.abs(u) <= rng.uniform(0.8, 2.0, n)[:, None, None]) & (np.abs(v) <= rng.uniform(4, 12, n)[:, None, None])
    img = np.where(bar[:, None] & (rng.uniform(size=(n, 1, 1, 1)) < 0.3), col(n), img)

    img += rng.normal(0, 0.06, size=img.shape).astype(np.float32)
    img = np.clip(img, 0.0, 1.0)
    return ((img - _SHAPES_MEAN) / _SHAPES_STD).astype(np.float32), y


@DATASETS.register("synthetic-shapes")
def _synthetic_shapes(seed: int, size: str) -> DataSplits:
    """Generated 3×32×32 images of 10 classes (5 shapes × 2 textures) with clutter, occluders and noise."""
    counts = _SHAPES_COUNTS[size]
    total = sum(counts)
    x, y = generate_shapes(total, seed)
    ids = np.arange(total, dtype=np.int64)
    rng = np.random.default_rng([seed, 1])
    return _build("synthetic-shapes", size, seed, x, y, ids, counts, rng, SHAPES_CLASSES)
