"""User data loaders: image folders, NPZ, CSV; splitting rules; augmentation; bad input named precisely."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgestill.data import Augment, DataConfig, load_csv, load_data, load_image_folder, load_npz
from edgestill.errors import ConfigError, InputError


def write_images(root: Path, counts: dict[str, int], size: tuple[int, int] = (12, 10), seed: int = 0) -> None:
    """Class folders of PNGs; class k's images have mean brightness 40 * (k + 1) so labels can be checked."""
    rng = np.random.default_rng(seed)
    for k, (name, n) in enumerate(sorted(counts.items())):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            arr = np.clip(rng.normal(40 * (k + 1), 5, (*size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(root / name / f"{i:03d}.png")


def test_image_folder_gives_normalised_stratified_splits_keyed_by_path(tmp_path: Path) -> None:
    write_images(tmp_path / "imgs", {"cat": 10, "dog": 10, "emu": 10})
    cfg = DataConfig(folder=tmp_path / "imgs", val_fraction=0.2, test_fraction=0.2, mean=0.5, std=0.25)
    data = load_data(cfg)
    assert data.class_names == ("cat", "dog", "emu") and data.num_classes == 3
    assert data.input_shape == (3, 12, 10)
    assert (len(data.train), len(data.val), len(data.test)) == (18, 6, 6)
    for split in (data.train, data.val, data.test):
        assert np.bincount(split.y, minlength=3).min() >= 1  # stratified: every class in every split
        # ids are relative paths whose folder is the label
        assert all(data.class_names[y] == str(i).split("/")[0] for i, y in zip(split.ids, split.y))
        # brightness follows the class: (40 (k+1) / 255 - 0.5) / 0.25
        expected = (40 * (split.y + 1) / 255 - 0.5) / 0.25
        np.testing.assert_allclose(split.x.mean(axis=(1, 2, 3)), expected, atol=0.1)
    all_ids = np.concatenate([s.ids for s in (data.train, data.val, data.test)])
    assert len(set(all_ids.tolist())) == 30
    again = load_data(cfg)
    assert again.sha256 == data.sha256 and (again.val.ids == data.val.ids).all()
    other = load_data(DataConfig(folder=tmp_path / "imgs", val_fraction=0.2, test_fraction=0.2, seed=1))
    assert (other.val.ids != data.val.ids).any()


def test_split_folders_are_used_as_given_and_missing_test_is_carved_from_train(tmp_path: Path) -> None:
    write_images(tmp_path / "d" / "train", {"a": 8, "b": 8})
    write_images(tmp_path / "d" / "val", {"a": 2, "b": 2}, seed=1)
    data = load_image_folder(tmp_path / "d", config=DataConfig(folder=tmp_path / "d", test_fraction=0.25))
    assert sorted(data.val.ids.tolist()) == ["val/a/000.png", "val/a/001.png", "val/b/000.png", "val/b/001.png"]
    assert all(str(i).startswith("train/") for i in data.test.ids) and len(data.test) == 4
    assert len(data.train) == 12


def test_image_size_resizes_and_grey_gives_one_channel(tmp_path: Path) -> None:
    write_images(tmp_path / "i", {"a": 3, "b": 3}, size=(20, 16))
    data = load_data(DataConfig(folder=tmp_path / "i", image_size=[8, 8], channels=1))
    assert data.input_shape == (1, 8, 8)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: root.mkdir(), "has no class sub-folders"),
        (lambda root: (root / "cat").mkdir(parents=True), "class folder cat is empty"),
        (lambda root: (write_images(root, {"cat": 2, "dog": 2}), (root / "dog" / "notes.txt").write_text("x")),
         "dog/notes.txt"),
        (lambda root: (write_images(root, {"cat": 2, "dog": 2}), (root / "dog" / "broken.png").write_bytes(b"nope")),
         "dog/broken.png in"),
        (lambda root: (write_images(root, {"cat": 2, "dog": 2}), (root / "dog" / "nested").mkdir()), "dog/nested/"),
        (lambda root: write_images(root, {"cat": 4}), "only one class"),
        (lambda root: (write_images(root, {"cat": 2, "dog": 2}), Image.new("RGB", (5, 5)).save(root / "dog" / "odd.png")),
         "images differ in size"),
        (lambda root: (write_images(root / "train", {"cat": 3, "dog": 3}), write_images(root / "val", {"cow": 1})),
         "class folder(s) cow that train/ does not have"),
        (lambda root: (write_images(root, {"cat": 2, "dog": 2}), Image.new("RGB", (12, 10)).save(root / "stray.png")),
         "outside any class sub-folder"),
    ],
    ids=["empty", "empty-class", "non-image", "undecodable", "nested", "one-class", "sizes", "val-class", "stray"],
)
def test_bad_image_folders_are_input_errors_naming_the_problem(tmp_path: Path, make, message: str) -> None:
    root = tmp_path / "imgs"
    make(root)
    with pytest.raises(InputError) as exc:
        load_data(DataConfig(folder=root))
    assert message in str(exc.value)


def test_missing_folder_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        load_data(DataConfig(folder=tmp_path / "nope"))


def test_npz_with_ids_and_explicit_splits(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 3, 4, 4)).astype(np.float32), np.arange(40) % 4
    ids = np.array([f"s{i}" for i in range(40)])
    np.savez(tmp_path / "a.npz", x=x, y=y, ids=ids, class_names=np.array(["w", "x", "y", "z"]))
    data = load_npz(tmp_path / "a.npz")
    assert data.class_names == ("w", "x", "y", "z") and data.input_shape == (3, 4, 4)
    assert len(data.train) + len(data.val) + len(data.test) == 40
    for split in (data.train, data.val, data.test):  # every row keeps its id, features and label
        for i, sid in enumerate(split.ids):
            k = int(str(sid)[1:])
            np.testing.assert_array_equal(split.x[i], x[k])
            assert split.y[i] == y[k]

    np.savez(tmp_path / "b.npz", train_x=x[:30], train_y=y[:30], val_x=x[30:35], val_y=y[30:35], test_x=x[35:],
             test_y=y[35:])
    data = load_npz(tmp_path / "b.npz")
    assert (len(data.train), len(data.val), len(data.test)) == (30, 5, 5)
    assert data.test.ids.tolist() == [35, 36, 37, 38, 39]  # row numbers continue across the splits


@pytest.mark.parametrize(
    ("arrays", "config", "message"),
    [
        ({"x": np.zeros((6, 2)), "y": np.array([0, 1, 2, 7, 1, 0])}, {"num_classes": 3},
         "1 label(s) outside the class range [0, 3) (sample id→label: 3→7)"),
        ({"x": np.zeros((4, 2)), "y": np.array([0, -1, 1, 0])}, {}, "outside the class range"),
        ({"x": np.zeros((4, 2)), "y": np.array([0, 1, 1, 0]), "ids": np.array([1, 2, 2, 3])}, {}, "occur more than once: 2"),
        ({"features": np.zeros((4, 2))}, {}, "expected x and y"),
        ({"x": np.full((4, 2), np.nan), "y": np.array([0, 1, 0, 1])}, {}, "NaN"),
        ({"x": np.zeros((4, 2)), "y": np.array([0, 1, 0])}, {}, "x has 4 rows, y 3"),
        ({"x": np.zeros((4, 2)), "y": np.array([0.5, 1, 0, 1])}, {}, "labels must be integers"),
    ],
    ids=["label-range", "negative", "dup-ids", "keys", "nan", "lengths", "float-labels"],
)
def test_bad_npz_is_an_input_error(tmp_path: Path, arrays, config, message: str) -> None:
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(InputError) as exc:
        load_data(DataConfig(npz=tmp_path / "d.npz", **config))
    assert message in str(exc.value)


def test_csv_features_with_class_names_and_split_column(tmp_path: Path) -> None:
    lines = ["id,f1,f2,label,split"] + [f"r{i},{i},{2 * i},{'ab'[i % 2]},{'train' if i < 8 else 'test'}" for i in range(12)]
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    data = load_csv(tmp_path / "t.csv", config=DataConfig(csv=tmp_path / "t.csv", split_column="split"))
    assert data.class_names == ("a", "b") and data.input_shape == (2,)
    assert sorted(data.test.ids.tolist()) == ["r10", "r11", "r8", "r9"]
    assert len(data.val) >= 1 and all(str(i) in {f"r{k}" for k in range(8)} for i in data.val.ids)
    i = int(np.flatnonzero(data.train.ids == "r3")[0])
    np.testing.assert_array_equal(data.train.x[i], [3.0, 6.0])
    assert data.train.y[i] == 1


def test_csv_of_image_paths(tmp_path: Path) -> None:
    write_images(tmp_path / "img", {"a": 4, "b": 4})
    rows = ["path,label"] + [f"img/{c}/{i:03d}.png,{k}" for k, c in enumerate("ab") for i in range(4)]
    (tmp_path / "list.csv").write_text("\n".join(rows))
    data = load_data(DataConfig(csv=tmp_path / "list.csv", image_column="path"))
    assert data.input_shape == (3, 12, 10) and data.num_classes == 2


@pytest.mark.parametrize(
    ("text", "config", "message"),
    [
        ("f1,label\n1,0\nx,1\n2,0\n", {}, "line 3, column 'f1': 'x' is not a number"),
        ("f1,lbl\n1,0\n2,1\n", {}, "no column 'label' (data.label_column). Did you mean 'lbl'?"),
        ("f1,label\n1,0\n2,5\n3,1\n", {"num_classes": 2}, "outside the class range [0, 2)"),
        ("label\n", {}, "no data rows"),
    ],
    ids=["non-numeric", "no-label-column", "label-range", "empty"],
)
def test_bad_csv_is_an_input_error(tmp_path: Path, text: str, config, message: str) -> None:
    (tmp_path / "t.csv").write_text(text)
    with pytest.raises(InputError) as exc:
        load_data(DataConfig(csv=tmp_path / "t.csv", **config))
    assert message in str(exc.value)


def test_data_config_rejects_bad_values() -> None:
    with pytest.raises(ConfigError, match="exactly one source"):
        DataConfig(builtin="digits", npz=Path("x.npz"))
    with pytest.raises(ConfigError, match="data.val_fraction"):
        DataConfig(builtin="digits", val_fraction=0.9)
    with pytest.raises(ConfigError, match="data.augment.crop_padding"):
        DataConfig(builtin="digits", augment={"crop_padding": -1})
    with pytest.raises(ConfigError, match="data.image_size"):
        DataConfig(builtin="digits", image_size=[0, 4])


def test_augment_on_tabular_data_is_refused(tmp_path: Path) -> None:
    np.savez(tmp_path / "t.npz", x=np.zeros((10, 3)), y=np.arange(10) % 2)
    with pytest.raises(ConfigError, match="flips and crops images"):
        load_data(DataConfig(npz=tmp_path / "t.npz", augment=Augment(flip=True)))


def test_augment_names_are_stable() -> None:
    assert Augment().name == "none" and not Augment().random and not Augment().active
    assert Augment(flip=True, crop_padding=4).name == "flip+crop4" == Augment(flip=True, crop_padding=4).policy
    assert Augment(crop_padding=4).name == "crop4" and Augment(crop_padding=4).random


def test_augment_flip_mirrors_some_samples_on_the_width_axis_and_keeps_the_others() -> None:
    x = np.random.default_rng(0).normal(size=(32, 3, 8, 8)).astype(np.float32)
    mirrored = np.flip(x, axis=3)
    assert not any(np.array_equal(x[i], mirrored[i]) for i in range(32))  # so "flipped" and "kept" are exclusive
    out = Augment(flip=True).apply(x, np.random.default_rng(1))
    np.testing.assert_array_equal(out, Augment(flip=True).apply(x, np.random.default_rng(1)))  # same rng, same batch
    flipped = [bool(np.array_equal(out[i], mirrored[i])) for i in range(32)]
    kept = [bool(np.array_equal(out[i], x[i])) for i in range(32)]
    assert all(f != k for f, k in zip(flipped, kept)), "every sample is either mirrored left-right or unchanged"
    assert 4 <= sum(flipped) <= 28, f"about half should flip, {sum(flipped)} of 32 did"
    assert not any(np.array_equal(out[i], np.flip(x[i], axis=1)) for i in range(32))  # never upside down
    np.testing.assert_array_equal(x, np.random.default_rng(0).normal(size=(32, 3, 8, 8)).astype(np.float32))  # input untouched


def test_augment_crop_shifts_content_within_the_reflect_padding() -> None:
    p, n, h, w = 2, 16, 8, 8
    x = np.random.default_rng(0).normal(size=(n, 3, h, w)).astype(np.float32)
    out = Augment(crop_padding=p).apply(x, np.random.default_rng(2))
    assert out.shape == x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), mode="reflect")
    offsets = []
    for i in range(n):  # each output is exactly one window of the padded image (random data: windows differ)
        found = [(dy, dx) for dy in range(2 * p + 1) for dx in range(2 * p + 1)
                 if np.array_equal(out[i], padded[i, :, dy:dy + h, dx:dx + w])]
        assert len(found) == 1, f"sample {i} is not a window of its padded image"
        offsets.append(found[0])
    shifted = [i for i, (dy, dx) in enumerate(offsets) if (dy, dx) != (p, p)]
    assert shifted and len(set(offsets)) > 2, f"offsets {offsets} do not move the content"
    i = shifted[0]
    sy, sx = offsets[i][0] - p, offsets[i][1] - p  # out[r, c] == x[r + sy, c + sx] where both are inside the image
    rows, cols = slice(max(0, -sy), min(h, h - sy)), slice(max(0, -sx), min(w, w - sx))
    src_rows, src_cols = slice(rows.start + sy, rows.stop + sy), slice(cols.start + sx, cols.stop + sx)
    np.testing.assert_array_equal(out[i][:, rows, cols], x[i][:, src_rows, src_cols])
    assert not np.array_equal(out[i], x[i])


@pytest.mark.parametrize("fmt", ["npz", "csv"])
def test_a_class_count_that_cannot_fit_memory_is_refused_before_anything_is_made(tmp_path: Path, fmt: str) -> None:
    """Bad input: data.num_classes 1e9 for 60 samples. Before this check, the class names and the model head were
    built from it and the kernel killed the process (exit 137)."""
    rng = np.random.default_rng(0)
    if fmt == "npz":
        path = tmp_path / "d.npz"
        np.savez(path, x=rng.standard_normal((60, 3, 8, 8)).astype(np.float32), y=np.arange(60) % 3)
        config = DataConfig(npz=path, num_classes=10**9)
    else:
        path = tmp_path / "d.csv"
        path.write_text("a,b,label\n" + "".join(f"{i},{i * 2},{i % 3}\n" for i in range(60)))
        config = DataConfig(csv=path, label_column="label", num_classes=10**9)
    with pytest.raises(InputError, match=r"1000000000 classes for 60 samples .* of memory"):
        load_data(config)
