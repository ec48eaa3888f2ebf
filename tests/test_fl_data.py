"""fl.training.data: bundled and synthetic datasets, the held-out split, IID and Dirichlet
splits."""

from __future__ import annotations

import itertools
from functools import cache

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fl.training.data import (
    DATASETS,
    MIN_EXAMPLES,
    Dataset,
    Shard,
    label_skew,
    load_dataset,
    make_synthetic,
)
from secagg.errors import ConfigError


@cache
def _ds(name: str) -> Dataset:
    return load_dataset(name)


def _assert_exact_partition(ds: Dataset, shards: list[Shard], min_examples: int) -> None:
    """Every training example goes to exactly one client, with its own features and label."""
    rows = np.concatenate([s.indices for s in shards])
    np.testing.assert_array_equal(np.sort(rows), np.arange(ds.n_train))
    for s in shards:
        assert len(s) >= min_examples
        np.testing.assert_array_equal(s.x, ds.x_train[s.indices])
        np.testing.assert_array_equal(s.y, ds.y_train[s.indices])


def test_dataset_names() -> None:
    assert DATASETS == ("breast_cancer", "digits", "synthetic", "diabetes")


@pytest.mark.parametrize(
    ("name", "n", "features", "classes", "image"),
    [("breast_cancer", 569, 30, 2, None), ("digits", 1797, 64, 10, (8, 8))],
)
def test_bundled_datasets_have_their_known_shape(
    name: str, n: int, features: int, classes: int, image: tuple[int, int] | None
) -> None:
    ds = _ds(name)
    assert ds.name == name
    assert ds.n_train + ds.n_test == n
    assert ds.n_test == int(np.ceil(0.2 * n))
    assert ds.n_features == features
    assert ds.n_classes == classes
    assert ds.image_shape == image
    for x, y in ((ds.x_train, ds.y_train), (ds.x_test, ds.y_test)):
        assert x.dtype == np.float32 and y.dtype == np.int64
        assert x.shape == (len(y), features)
        assert set(np.unique(y)) == set(range(classes))
        assert np.isfinite(x).all()


@pytest.mark.parametrize("name", ["breast_cancer", "digits"])
def test_test_split_is_stratified(name: str) -> None:
    ds = _ds(name)
    total = np.bincount(ds.y_train, minlength=ds.n_classes) + np.bincount(ds.y_test)
    expected = total * ds.n_test / total.sum()
    assert np.abs(np.bincount(ds.y_test, minlength=ds.n_classes) - expected).max() <= 1


def test_loading_is_deterministic() -> None:
    a, b = load_dataset("breast_cancer"), load_dataset("breast_cancer")
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    c = load_dataset("breast_cancer", seed=1)
    assert not np.array_equal(a.y_test, c.y_test)


def test_breast_cancer_is_standardised_on_the_training_split_only() -> None:
    ds = _ds("breast_cancer")
    x_train = ds.x_train.astype(np.float64)
    np.testing.assert_allclose(x_train.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(x_train.std(axis=0), 1.0, atol=1e-5)
    # Statistics from all the data (or the test set) would leave the training mean off zero,
    # and would put the test mean at zero.
    assert np.abs(ds.x_test.mean(axis=0)).max() > 1e-2


def test_digits_pixels_are_scaled_to_unit_range() -> None:
    ds = _ds("digits")
    assert ds.x_train.min() == 0.0 and ds.x_train.max() == 1.0
    assert ds.x_test.min() >= 0.0 and ds.x_test.max() <= 1.0


def test_unknown_name_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError) as info:
        load_dataset("mnist")
    message = str(info.value)
    assert "mnist" in message and "\n" not in message
    for name in DATASETS:
        assert name in message
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.5, 0.001])
def test_bad_test_fraction(fraction: float) -> None:
    with pytest.raises(ConfigError, match="test_fraction"):
        load_dataset("breast_cancer", test_fraction=fraction)


# splits


@pytest.mark.parametrize("n_clients", [1, 2, 5, 10, 37])
def test_iid_split_is_an_exact_partition_of_near_equal_shards(n_clients: int) -> None:
    ds = _ds("breast_cancer")
    shards = ds.split_iid(n_clients, seed=3)
    assert len(shards) == n_clients
    _assert_exact_partition(ds, shards, MIN_EXAMPLES)
    sizes = [len(s) for s in shards]
    assert max(sizes) - min(sizes) <= 1


def test_splits_are_seeded() -> None:
    ds = _ds("breast_cancer")
    for split in (lambda s: ds.split_iid(5, s), lambda s: ds.split_dirichlet(5, 0.5, s)):
        a, b, c = split(1), split(1), split(2)
        assert all(np.array_equal(x.indices, y.indices) for x, y in zip(a, b))
        assert not all(np.array_equal(x.indices, y.indices) for x, y in zip(a, c))


@pytest.mark.parametrize("alpha", [0.01, 0.1, 0.5, 1.0, 100.0])
@pytest.mark.parametrize("name", ["breast_cancer", "digits"])
def test_dirichlet_split_is_an_exact_partition(name: str, alpha: float) -> None:
    ds = _ds(name)
    shards = ds.split_dirichlet(20, alpha, seed=0)
    assert len(shards) == 20
    _assert_exact_partition(ds, shards, MIN_EXAMPLES)


@settings(deadline=None)
@given(
    n_clients=st.integers(1, 60),
    alpha=st.floats(0.005, 1000.0),
    seed=st.integers(0, 2**32 - 1),
    min_examples=st.integers(1, 7),
)
def test_dirichlet_split_always_partitions_with_the_minimum(
    n_clients: int, alpha: float, seed: int, min_examples: int
) -> None:
    ds = _ds("breast_cancer")
    shards = ds.split_dirichlet(n_clients, alpha, seed, min_examples=min_examples)
    _assert_exact_partition(ds, shards, min_examples)


def test_dirichlet_skew_grows_as_alpha_shrinks() -> None:
    ds = _ds("digits")
    alphas = [1000.0, 10.0, 1.0, 0.3, 0.05]
    skews = [
        np.mean([label_skew(ds.split_dirichlet(10, a, seed), ds.n_classes) for seed in range(3)])
        for a in alphas
    ]
    assert all(lo < hi for lo, hi in itertools.pairwise(skews)), skews
    iid = np.mean([label_skew(ds.split_iid(10, seed), ds.n_classes) for seed in range(3)])
    assert skews[0] < 0.1 and iid < 0.1
    assert skews[-1] > 0.6  # each client holds only a few of the ten classes


def test_label_skew_extremes() -> None:
    y = np.array([0, 0, 1, 1])
    x = np.zeros((4, 1), dtype=np.float32)
    idx = np.arange(4)
    same = [Shard(x[:2], y[[0, 2]], idx[:2]), Shard(x[:2], y[[1, 3]], idx[2:])]
    apart = [Shard(x[:2], y[:2], idx[:2]), Shard(x[:2], y[2:], idx[2:])]
    assert label_skew(same, 2) == 0.0
    assert label_skew(apart, 2) == 0.5
    with pytest.raises(ConfigError):
        label_skew([], 2)


@pytest.mark.parametrize("name", ["breast_cancer", "digits"])
def test_too_many_clients_names_the_maximum(name: str) -> None:
    ds = _ds(name)
    limit = ds.n_train // MIN_EXAMPLES
    assert ds.max_clients() == limit
    _assert_exact_partition(ds, ds.split_iid(limit, 0), MIN_EXAMPLES)
    _assert_exact_partition(ds, ds.split_dirichlet(limit, 0.1, 0), MIN_EXAMPLES)
    for split in (ds.split_iid, lambda n, s: ds.split_dirichlet(n, 0.5, s)):
        with pytest.raises(ConfigError, match=rf"1 to {limit} clients"):
            split(limit + 1, 0)


def test_bad_split_arguments() -> None:
    ds = _ds("breast_cancer")
    for n in (0, -3, 2.5, True):
        with pytest.raises(ConfigError, match="n_clients"):
            ds.split_iid(n, 0)  # type: ignore[arg-type]
    for alpha in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ConfigError, match="alpha"):
            ds.split_dirichlet(5, alpha, 0)
    with pytest.raises(ConfigError, match="min_examples"):
        ds.split_iid(5, 0, min_examples=0)


# synthetic


def test_synthetic_data_has_the_requested_shape_and_is_seeded() -> None:
    ds = make_synthetic(n_samples=500, n_features=300, n_classes=5, seed=7)
    assert (ds.name, ds.n_features, ds.n_classes) == ("synthetic", 300, 5)
    assert ds.n_train + ds.n_test == 500
    assert np.bincount(ds.y_train).min() >= 500 * 0.8 / 5 - 1
    again = make_synthetic(n_samples=500, n_features=300, n_classes=5, seed=7)
    np.testing.assert_array_equal(ds.x_train, again.x_train)
    other = make_synthetic(n_samples=500, n_features=300, n_classes=5, seed=8)
    assert not np.array_equal(ds.x_train, other.x_train)
    assert load_dataset("synthetic").n_train > 0


def test_synthetic_data_is_learnable_but_not_trivial() -> None:
    ds = make_synthetic(n_samples=2000, n_features=256, n_classes=10, seed=0)
    # nearest class mean, estimated on the training split
    means = np.stack([ds.x_train[ds.y_train == c].mean(axis=0) for c in range(10)])
    dist = ((ds.x_test[:, None, :] - means[None]) ** 2).sum(axis=2)
    accuracy = float((dist.argmin(axis=1) == ds.y_test).mean())
    assert 0.3 < accuracy < 1.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_samples": 10, "n_classes": 10},
        {"n_features": 0},
        {"n_classes": 1},
        {"class_sep": 0.0},
        {"n_samples": 100.5},
    ],
)
def test_synthetic_refuses_impossible_sizes(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        make_synthetic(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["breast_cancer", "digits"])
def test_bundled_data_and_split_are_exactly_scikit_learns(name: str) -> None:
    """fl.training.data reads the CSVs and splits without importing sklearn (a second of start-up);
    what it gets must be what sklearn's loaders and train_test_split give."""
    from sklearn import datasets as skd
    from sklearn.model_selection import train_test_split

    from fl.training.data import _bundled, _stratified_split

    x, y = _bundled(name)
    bunch = skd.load_breast_cancer() if name == "breast_cancer" else skd.load_digits()
    assert np.array_equal(x, bunch.data) and np.array_equal(y, bunch.target)
    for seed in (0, 1, 99):
        for fraction in (0.2, 0.33):
            n_test = int(np.ceil(fraction * len(y)))
            train, test = _stratified_split(y, n_test, seed)
            ref = train_test_split(np.arange(len(y)), test_size=fraction, stratify=y,
                                   random_state=seed)
            assert np.array_equal(train, ref[0]) and np.array_equal(test, ref[1])


def test_loading_a_bundled_dataset_does_not_import_sklearn() -> None:
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    code = ("import sys; from fl.training.data import load_dataset; load_dataset('digits'); "
            "load_dataset('breast_cancer'); print('sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=root, check=True, env={**os.environ, "PYTHONPATH": str(root)})
    assert out.stdout.strip() == "False"
