"""Datasets for the federated-learning examples, and how to split them across clients.

Nothing is downloaded. ``breast_cancer``, ``digits`` and ``diabetes`` ship inside the
scikit-learn wheel;
``synthetic`` is generated on the spot, in any size, for benchmarks with large models.

Every dataset is split once into a training set and a held-out test set, stratified by label
under a fixed seed, so every run sees the same test set. Features are scaled with statistics
of the training split only (the test split never leaks into preprocessing):

- ``breast_cancer``: 569 tumours x 30 real features, binary label (0 malignant, 1 benign),
  each feature standardised to zero mean and unit variance on the training split;
- ``digits``: 1,797 handwritten 8x8 images, 10 classes, pixels (0..16) scaled to [0, 1];
  ``image_shape`` is ``(8, 8)`` so a CNN can view rows as images;
- ``diabetes``: 442 patients x 10 EHR-like features (age, sex, body-mass index, blood
  pressure and six blood serum measurements, :data:`DIABETES_FEATURES`), the binary label
  being whether the disease progressed more than the median (140.5) a year later;
  standardised like ``breast_cancer``. It is the tabular data :mod:`fl.training.anonymity` is meant
  for: age, sex, bmi and bp are quasi-identifiers;
- ``synthetic``: Gaussian clusters around random class centres (:func:`make_synthetic`),
  standardised like ``breast_cancer``.

The training split is dealt to clients with :meth:`Dataset.split_iid` or
:meth:`Dataset.split_dirichlet` (label skew controlled by ``alpha``, Hsu et al. 2019). Both
partition the training set exactly: every example goes to exactly one client, and every
client gets at least ``min_examples`` of them.

Randomness here is ``numpy.random.default_rng(seed)``: data splits are not secrets.
"""

from __future__ import annotations

import gzip
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
from numpy.typing import NDArray

from secagg.errors import ConfigError

__all__ = [
    "DATASETS",
    "DIABETES_FEATURES",
    "MIN_EXAMPLES",
    "Dataset",
    "Shard",
    "label_skew",
    "load_dataset",
    "make_synthetic",
]

#: Names accepted by :func:`load_dataset`.
DATASETS: tuple[str, ...] = ("breast_cancer", "digits", "synthetic", "diabetes")

#: Default minimum number of training examples each client receives.
MIN_EXAMPLES = 4

#: Default fraction of each dataset held out for testing, and the seed of that split.
TEST_FRACTION = 0.2
SPLIT_SEED = 0

FloatArray = NDArray[np.float32]
IntArray = NDArray[np.int64]


@dataclass(frozen=True, eq=False)
class Shard:
    """Examples held by one party: a client's share of the training set, or the test set.

    Attributes:
        x: features, float32, shape ``(n, n_features)``.
        y: labels, int64, shape ``(n,)``, in ``0 .. n_classes - 1``.
        indices: int64, shape ``(n,)``: the rows of the dataset's training (or test) arrays
            these examples were taken from, in increasing order.
    """

    x: FloatArray
    y: IntArray
    indices: IntArray

    def __len__(self) -> int:
        return int(self.y.shape[0])


@dataclass(frozen=True, eq=False)
class Dataset:
    """A dataset already split into a training and a held-out test set.

    Build one with :func:`load_dataset` or :func:`make_synthetic`, not by hand.

    Attributes:
        name: one of :data:`DATASETS`.
        x_train, y_train: training features (float32, 2-D) and labels (int64).
        x_test, y_test: held-out test features and labels, scaled like the training set.
        n_classes: number of labels.
        image_shape: ``(height, width)`` when a row is a flattened one-channel image,
            otherwise ``None``.
    """

    name: str
    x_train: FloatArray
    y_train: IntArray
    x_test: FloatArray
    y_test: IntArray
    n_classes: int
    image_shape: tuple[int, int] | None = None

    @property
    def n_features(self) -> int:
        """Number of features per example (pixels for an image dataset)."""
        return int(self.x_train.shape[1])

    @property
    def n_train(self) -> int:
        """Number of training examples."""
        return int(self.y_train.shape[0])

    @property
    def n_test(self) -> int:
        """Number of held-out test examples."""
        return int(self.y_test.shape[0])

    @property
    def train(self) -> Shard:
        """The whole training set as one :class:`Shard`."""
        return Shard(self.x_train, self.y_train, np.arange(self.n_train, dtype=np.int64))

    @property
    def test(self) -> Shard:
        """The held-out test set as one :class:`Shard`."""
        return Shard(self.x_test, self.y_test, np.arange(self.n_test, dtype=np.int64))

    def max_clients(self, min_examples: int = MIN_EXAMPLES) -> int:
        """The most clients the training set can serve with ``min_examples`` each."""
        return self.n_train // _check_min_examples(min_examples)

    def split_iid(
        self, n_clients: int, seed: int = 0, *, min_examples: int = MIN_EXAMPLES
    ) -> list[Shard]:
        """Deal the training set to ``n_clients`` clients uniformly at random.

        Client sizes differ by at most one example.

        Args:
            n_clients: number of clients, ``1 .. max_clients(min_examples)``.
            seed: seed of the shuffle.
            min_examples: the fewest examples any client may get.

        Returns:
            One :class:`Shard` per client, together an exact partition of the training set.

        Raises:
            ConfigError: if ``n_clients`` is not a positive integer or is larger than the
                training set allows (the message names the maximum).
        """
        self._check_clients(n_clients, min_examples)
        rng = np.random.default_rng(seed)
        order = rng.permutation(self.n_train)
        return [self._shard(part) for part in np.array_split(order, n_clients)]

    def split_dirichlet(
        self,
        n_clients: int,
        alpha: float,
        seed: int = 0,
        *,
        min_examples: int = MIN_EXAMPLES,
    ) -> list[Shard]:
        """Deal the training set to clients with Dirichlet(``alpha``) label skew.

        For each class, the proportions going to the clients are drawn from a symmetric
        Dirichlet distribution with concentration ``alpha`` (Hsu et al. 2019): a small
        ``alpha`` (0.1) gives each client few classes, a large one (100) is close to IID.
        Clients that end up with fewer than ``min_examples`` examples then take random
        examples from the largest clients until every client has enough.

        Args:
            n_clients: number of clients, ``1 .. max_clients(min_examples)``.
            alpha: Dirichlet concentration, a positive finite number.
            seed: seed of the draw.
            min_examples: the fewest examples any client may get.

        Returns:
            One :class:`Shard` per client, together an exact partition of the training set.

        Raises:
            ConfigError: on a non-positive ``alpha``, a bad ``n_clients``, or more clients
                than the training set allows (the message names the maximum).
        """
        self._check_clients(n_clients, min_examples)
        alpha = float(alpha)
        if not (np.isfinite(alpha) and alpha > 0):
            raise ConfigError(f"alpha must be a positive finite number, got {alpha}")
        rng = np.random.default_rng(seed)
        pools: list[list[int]] = [[] for _ in range(n_clients)]
        for label in range(self.n_classes):
            members = rng.permutation(np.flatnonzero(self.y_train == label))
            shares = rng.dirichlet(np.full(n_clients, alpha))
            if not np.all(np.isfinite(shares)):  # underflow for tiny alpha: one client takes all
                shares = np.zeros(n_clients)
                shares[rng.integers(n_clients)] = 1.0
            cuts = np.floor(np.cumsum(shares)[:-1] * len(members)).astype(np.int64)
            for pool, part in zip(pools, np.split(members, cuts)):
                pool.extend(part.tolist())
        _top_up(pools, min_examples, rng)
        return [self._shard(np.asarray(pool, dtype=np.int64)) for pool in pools]

    def _check_clients(self, n_clients: int, min_examples: int) -> None:
        if isinstance(n_clients, bool) or not isinstance(n_clients, (int, np.integer)):
            raise ConfigError(f"n_clients must be an integer, got {n_clients!r}")
        limit = self.max_clients(min_examples)
        if not 1 <= n_clients <= limit:
            raise ConfigError(
                f"n_clients={n_clients} does not fit {self.name}: its {self.n_train} training "
                f"examples allow 1 to {limit} clients with at least {min_examples} examples each"
            )

    def _shard(self, rows: NDArray[np.int64]) -> Shard:
        rows = np.sort(rows).astype(np.int64, copy=False)
        return Shard(self.x_train[rows], self.y_train[rows], rows)


def _check_min_examples(min_examples: int) -> int:
    _check_int("min_examples", min_examples, 1)
    return int(min_examples)


def _check_int(label: str, value: object, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ConfigError(f"{label} must be an integer >= {low}, got {value!r}")


def _top_up(pools: list[list[int]], min_examples: int, rng: np.random.Generator) -> None:
    """Move random examples from the largest pools to those below ``min_examples``."""
    sizes = np.array([len(p) for p in pools])
    while sizes.min() < min_examples:
        poor = int(sizes.argmin())
        rich = int(sizes.argmax())
        donor = pools[rich]
        pick = int(rng.integers(len(donor)))
        donor[pick], donor[-1] = donor[-1], donor[pick]
        pools[poor].append(donor.pop())
        sizes[poor] += 1
        sizes[rich] -= 1


def label_skew(shards: Sequence[Shard], n_classes: int) -> float:
    """How far the clients' label mixes are from the pooled one.

    Returns the mean, over clients, of the total-variation distance between a client's
    label distribution and the label distribution of all the shards together: 0 when every
    client has the same mix, approaching 1 when each client holds a single rare class.

    Raises:
        ConfigError: if ``shards`` is empty or a shard is empty.
    """
    if not shards or any(len(s) == 0 for s in shards):
        raise ConfigError("label_skew needs at least one shard, and no empty shard")
    counts = np.stack([np.bincount(s.y, minlength=n_classes) for s in shards]).astype(float)
    pooled = counts.sum(axis=0) / counts.sum()
    mixes = counts / counts.sum(axis=1, keepdims=True)
    return float(0.5 * np.abs(mixes - pooled).sum(axis=1).mean())


def load_dataset(
    name: str,
    *,
    test_fraction: float = TEST_FRACTION,
    seed: int = SPLIT_SEED,
) -> Dataset:
    """Load a bundled dataset (or the default synthetic one), split and scaled.

    Args:
        name: one of :data:`DATASETS`.
        test_fraction: share of examples held out for testing, in ``(0, 1)``.
        seed: seed of the stratified train/test split (and of the synthetic data).

    Returns:
        A :class:`Dataset`. For ``synthetic`` this is :func:`make_synthetic` with its
        defaults; call that function directly for other sizes.

    Raises:
        ConfigError: on an unknown name (the message lists :data:`DATASETS`) or a bad
            ``test_fraction``.
    """
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    if name == "synthetic":
        return make_synthetic(seed=seed, test_fraction=test_fraction)
    if name == "diabetes":
        return _load_diabetes(test_fraction, seed)
    x, y = _bundled(name)
    if name == "breast_cancer":
        return _finish(name, x, y, 2, None, test_fraction, seed, standardise=True)
    return _finish(name, x / 16.0, y, 10, (8, 8), test_fraction, seed, standardise=False)


def _bundled(name: str) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """The features and labels of a dataset bundled in the scikit-learn wheel, read straight
    from its CSV file (what ``sklearn.datasets.load_*`` reads) without importing sklearn,
    whose import alone takes about a second.

    Raises:
        ConfigError: scikit-learn (the data files) is not installed.
    """
    import importlib.util

    spec = importlib.util.find_spec("sklearn")  # locates the package; does not import it
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"dataset {name!r} ships with scikit-learn, which is not installed; "
                          "install secagg[fl] or use --dataset synthetic")
    data = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"
    try:
        if name == "breast_cancer":
            with (data / "breast_cancer.csv").open(encoding="utf-8") as fh:
                n, f = (int(v) for v in fh.readline().split(",")[:2])
                table = np.loadtxt(fh, delimiter=",", dtype=np.float64, ndmin=2)
            if table.shape != (n, f + 1):
                raise ValueError(f"expected {n} rows of {f + 1} values, got {table.shape}")
        else:
            with gzip.open(data / "digits.csv.gz", "rt", encoding="utf-8") as fh:
                table = np.loadtxt(fh, delimiter=",", dtype=np.float64, ndmin=2)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read dataset {name!r} from {data}: {exc}") from None
    return table[:, :-1], table[:, -1].astype(np.int64)


def _approximate_mode(counts: IntArray, draws: int, rng: np.random.RandomState) -> IntArray:
    """How many of ``draws`` to take from each class: the floor of each class's share, the
    rest to the largest remainders, ties broken at random (scikit-learn's rule, draw for
    draw, so the splits are those of ``train_test_split``)."""
    continuous = counts / counts.sum() * draws
    floored: NDArray[np.float64] = np.floor(continuous)
    need = int(draws - floored.sum())
    if need > 0:
        remainder = continuous - floored
        for value in np.sort(np.unique(remainder))[::-1]:
            (inds,) = np.where(remainder == value)
            add_now = min(len(inds), need)
            inds = rng.choice(inds, size=add_now, replace=False)
            floored[inds] += 1
            need -= add_now
            if need == 0:
                break
    return floored.astype(np.int64)


def _stratified_split(y: IntArray, n_test: int, seed: int) -> tuple[IntArray, IntArray]:
    """Train and test indices of a stratified shuffle split with ``n_test`` test examples:
    ``sklearn.model_selection.train_test_split(..., stratify=y, random_state=seed)``
    reimplemented exactly (tests/test_fl_data.py compares the two), without its import."""
    _, y_idx, counts = np.unique(y, return_inverse=True, return_counts=True)
    n_train = len(y) - n_test
    by_class = np.split(np.argsort(y_idx, kind="stable"), np.cumsum(counts)[:-1])
    rng = np.random.RandomState(seed)
    n_i = _approximate_mode(counts, n_train, rng)
    t_i = _approximate_mode(counts - n_i, n_test, rng)
    train: list[int] = []
    test: list[int] = []
    for i in range(len(counts)):
        members = by_class[i].take(rng.permutation(counts[i]), mode="clip")
        train.extend(members[: n_i[i]])
        test.extend(members[n_i[i] : n_i[i] + t_i[i]])
    return rng.permutation(train), rng.permutation(test)


def make_synthetic(
    n_samples: int = 2000,
    n_features: int = 64,
    n_classes: int = 10,
    seed: int = 0,
    *,
    class_sep: float = 3.0,
    test_fraction: float = TEST_FRACTION,
) -> Dataset:
    """Generate a classification dataset of any size, for benchmarks with large models.

    Each class has a random centre; its examples are that centre plus standard Gaussian
    noise in every feature. Centres are drawn so that two of them lie about ``class_sep``
    apart whatever ``n_features`` is, which keeps the task learnable (and not trivial) as
    the dimension grows. Classes are balanced to within one example.

    Args:
        n_samples: total examples, split into training and test; at least
            ``2 * n_classes`` so that both splits hold every class.
        n_features: features per example, >= 1.
        n_classes: labels, >= 2.
        seed: seed of the generator and of the train/test split.
        class_sep: typical distance between two class centres, > 0.
        test_fraction: share held out for testing, in ``(0, 1)``.

    Raises:
        ConfigError: on sizes that cannot work (the message names them).
    """
    _check_int("n_features", n_features, 1)
    _check_int("n_classes", n_classes, 2)
    _check_int("n_samples", n_samples, 2 * n_classes)
    if not (np.isfinite(class_sep) and class_sep > 0):
        raise ConfigError(f"class_sep must be a positive finite number, got {class_sep}")
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_classes, n_features)) * (class_sep / np.sqrt(2 * n_features))
    y = rng.permutation(np.arange(n_samples) % n_classes)
    x = centres[y] + rng.standard_normal((n_samples, n_features))
    return _finish("synthetic", x, y, int(n_classes), None, test_fraction, seed, standardise=True)


def _finish(
    name: str,
    x: NDArray[np.floating],
    y: NDArray[np.integer],
    n_classes: int,
    image_shape: tuple[int, int] | None,
    test_fraction: float,
    seed: int,
    *,
    standardise: bool,
) -> Dataset:
    test_fraction = float(test_fraction)
    n_test = int(np.ceil(test_fraction * len(y))) if 0 < test_fraction < 1 else 0
    if not (n_classes <= n_test <= len(y) - n_classes):
        raise ConfigError(
            f"test_fraction must leave at least {n_classes} examples in each split of "
            f"{name} ({len(y)} examples); got {test_fraction}"
        )
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    train, test = _stratified_split(cast(IntArray, y), n_test, seed)
    x_tr, x_te, y_tr, y_te = x[train], x[test], y[train], y[test]
    if standardise:
        mean = x_tr.mean(axis=0)
        std = x_tr.std(axis=0)
        std[std == 0] = 1.0
        x_tr = (x_tr - mean) / std
        x_te = (x_te - mean) / std
    return Dataset(
        name=name,
        x_train=np.ascontiguousarray(x_tr, dtype=np.float32),
        y_train=np.ascontiguousarray(y_tr, dtype=np.int64),
        x_test=np.ascontiguousarray(x_te, dtype=np.float32),
        y_test=np.ascontiguousarray(y_te, dtype=np.int64),
        n_classes=n_classes,
        image_shape=image_shape,
    )


#: The columns of ``diabetes``, in order (scikit-learn's names).
DIABETES_FEATURES: tuple[str, ...] = ("age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5",
                                      "s6")


def _load_diabetes(test_fraction: float, seed: int) -> Dataset:
    """scikit-learn's diabetes table in raw units, read from the files in its wheel (what
    ``load_diabetes(scaled=False)`` reads), the label being progression above the median.

    Raises:
        ConfigError: scikit-learn (the data files) is not installed, or they do not parse.
    """
    import gzip
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("sklearn")  # locates the package; does not import it
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("dataset 'diabetes' ships with scikit-learn, which is not installed; "
                          "install secagg[fl] or use --dataset synthetic")
    data = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"
    try:
        with gzip.open(data / "diabetes_data_raw.csv.gz", "rt", encoding="utf-8") as fh:
            x = np.loadtxt(fh, dtype=np.float64, ndmin=2)
        with gzip.open(data / "diabetes_target.csv.gz", "rt", encoding="utf-8") as fh:
            target = np.loadtxt(fh, dtype=np.float64, ndmin=1)
        if x.shape != (len(target), len(DIABETES_FEATURES)):
            raise ValueError(f"expected {len(target)} rows of {len(DIABETES_FEATURES)} values, "
                             f"got {x.shape}")
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read dataset 'diabetes' from {data}: {exc}") from None
    y = (target > np.median(target)).astype(np.int64)
    return _finish("diabetes", x, y, 2, None, test_fraction, seed, standardise=True)
