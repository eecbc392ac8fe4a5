"""Built-in datasets: deterministic, well-formed splits and clear errors for bad names."""

import numpy as np
import pytest

from edgestill.data import SHAPES_CLASSES, dataset_names, generate_shapes, load_dataset
from edgestill.errors import ConfigError, UnknownNameError


def test_registered_names():
    assert {"digits", "synthetic-shapes"} <= set(dataset_names())


@pytest.mark.parametrize("name", ["digits", "synthetic-shapes"])
def test_splits_are_well_formed_and_disjoint(name):
    data = load_dataset(name, seed=0, size="quick")
    c, h, w = data.input_shape
    for split in (data.train, data.val, data.test):
        assert split.x.dtype == np.float32 and split.x.shape[1:] == (c, h, w)
        assert split.y.dtype == np.int64 and split.y.shape == (len(split),) == split.ids.shape
        assert split.y.min() >= 0 and split.y.max() < data.num_classes
        assert np.isfinite(split.x).all()
    ids = [set(s.ids.tolist()) for s in (data.train, data.val, data.test)]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
    assert len(data.class_names) == data.num_classes == 10
    # normalised: roughly zero mean, unit spread
    assert abs(float(data.train.x.mean())) < 0.5 and 0.5 < float(data.train.x.std()) < 1.5


@pytest.mark.parametrize("name", ["digits", "synthetic-shapes"])
def test_same_seed_same_data_other_seed_other_split(name):
    a, b = load_dataset(name, seed=3, size="quick"), load_dataset(name, seed=3, size="quick")
    assert a.sha256 == b.sha256
    np.testing.assert_array_equal(a.train.x, b.train.x)
    np.testing.assert_array_equal(a.test.ids, b.test.ids)
    c = load_dataset(name, seed=4, size="quick")
    assert c.sha256 != a.sha256
    assert not np.array_equal(a.train.ids, c.train.ids) or not np.array_equal(a.train.x, c.train.x)


def test_sizes_differ_and_default_is_larger():
    quick, full = load_dataset("synthetic-shapes", size="quick"), load_dataset("synthetic-shapes")
    assert full.input_shape == quick.input_shape == (3, 32, 32)
    assert len(full.train) > len(quick.train) and len(full.test) >= 1000
    assert full.sha256 != quick.sha256


def test_shapes_classes_balanced_and_images_vary():
    x, y = generate_shapes(2000, seed=1)
    counts = np.bincount(y, minlength=len(SHAPES_CLASSES))
    assert counts.min() > 120  # 200 expected per class
    # images are not trivially identical per class: per-class mean images differ much less than samples do
    assert x.std(axis=0).mean() > 0.5


def test_shapes_not_solvable_from_colour_statistics():
    """Per-image channel means carry (almost) no label information: the class lives in shape and texture."""
    from sklearn.linear_model import LogisticRegression

    x, y = generate_shapes(3000, seed=2)
    feats = np.concatenate([x.mean(axis=(2, 3)), x.std(axis=(2, 3))], axis=1)
    clf = LogisticRegression(max_iter=500).fit(feats[:2000], y[:2000])
    assert clf.score(feats[2000:], y[2000:]) < 0.35


def test_unknown_name_suggests_closest():
    with pytest.raises(UnknownNameError, match="digits"):
        load_dataset("digit")


@pytest.mark.parametrize("kwargs", [{"size": "huge"}, {"seed": -1}, {"seed": 1.5}])
def test_bad_size_or_seed_is_config_error(kwargs):
    with pytest.raises(ConfigError):
        load_dataset("digits", **kwargs)
