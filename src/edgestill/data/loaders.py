"""User data: image folders (a class per sub-folder), NPZ arrays and CSV tables, as the built-in DataSplits.

Torch-free. Every loader returns :class:`~edgestill.data.datasets.DataSplits` with stable sample ids:

- image folders: the path relative to the folder (``"cat/001.png"``; ``"train/cat/001.png"`` with split folders);
- NPZ: the ``ids`` array when given (integers or strings), else the row number;
- CSV: the ``id`` column when present (or ``id_column``), else the row number (0-based, header excluded).

Splits: a source with explicit splits (``train/ val/ test/`` sub-folders, ``train_x``/``val_x``/``test_x`` arrays, a
CSV ``split`` column) is used as given; a missing ``val`` or ``test`` part is carved from ``train``, stratified by
class, seeded by ``seed``. A source without splits is divided the same way by ``val_fraction`` and
``test_fraction``. Bad input raises :class:`~edgestill.errors.InputError` (exit 2) naming the file and the problem.
"""

from __future__ import annotations

import csv
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgestill.data.datasets import SIZES, DataSplits, Split, _data_sha256, load_dataset
from edgestill.errors import ConfigError, InputError, did_you_mean
from edgestill.limits import check_allocation, format_bytes
from edgestill.runtimes.base import npz_headers, read_npz

IMAGE_SUFFIXES = (".bmp", ".gif", ".jpeg", ".jpg", ".pgm", ".png", ".ppm", ".tif", ".tiff", ".webp")
SPLIT_FOLDERS = {"train": ("train",), "val": ("val", "valid", "validation"), "test": ("test",)}
SOURCES = ("builtin", "folder", "npz", "csv")
_SHOW = 5  # how many offending items a message lists
CSV_BYTES_FACTOR = 10  # memory a CSV takes as rows of Python strings, per byte of the file (see load_csv)


def _examples(items: list[Any]) -> str:
    shown = ", ".join(str(i) for i in items[:_SHOW])
    return shown + (f", ... ({len(items) - _SHOW} more)" if len(items) > _SHOW else "")


# --- augmentation -------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Augment:
    """Light augmentation of training batches: random horizontal flip and random crop after reflect padding.

    ``name`` is stable ("none", "flip", "crop4", "flip+crop4") so a cache of teacher outputs can key on it.
    """

    flip: bool = False
    crop_padding: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.flip, bool):
            raise ConfigError(f"data.augment.flip must be true or false, got {self.flip!r}.")
        if not isinstance(self.crop_padding, int) or isinstance(self.crop_padding, bool) or not 0 <= self.crop_padding <= 64:
            raise ConfigError(f"data.augment.crop_padding must be a whole number of pixels in [0, 64] (0 = no crop), "
                              f"got {self.crop_padding!r}. Typical: 4 for 32×32 images.")

    @property
    def active(self) -> bool:
        return self.flip or self.crop_padding > 0

    @property
    def name(self) -> str:
        parts = (["flip"] if self.flip else []) + ([f"crop{self.crop_padding}"] if self.crop_padding else [])
        return "+".join(parts) or "none"

    @property
    def policy(self) -> str:
        """The trainer's name for it (same as ``name``)."""
        return self.name

    @property
    def random(self) -> bool:
        """True when batches change from epoch to epoch (teacher outputs cannot be cached)."""
        return self.active

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def apply(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Return an augmented copy of a float (B, C, H, W) batch; the same ``rng`` state gives the same result."""
        out = np.array(x, dtype=np.float32, copy=True)
        if not self.active:
            return out
        if out.ndim != 4:
            raise InputError(f"augmentation {self.name!r} takes image batches (B, C, H, W); got shape {list(out.shape)}.")
        b, _, h, w = out.shape
        if self.flip:
            flipped = rng.random(b) < 0.5
            out[flipped] = out[flipped][..., ::-1]
        p = self.crop_padding
        if p:
            padded = np.pad(out, ((0, 0), (0, 0), (p, p), (p, p)), mode="reflect" if p < min(h, w) else "edge")
            dy, dx = rng.integers(0, 2 * p + 1, b), rng.integers(0, 2 * p + 1, b)
            for i in range(b):
                out[i] = padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w]
        return out


# --- the data section of a recipe -----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class DataConfig:
    """Where the data comes from and how to turn it into splits. Exactly one of builtin/folder/npz/csv."""

    builtin: str | None = None
    folder: Path | None = None
    npz: Path | None = None
    csv: Path | None = None
    size: str = "default"
    seed: int = 0
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    image_size: tuple[int, int] | None = None
    channels: int = 3
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.25,)
    label_column: str = "label"
    id_column: str | None = None
    split_column: str | None = None
    image_column: str | None = None
    num_classes: int | None = None
    augment: Augment = field(default_factory=Augment)

    def __post_init__(self) -> None:
        given = [k for k in SOURCES if getattr(self, k) is not None]
        if len(given) != 1:
            raise ConfigError(f"data: give exactly one source of {', '.join(SOURCES)}; got "
                              f"{', '.join(given) if given else 'none'}. E.g. 'folder: images/' or 'builtin: synthetic-shapes'.")
        for key in ("folder", "npz", "csv"):
            value = getattr(self, key)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, key, Path(value))
        if self.builtin is not None and not isinstance(self.builtin, str):
            raise ConfigError(f"data.builtin must be a dataset name, got {self.builtin!r}.")
        if self.size not in SIZES:
            raise ConfigError(f"data.size {self.size!r} is not valid.{did_you_mean(str(self.size), SIZES)} Valid: {', '.join(SIZES)}.")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ConfigError(f"data.seed must be a non-negative integer, got {self.seed!r}.")
        for key in ("val_fraction", "test_fraction"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 0.5:
                raise ConfigError(f"data.{key} must be a number in (0, 0.5], got {v!r}.")
        if self.image_size is not None:
            size = self.image_size
            if isinstance(size, int) and not isinstance(size, bool):
                size = (size, size)
            if (not isinstance(size, (list, tuple)) or len(size) != 2
                    or not all(isinstance(s, int) and not isinstance(s, bool) and 1 <= s <= 4096 for s in size)):
                raise ConfigError(f"data.image_size must be [height, width] (or one number) in pixels, got {self.image_size!r}.")
            object.__setattr__(self, "image_size", (int(size[0]), int(size[1])))
        if self.channels not in (1, 3) or isinstance(self.channels, bool):
            raise ConfigError(f"data.channels must be 1 (grey) or 3 (RGB), got {self.channels!r}.")
        for key in ("mean", "std"):
            value = getattr(self, key)
            value = (value,) if isinstance(value, (int, float)) and not isinstance(value, bool) else value
            if (not isinstance(value, (list, tuple)) or len(value) not in (1, self.channels)
                    or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)):
                raise ConfigError(f"data.{key} must be one number or {self.channels} numbers (one per channel), got {value!r}.")
            object.__setattr__(self, key, tuple(float(v) for v in value))
        if any(s <= 0 for s in self.std):
            raise ConfigError(f"data.std must be positive, got {list(self.std)}.")
        if self.num_classes is not None and (not isinstance(self.num_classes, int) or isinstance(self.num_classes, bool)
                                             or self.num_classes < 2):
            raise ConfigError(f"data.num_classes must be an integer >= 2, got {self.num_classes!r}.")
        if isinstance(self.augment, dict):
            object.__setattr__(self, "augment", Augment(**self.augment))
        if not isinstance(self.augment, Augment):
            raise ConfigError(f"data.augment must be a mapping with flip and crop_padding, got {self.augment!r}.")

    @property
    def source(self) -> str:
        """Which source is set: builtin, folder, npz or csv."""
        return next(k for k in SOURCES if getattr(self, k) is not None)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["augment"] = self.augment.to_dict()
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in d.items()}


def load_data(config: DataConfig) -> DataSplits:
    """Load the data a recipe names.

    Raises:
        InputError: the source is missing, empty, or malformed (the message names the file and the problem).
        ConfigError: augmentation asked for data that is not images.
    """
    if config.builtin is not None:
        data = load_dataset(config.builtin, seed=config.seed, size=config.size)  # type: ignore[arg-type]
    elif config.folder is not None:
        data = load_image_folder(config.folder, config=config)
    elif config.npz is not None:
        data = load_npz(config.npz, config=config)
    else:
        data = load_csv(config.csv, config=config)  # type: ignore[arg-type]
    if config.augment.active and len(data.input_shape) != 3:
        raise ConfigError(f"data.augment {config.augment.name!r} flips and crops images, but {data.name!r} holds "
                          f"samples of shape {list(data.input_shape)}. Remove data.augment for non-image data.")
    return data


# --- splitting -------------------------------------------------------------------------------------------------


def _carve(y: np.ndarray, fractions: tuple[float, ...], rng: np.random.Generator) -> list[np.ndarray]:
    """Stratified carve of ``len(fractions)`` parts from the index set ``range(len(y))``; the rest comes last.

    Each part gets ``round(n_class * fraction)`` samples of each class, and at least one sample overall; every
    class keeps at least one sample in the remainder.
    """
    parts: list[list[int]] = [[] for _ in fractions]
    rest: list[int] = []
    for k in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == k)).tolist()
        for j, f in enumerate(fractions):
            take = min(int(round(len(idx) * f)), max(0, len(idx) - 1))
            parts[j] += idx[:take]
            idx = idx[take:]
        rest += idx
    for j, part in enumerate(parts):
        if not part:
            counts = np.bincount(y[rest]) if rest else np.zeros(1)
            k = int(np.argmax(counts))
            donors = [i for i in rest if y[i] == k]
            if len(donors) < 2:
                raise InputError(f"too few samples ({len(y)}) to carve a validation and a test split; give at least "
                                 "3 samples of some class, or give explicit val/test splits.")
            part.append(donors[0])
            rest.remove(donors[0])
    return [np.sort(np.asarray(p, dtype=np.int64)) for p in (*parts, rest)]


def _assemble(name: str, size: str, seed: int, parts: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
              class_names: tuple[str, ...], val_fraction: float, test_fraction: float) -> DataSplits:
    """Build DataSplits from explicit parts; a missing val/test part is carved from train (stratified)."""
    x, y, ids = parts["train"]
    missing = [s for s in ("val", "test") if s not in parts]
    if missing:
        rng = np.random.default_rng([seed, 7])
        fractions = tuple(val_fraction if s == "val" else test_fraction for s in missing)
        *carved, rest = _carve(y, fractions, rng)
        for s, idx in zip(missing, carved):
            parts[s] = (x[idx], y[idx], ids[idx])
        parts["train"] = (x[rest], y[rest], ids[rest])
    all_ids = np.concatenate([parts[s][2] for s in ("train", "val", "test")])
    uniq, counts = np.unique(all_ids.astype(str), return_counts=True)
    if (counts > 1).any():
        dup = uniq[counts > 1].tolist()
        raise InputError(f"{name}: {len(dup)} sample id(s) occur more than once: {_examples(dup)}. Sample ids must "
                         "be unique across train, val and test (they key teacher predictions and calibration records).")
    splits = {s: Split(x=np.ascontiguousarray(parts[s][0], dtype=np.float32), y=parts[s][1].astype(np.int64),
                       ids=parts[s][2]) for s in ("train", "val", "test")}
    ordered = [splits["train"], splits["val"], splits["test"]]
    return DataSplits(name=name, size=size, seed=seed, train=ordered[0], val=ordered[1], test=ordered[2],
                      num_classes=len(class_names), input_shape=tuple(int(d) for d in ordered[0].x.shape[1:]),
                      class_names=class_names, sha256=_data_sha256(name, size, seed, ordered))


# --- image folders ---------------------------------------------------------------------------------------------


def _pil():
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - PIL is a dependency of the image loaders only
        raise InputError("reading image folders needs Pillow, which is not installed. Install it with "
                         "'pip install pillow', or give the data as an NPZ file (x, y).") from None
    return Image


def _class_files(folder: Path, root: Path) -> dict[str, list[Path]]:
    """Class name → image files of a folder of class sub-folders; non-images and stray items are errors."""
    if not folder.is_dir():
        raise InputError(f"data folder {folder} does not exist or is not a folder. Pass a folder holding one "
                         "sub-folder of images per class (e.g. images/cat/*.png, images/dog/*.png).")
    entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    strays = [p for p in entries if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    if strays:
        raise InputError(f"data folder {folder} holds {len(strays)} image(s) outside any class sub-folder "
                         f"({_examples([p.relative_to(root).as_posix() for p in strays])}), so their class is unknown. "
                         "Move each image into the sub-folder named after its class.")
    classes: dict[str, list[Path]] = {}
    for d in (p for p in entries if p.is_dir()):
        files = sorted(p for p in d.iterdir() if not p.name.startswith("."))
        bad = [p for p in files if p.is_dir() or p.suffix.lower() not in IMAGE_SUFFIXES]
        if bad:
            raise InputError(
                f"class folder {d.relative_to(root).as_posix() or '.'} holds {len(bad)} item(s) that are not images: "
                f"{_examples([p.relative_to(root).as_posix() + ('/' if p.is_dir() else '') for p in bad])}. A class "
                f"folder may hold only image files ({', '.join(IMAGE_SUFFIXES)}); move the others out "
                "(nested folders are not classes).")
        if not files:
            raise InputError(f"class folder {d.relative_to(root).as_posix()} is empty. Every class needs at least one "
                             "image; remove the folder or add its images.")
        classes[d.name] = files
    if not classes:
        raise InputError(f"data folder {folder} has no class sub-folders, so there is nothing to load. Put the "
                         "images of each class in a sub-folder named after the class (e.g. cat/, dog/).")
    return classes


def _rel(p: Path, root: Path) -> str:
    try:
        return p.relative_to(root).as_posix()
    except ValueError:
        return str(p)


def _read_images(files: list[Path], root: Path, config: DataConfig) -> np.ndarray:
    Image = _pil()
    mode = "RGB" if config.channels == 3 else "L"
    arrays, first_size = [], None
    for p in files:
        try:
            with Image.open(p) as im:  # reads the header only: the size is known before any pixel is decoded
                if first_size is None:
                    h, w = config.image_size or (im.size[1], im.size[0])
                    # float32 N×C×H×W, held twice while it is normalised
                    check_allocation(2 * len(files) * config.channels * h * w * 4,
                                     what=f"{len(files)} images of {h}×{w} pixels in {root} (as float32)",
                                     fix="Set data.image_size: [H, W] to a smaller size, or use fewer images.")
                im = im.convert(mode)
                if config.image_size is not None:
                    h, w = config.image_size
                    if im.size != (w, h):
                        im = im.resize((w, h), Image.Resampling.BILINEAR)
                arr = np.asarray(im, dtype=np.uint8)
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            raise InputError(f"{_rel(p, root)} in {root} is not a readable image ({exc}). Remove or "
                             "replace the file.") from None
        if first_size is None:
            first_size = (arr.shape[:2], p)
        elif arr.shape[:2] != first_size[0]:
            raise InputError(
                f"images differ in size: {_rel(first_size[1], root)} is {first_size[0][0]}×"
                f"{first_size[0][1]} but {_rel(p, root)} is {arr.shape[0]}×{arr.shape[1]} (H×W). "
                "Set data.image_size: [H, W] to resize every image.")
        arrays.append(arr)
    x = np.stack(arrays).astype(np.float32) / 255.0
    x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)
    mean = np.asarray(config.mean, dtype=np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(config.std, dtype=np.float32).reshape(1, -1, 1, 1)
    return ((x - mean) / std).astype(np.float32)


def load_image_folder(path: str | Path, *, config: DataConfig | None = None) -> DataSplits:
    """Load a folder of class sub-folders (``cat/*.png``), or of ``train/``, ``val/``, ``test/`` folders of those.

    Pixels become float32 N×C×H×W as ``(value / 255 - mean) / std``. Class names are the sub-folder names of
    ``train`` (sorted); a val/test class that train lacks is an error.

    Raises:
        InputError: the folder is missing or empty, a class folder is empty or holds a non-image, an image cannot
            be decoded, images differ in size without ``image_size``, or fewer than two classes.
    """
    root = Path(path)
    config = config or DataConfig(folder=root)
    if not root.is_dir():
        raise InputError(f"data folder {root} does not exist or is not a folder. Pass a folder holding one "
                         "sub-folder of images per class (e.g. images/cat/*.png, images/dog/*.png).")
    sub = {p.name.lower(): p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")}
    split_dirs = {s: next((sub[n] for n in names if n in sub), None) for s, names in SPLIT_FOLDERS.items()}
    if split_dirs["train"] is None and (split_dirs["val"] or split_dirs["test"]):
        raise InputError(f"data folder {root} has {'val' if split_dirs['val'] else 'test'}/ but no train/ folder. "
                         "Give train/ (and optionally val/ and test/), each holding one sub-folder per class.")
    if split_dirs["train"] is not None:
        known = {n for names in SPLIT_FOLDERS.values() for n in names}
        others = sorted(n for n in sub if n not in known)
        if others:
            raise InputError(f"data folder {root} mixes split folders (train/ ...) with other folders ({', '.join(others)}). "
                             "Either use train/ val/ test/ only, or put the class folders directly in the folder.")
        per_split = {s: _class_files(d, root) for s, d in split_dirs.items() if d is not None}
    else:
        per_split = {"train": _class_files(root, root)}
    class_names = tuple(sorted(per_split["train"]))
    if len(class_names) < 2:
        raise InputError(f"data folder {root} has only one class ({class_names[0]}); a classifier needs at least two "
                         "class sub-folders.")
    index = {c: i for i, c in enumerate(class_names)}
    parts = {}
    for s, classes in per_split.items():
        unknown = sorted(set(classes) - set(class_names))
        if unknown:
            raise InputError(f"{s}/ in {root} has class folder(s) {', '.join(unknown)} that train/ does not have. "
                             f"Train classes: {', '.join(class_names)}. Rename or remove the extra folder(s).")
        files = [f for c in sorted(classes) for f in classes[c]]
        y = np.asarray([index[c] for c in sorted(classes) for _ in classes[c]], dtype=np.int64)
        ids = np.asarray([f.relative_to(root).as_posix() for f in files])
        parts[s] = (_read_images(files, root, config), y, ids)
    return _assemble(root.name or "images", "user", config.seed, parts, class_names, config.val_fraction,
                     config.test_fraction)


# --- NPZ arrays ------------------------------------------------------------------------------------------------


def _check_labels(where: str, y: np.ndarray, ids: np.ndarray, num_classes: int | None) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise InputError(f"{where}: labels must be one integer per sample (shape (N,)), got shape {list(y.shape)}.")
    if y.dtype.kind == "f" and np.isfinite(y).all() and (y == np.round(y)).all():
        y = y.astype(np.int64)
    if y.dtype.kind not in "iu":
        raise InputError(f"{where}: labels must be integers (class indices), got dtype {y.dtype}. Map class names "
                         "to 0..K-1 first.")
    y = y.astype(np.int64)
    upper = num_classes if num_classes is not None else None
    bad = np.flatnonzero((y < 0) | (y >= upper if upper is not None else False))
    if bad.size:
        pairs = [f"{ids[i]}→{y[i]}" for i in bad]
        valid = f"[0, {upper})" if upper is not None else "non-negative"
        raise InputError(f"{where}: {bad.size} label(s) outside the class range {valid} (sample id→label: "
                         f"{_examples(pairs)}). Fix the labels, or set data.num_classes to the true number of classes.")
    return y


def check_class_count(where: str, num_classes: int, n_samples: int) -> None:
    """Refuse a class count whose per-sample outputs could not be held: the chain keeps the teacher's logits for every
    sample (n × C float32), so that is checked against memory before a class name or a model head is made."""
    from edgestill.limits import check_allocation

    check_allocation(n_samples * num_classes * 4 + num_classes * 64,
                     what=f"{where}: {num_classes} classes for {n_samples} samples (the teacher's logits for every sample)",
                     fix="Set data.num_classes to the true number of classes.")


def _check_inferred_classes(where: str, y: np.ndarray, num_classes: int) -> None:
    """Labels without data.num_classes or class names give ``max + 1`` classes; refuse that count when some class in
    it has no sample at all (labels 0, 1, 57 are not 58 classes but labels that are not class indices)."""
    missing = np.setdiff1d(np.arange(num_classes), y).tolist()
    if missing:
        raise InputError(f"{where}: the labels run up to {num_classes - 1}, so there would be {num_classes} classes, but "
                         f"{len(missing)} of them have no sample at all (class(es) {_examples(missing)}). Labels must be "
                         f"class indices 0..K-1: remap them, or set data.num_classes: {num_classes} if those classes are "
                         "real and only absent from this data.")


def _check_x(where: str, x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim < 2 or x.dtype.kind not in "fiu":
        raise InputError(f"{where}: x must be a numeric array (N, ...) with one row per sample, got dtype {x.dtype} "
                         f"and shape {list(x.shape)}.")
    x = x.astype(np.float32)
    finite = np.isfinite(x)
    if not finite.all():
        rows = int((~finite.reshape(len(x), -1)).any(axis=1).sum())
        raise InputError(f"{where}: x holds {int(x.size - np.count_nonzero(finite))} NaN or infinite value(s) in {rows} "
                         f"of its {len(x)} samples (a value too large for float32 becomes infinite); training and "
                         "accuracies on them would be meaningless. Remove or fix those samples.")
    return x


def load_npz(path: str | Path, *, config: DataConfig | None = None) -> DataSplits:
    """Load arrays ``x`` (N, ...), ``y`` (N,) integer labels and optional ``ids`` (N,) and ``class_names``; or per-split
    ``train_x``, ``train_y``, ``train_ids``, ``val_x`` ... (``val_*``/``test_*`` optional, else carved from train).

    ``x`` is used as given (already normalised), as float32.

    Raises:
        InputError: a missing, empty or non-zip file; pickled (object) arrays; a declared array size over the machine's
            memory or over the bytes the file holds (checked from the headers, before anything is allocated); missing
            keys, mismatched lengths, NaN/Inf, labels that are not whole numbers, outside the class range or skipping
            classes; duplicate ids.
    """
    path = Path(path)
    config = config or DataConfig(npz=path)
    if not path.is_file():
        raise InputError(f"data file {path} does not exist. Pass an .npz holding x and y (and optionally ids).")
    # every array's declared size is checked before it is allocated; pickled (object) arrays are refused
    arrays = read_npz(path, what=f"data file {path}")
    prefixed = "train_x" in arrays
    if not prefixed and not {"x", "y"} <= set(arrays):
        raise InputError(f"{path} holds arrays {sorted(arrays) or 'none'}; expected x and y (and optionally ids, "
                         "class_names), or train_x/train_y (and val_*, test_*).")
    splits = [s for s in ("train", "val", "test") if f"{s}_x" in arrays] if prefixed else ["train"]
    raw = {}
    offset = 0
    for s in splits:
        key = (lambda k: f"{s}_{k}") if prefixed else (lambda k: k)
        if key("y") not in arrays:
            raise InputError(f"{path} has {key('x')} but no {key('y')}; every x array needs its labels.")
        where = f"{path}[{key('x')}]"
        x, y = _check_x(where, arrays[key("x")]), np.asarray(arrays[key("y")])
        ids = arrays.get(key("ids"))
        ids = np.arange(offset, offset + len(x), dtype=np.int64) if ids is None else np.asarray(ids)
        offset += len(x)
        if not (len(x) == len(y) == len(ids)):
            raise InputError(f"{path}: {key('x')} has {len(x)} rows, {key('y')} {len(y)}, {key('ids')} {len(ids)}; "
                             "they must have one entry per sample.")
        if len(x) == 0:
            raise InputError(f"{path}: {key('x')} is empty. Give at least one sample per split.")
        raw[s] = (x, y, ids)
    names = arrays.get("class_names")
    num_classes = config.num_classes
    if names is not None:
        names = tuple(str(n) for n in np.asarray(names).reshape(-1))
        if num_classes is not None and num_classes != len(names):
            raise InputError(f"{path}: class_names lists {len(names)} classes but data.num_classes is {num_classes}.")
        num_classes = len(names)
    parts = {s: (x, _check_labels(f"{path} ({s})", y, ids, num_classes), ids) for s, (x, y, ids) in raw.items()}
    if num_classes is None:
        num_classes = int(max(p[1].max() for p in parts.values())) + 1
        _check_inferred_classes(str(path), np.concatenate([p[1] for p in parts.values()]), num_classes)
    check_class_count(str(path), num_classes, sum(len(p[0]) for p in parts.values()))
    if names is None:
        names = tuple(str(i) for i in range(num_classes))
    if num_classes < 2:
        raise InputError(f"{path}: every label is 0, so there is one class; a classifier needs at least two.")
    shapes = {s: list(p[0].shape[1:]) for s, p in parts.items()}
    if len({str(v) for v in shapes.values()}) > 1:
        raise InputError(f"{path}: the splits' samples differ in shape ({shapes}); they must match.")
    return _assemble(path.stem, "user", config.seed, parts, names, config.val_fraction, config.test_fraction)


# --- CSV tables ------------------------------------------------------------------------------------------------


def load_csv(path: str | Path, *, config: DataConfig | None = None) -> DataSplits:
    """Load a CSV table with a header row: a label column, an optional id column and optional split column, and
    either numeric feature columns (every other column; x is (N, F)) or, with ``image_column``, a column of image
    paths relative to the CSV's folder (read like an image folder).

    Labels may be integers (class indices) or class names (sorted to indices). The id column defaults to ``id``
    when the header has one; the split column (``split_column``) holds train/val/test.

    Raises:
        InputError: missing file or column, an empty table, a non-numeric feature cell (row and column named),
            labels outside the class range, an unreadable image.
    """
    path = Path(path)
    config = config or DataConfig(csv=path)
    if not path.is_file():
        raise InputError(f"data file {path} does not exist. Pass a CSV table with a header row.")
    # every cell becomes a Python string in a list of rows first: about 10× the file's bytes (a 6-byte cell "0.125,"
    # is a ~55-byte str plus an 8-byte list slot)
    size = path.stat().st_size
    check_allocation(CSV_BYTES_FACTOR * size, what=f"the CSV table {path} ({format_bytes(size)}, read as text rows)",
                     fix="Convert it to an .npz (numpy.savez(path, x=..., y=...)), which is read without the text overhead.")
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path} is not a readable UTF-8 CSV file ({exc}).") from None
    rows = [r for r in rows if any(c.strip() for c in r)]
    if len(rows) < 2:
        raise InputError(f"{path} has no data rows (it needs a header row and one row per sample).")
    header, body = [h.strip() for h in rows[0]], rows[1:]

    def column(name: str | None, option: str, required: bool) -> int | None:
        if name is None:
            return None
        if name in header:
            return header.index(name)
        if not required:
            return None
        raise InputError(f"{path} has no column {name!r} (data.{option}).{did_you_mean(name, header)} "
                         f"Columns: {', '.join(header)}.")

    label_i = column(config.label_column, "label_column", True)
    id_i = column(config.id_column or "id", "id_column", config.id_column is not None)
    split_i = column(config.split_column, "split_column", True)
    image_i = column(config.image_column, "image_column", True)
    bad_width = [i + 2 for i, r in enumerate(body) if len(r) != len(header)]
    if bad_width:
        raise InputError(f"{path}: {len(bad_width)} row(s) do not have {len(header)} cells like the header "
                         f"(line(s) {_examples(bad_width)}).")
    ids = np.asarray([r[id_i].strip() for r in body]) if id_i is not None else np.arange(len(body), dtype=np.int64)
    if id_i is not None and all(s.lstrip("-").isdigit() for s in ids.tolist()):
        ids = ids.astype(np.int64)
    labels = [r[label_i].strip() for r in body]
    if all(s.lstrip("-").isdigit() for s in labels):
        y = np.asarray([int(s) for s in labels], dtype=np.int64)
        names = None
    else:
        names = tuple(sorted(set(labels)))
        if config.num_classes is not None and config.num_classes != len(names):
            raise InputError(f"{path}: column {config.label_column!r} names {len(names)} classes ({_examples(list(names))}) "
                             f"but data.num_classes is {config.num_classes}.")
        y = np.asarray([names.index(s) for s in labels], dtype=np.int64)
    y = _check_labels(f"{path} column {config.label_column!r}", y, ids, config.num_classes)
    num_classes = len(names) if names is not None else (config.num_classes or int(y.max()) + 1)
    if names is None and config.num_classes is None:
        _check_inferred_classes(f"{path} column {config.label_column!r}", y, num_classes)
    check_class_count(str(path), num_classes, len(y))
    if num_classes < 2:
        raise InputError(f"{path}: column {config.label_column!r} holds a single class; a classifier needs at least two.")
    if image_i is not None:
        files = [path.parent / r[image_i].strip() for r in body]
        missing = [f"line {i + 2}: {f}" for i, f in enumerate(files) if not f.is_file()]
        if missing:
            raise InputError(f"{path}: {len(missing)} image path(s) in column {config.image_column!r} do not exist "
                             f"({_examples(missing)}). Paths are relative to the CSV's folder.")
        x = _read_images(files, path.parent, config)
    else:
        feature_cols = [i for i in range(len(header)) if i not in (label_i, id_i, split_i)]
        if not feature_cols:
            raise InputError(f"{path} has no feature columns besides {config.label_column!r}; give numeric feature "
                             "columns, or image paths with data.image_column.")
        x = np.empty((len(body), len(feature_cols)), dtype=np.float32)
        for r, row in enumerate(body):
            for j, c in enumerate(feature_cols):
                try:
                    x[r, j] = float(row[c])
                except ValueError:
                    raise InputError(f"{path} line {r + 2}, column {header[c]!r}: {row[c]!r} is not a number. Feature "
                                     "columns must be numeric; set data.id_column / data.split_column for text columns, "
                                     "or drop the column.") from None
        x = _check_x(str(path), x)
    if split_i is None:
        parts = {"train": (x, y, ids)}
    else:
        values = [r[split_i].strip().lower() for r in body]
        aliases = {n: s for s, names_ in SPLIT_FOLDERS.items() for n in names_}
        bad = sorted({v for v in values if v not in aliases})
        if bad:
            raise InputError(f"{path}: column {config.split_column!r} holds {_examples(bad)}; valid values: "
                             f"{', '.join(aliases)}.")
        which = np.asarray([aliases[v] for v in values])
        if not (which == "train").any():
            raise InputError(f"{path}: no row is in the train split (column {config.split_column!r}).")
        parts = {s: (x[which == s], y[which == s], ids[which == s]) for s in ("train", "val", "test") if (which == s).any()}
    class_names = names if names is not None else tuple(str(i) for i in range(num_classes))
    return _assemble(path.stem, "user", config.seed, parts, class_names, config.val_fraction, config.test_fraction)


# --- model inputs from an NPZ: one array per named input (validation, calibration, eval) ------------------------


def load_input_arrays(path: str | Path, inputs: list[Any], *, what: str | None = None, labels: bool = False,
                      ) -> tuple[list[np.ndarray], np.ndarray | None]:
    """A model's samples from an .npz: one (N, ...) array per input in ``inputs``' order, and the labels ``y``.

    A one-input model reads ``x`` (or the array named like its input); a model with several inputs reads one array
    per input, named like it (``input_ids``, ``attention_mask``, ``token_type_ids``), with the same N. ``inputs`` are
    :class:`~edgestill.models.loading.InputShape` (name, dims, dtype, kind, high, dynamic_seq). Each array is cast to its
    input's dtype; ids must lie in the vocabulary (``high``), which an embedding table would otherwise index past.

    Args:
        path: the .npz file.
        inputs: the model's inputs, in the forward's order.
        what: how messages name the file (default ``--data PATH``).
        labels: also read the optional integer labels ``y`` (one per sample).

    Raises:
        InputError: the file is missing or unreadable; an input's array is missing (the message names the missing and
            the present arrays); arrays of different N; a shape other than the input's; non-numeric values, NaN/Inf,
            non-whole numbers for an integer input, ids outside the vocabulary; ``y`` not one integer per sample.
    """
    label = what or f"--data {path}"
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{label} does not exist. Pass an .npz holding one array per model input (x for a one-input model) "
                         "and optionally labels y.")
    names = [s.name for s in inputs]
    single = len(inputs) == 1
    wanted = [*(n for n in names if n), *(["x"] if single else []), *(["y"] if labels else [])]
    present = sorted(npz_headers(p, what=label))
    arrays = read_npz(p, what=label, keys=wanted)
    if single:
        key = "x" if "x" in arrays else names[0]
        if key not in arrays:
            raise InputError(f"{label} holds no array 'x'{f' or {names[0]!r}' if names[0] else ''} (it has {present or 'none'}). "
                             "Save it with np.savez(path, x=samples, y=labels).")
        keys = [key]
    else:
        missing = [n for n in names if n not in arrays]
        if missing:
            raise InputError(f"{label}: the model takes {len(names)} inputs ({', '.join(names)}) and the file has no array "
                             f"named {', '.join(map(repr, missing))}; it holds {present or 'no arrays'}. Save one array per "
                             f"input, named like it: np.savez(path, {', '.join(f'{n}=...' for n in names)}, y=labels).")
        keys = names
    sizes = {k: (len(arrays[k]) if arrays[k].ndim else 0) for k in keys}
    if len(set(sizes.values())) > 1:
        raise InputError(f"{label}: the input arrays hold different numbers of samples ({', '.join(f'{k}: {n}' for k, n in sizes.items())}); "
                         "every input needs one row per sample, the same N in each.")
    out = [_input_array(label, k, arrays[k], s) for k, s in zip(keys, inputs)]
    seq_lengths = {a.shape[1] for a, s in zip(out, inputs) if getattr(s, "dynamic_seq", False)}
    if len(seq_lengths) > 1:
        raise InputError(f"{label}: the token arrays have different sequence lengths {sorted(seq_lengths)}; pad them to one length.")
    y = arrays.get("y") if labels else None
    n = len(out[0])
    if y is not None and (y.ndim != 1 or len(y) != n or y.dtype.kind not in "iu"):
        raise InputError(f"{label}: y has shape {list(y.shape)} dtype {y.dtype} for {n} samples; pass one integer class "
                         "id per sample, or leave y out.")
    return out, y


def _input_array(label: str, key: str, arr: np.ndarray, spec: Any) -> np.ndarray:
    """One input's array checked against its InputShape and cast to its dtype."""
    dims = tuple(spec.dims[1:])
    dynamic = getattr(spec, "dynamic_seq", False)
    expected = ", ".join(["N", *("S" if dynamic and i == 0 else str(d) for i, d in enumerate(dims))])
    ok = arr.ndim == len(dims) + 1 and len(arr) > 0 and all(
        (dynamic and i == 0) or a == d for i, (a, d) in enumerate(zip(arr.shape[1:], dims)))
    if not ok:
        raise InputError(f"{label}: array {key!r} has shape {list(arr.shape)}; the model's input {spec.name or key!r} is "
                         f"({expected}). Pass samples shaped like the input, one per row.")
    if arr.dtype.kind not in "biuf":
        raise InputError(f"{label}: array {key!r} has dtype {arr.dtype}; it must be numeric.")
    target = np.dtype(spec.dtype)
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise InputError(f"{label}: array {key!r} holds NaN or Inf; remove or fix those samples.")
    if target.kind in "iu":
        if arr.dtype.kind == "f" and not (arr == np.round(arr)).all():
            raise InputError(f"{label}: array {key!r} holds non-whole numbers but the input {spec.name or key!r} is {target}; "
                             "save whole numbers (token ids, masks) as an integer array.")
        low, high = (0, spec.high) if getattr(spec, "kind", None) == "ids" else (None, None)
        if high is not None and arr.size and (arr.min() < low or arr.max() >= high):
            raise InputError(f"{label}: array {key!r} holds ids from {int(arr.min())} to {int(arr.max())} but the model's "
                             f"vocabulary has {high} tokens (ids 0..{high - 1}): they would index past its embedding "
                             "table. Encode the texts with the model's own tokenizer.")
    return np.ascontiguousarray(arr.astype(target, copy=False))
