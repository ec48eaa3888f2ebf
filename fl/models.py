"""Small torch models for the bundled datasets.

Every model takes a float32 batch of shape ``(n, n_features)`` (images arrive flattened, as
:mod:`fl.data` stores them) and returns logits of shape ``(n, n_classes)``; the loss is
cross-entropy, also for the binary breast-cancer task (two logits).

Defaults, kept small because DP noise grows with the number of parameters:

========================  ==========  ==================================
dataset                   kind        parameters
========================  ==========  ==================================
``breast_cancer``         ``linear``  62 (logistic regression)
``diabetes``              ``linear``  22 (logistic regression)
``digits``                ``mlp``     2,410 (one hidden layer of 32)
``synthetic`` (defaults)  ``mlp``     4,810 (one hidden layer of 64)
========================  ==========  ==================================

``make_model(ds, kind="cnn")`` gives a two-layer CNN for ``digits``; ``hidden`` sets the
width of each hidden layer (``mlp``) or the channels of each convolution (``cnn``), so
``make_model(make_synthetic(n_features=1024), hidden=(1024, 1024))`` builds a model of two
million parameters for benchmarks.
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral

import torch
from torch import nn

from fl.data import Dataset, load_dataset
from secagg.errors import ConfigError

__all__ = ["CNN", "MLP", "MODEL_KINDS", "LinearModel", "make_model"]

#: Values accepted for ``make_model(kind=...)``.
MODEL_KINDS: tuple[str, ...] = ("linear", "mlp", "cnn")

_DEFAULTS: dict[str, tuple[str, tuple[int, ...]]] = {
    "breast_cancer": ("linear", ()),
    "diabetes": ("linear", ()),
    "digits": ("mlp", (32,)),
    "synthetic": ("mlp", (64,)),
}
_DEFAULT_WIDTHS = {"mlp": (64,), "cnn": (8, 16)}


class LinearModel(nn.Module):
    """Multinomial logistic regression: one linear layer to the logits."""

    def __init__(self, n_features: int, n_classes: int) -> None:
        super().__init__()
        self.linear = nn.Linear(n_features, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.linear(x)
        return out


class MLP(nn.Module):
    """A multilayer perceptron with ReLU between fully connected layers."""

    def __init__(self, n_features: int, hidden: Sequence[int], n_classes: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = n_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, n_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x)
        return out


class CNN(nn.Module):
    """3x3 convolutions (ReLU, then 2x2 max-pooling while the image is large enough)
    followed by one linear layer, for one-channel images given as flattened rows."""

    def __init__(
        self, image_shape: tuple[int, int], channels: Sequence[int], n_classes: int
    ) -> None:
        super().__init__()
        self.image_shape = image_shape
        height, width = image_shape
        layers: list[nn.Module] = []
        prev = 1
        for c in channels:
            layers += [nn.Conv2d(prev, c, kernel_size=3, padding=1), nn.ReLU()]
            if height >= 2 and width >= 2:
                layers.append(nn.MaxPool2d(2))
                height, width = height // 2, width // 2
            prev = c
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(prev * height * width, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.features(x.view(-1, 1, *self.image_shape))
        out: torch.Tensor = self.head(z.flatten(1))
        return out


def _widths(hidden: int | Sequence[int] | None) -> tuple[int, ...] | None:
    if hidden is None:
        return None
    try:
        seq = (hidden,) if isinstance(hidden, int) else tuple(hidden)
    except TypeError:
        raise ConfigError(f"hidden must be an int or a sequence of ints, got {hidden!r}") from None
    if seq == (0,):
        return ()
    if any(isinstance(h, bool) or not isinstance(h, Integral) or h < 1 for h in seq):
        raise ConfigError(f"hidden widths must be integers >= 1, got {hidden!r}")
    return tuple(int(h) for h in seq)


def make_model(
    dataset: Dataset | str,
    hidden: int | Sequence[int] | None = None,
    *,
    kind: str | None = None,
    seed: int = 0,
) -> nn.Module:
    """Build a freshly initialised model that fits ``dataset``.

    Args:
        dataset: a :class:`fl.data.Dataset`, or the name of one (loaded to read its sizes).
        hidden: hidden widths (``mlp``) or convolution channels (``cnn``): an int or a
            sequence of ints. ``0`` or ``()`` means no hidden layer (``linear``). ``None``
            takes the dataset's default.
        kind: one of :data:`MODEL_KINDS`; ``None`` picks the dataset's default, or ``mlp``
            when ``hidden`` is given.
        seed: seed of the weight initialisation. Torch's global random state is left as
            it was.

    Raises:
        ConfigError: on an unknown kind (the valid ones are listed), bad widths, ``cnn``
            for a dataset that is not made of images, or an unknown dataset name.
    """
    ds = load_dataset(dataset) if isinstance(dataset, str) else dataset
    widths = _widths(hidden)
    if kind is None:
        if widths is None:
            kind, widths = _DEFAULTS.get(ds.name, ("mlp", (64,)))
        else:
            kind = "mlp" if widths else "linear"
    if kind not in MODEL_KINDS:
        raise ConfigError(f"unknown model kind {kind!r}; choose one of: {', '.join(MODEL_KINDS)}")
    if kind == "linear" and widths:
        raise ConfigError(f"kind='linear' has no hidden layers; got hidden={hidden!r}")
    if kind != "linear" and not widths:
        widths = _DEFAULT_WIDTHS[kind]
    image_shape = ds.image_shape
    if kind == "cnn" and image_shape is None:
        raise ConfigError(f"kind='cnn' needs an image dataset (digits); {ds.name} is tabular")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if kind == "linear":
            return LinearModel(ds.n_features, ds.n_classes)
        if kind == "mlp" or image_shape is None:
            return MLP(ds.n_features, widths or (), ds.n_classes)
        return CNN(image_shape, widths or (), ds.n_classes)
