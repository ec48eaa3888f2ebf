"""The models for the bundled datasets, and a model's parameters as one flat float32 vector
and back.

Models
------

Every model takes a float32 batch of shape ``(n, n_features)`` (images arrive flattened, as
:mod:`fl.training.data` stores them) and returns logits of shape ``(n, n_classes)``; the loss is
cross-entropy, also for the binary breast-cancer task (two logits). ``linear`` is numpy
(:class:`fl.training.linear.LinearModel`: a run on it never imports torch); ``mlp`` and ``cnn``
are torch modules (:mod:`fl.training.nets`, imported when one is built).

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

Parameters as a vector
----------------------

The protocols aggregate flat vectors; torch trains modules. :class:`ModelVector` is the
bridge. It walks ``model.parameters()`` once, in their registration order, and keeps one
preallocated float32 buffer the size of the model, so moving weights in and out each round
allocates nothing beyond what torch itself needs. A :class:`~fl.training.linear.LinearModel`
already keeps its parameters as such a vector (weights row-major, then biases: the layout of
torch's ``nn.Linear``).

The layout is the concatenation of every parameter flattened in row-major order. Only
parameters travel; buffers such as batch-norm running statistics do not (the models above have
none). Parameters shared between modules count once, as
``model.parameters()`` yields them once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from numbers import Integral
from typing import TYPE_CHECKING, Any, Union

import numpy as np
from numpy.typing import NDArray

from fl.training.data import Dataset, load_dataset
from fl.training.linear import LinearModel
from secagg.errors import ConfigError

if TYPE_CHECKING:  # torch loads with an mlp or cnn, not with this module
    import torch
    from torch import nn

__all__ = ["MODEL_KINDS", "LinearModel", "Model", "ModelVector", "make_model", "num_params"]

#: What :func:`make_model` returns and :class:`ModelVector` wraps: the numpy linear model or
#: any torch module.
Model = Union[LinearModel, "nn.Module"]

#: Values accepted for ``make_model(kind=...)``.
MODEL_KINDS: tuple[str, ...] = ("linear", "mlp", "cnn")

_DEFAULTS: dict[str, tuple[str, tuple[int, ...]]] = {
    "breast_cancer": ("linear", ()),
    "diabetes": ("linear", ()),
    "digits": ("mlp", (32,)),
    "synthetic": ("mlp", (64,)),
}
_DEFAULT_WIDTHS = {"mlp": (64,), "cnn": (8, 16)}


def __getattr__(name: str) -> Any:  # MLP and CNN used to live here
    if name in ("MLP", "CNN"):
        from fl.training import nets

        return getattr(nets, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _widths(hidden: int | Sequence[int] | None) -> tuple[int, ...] | None:
    if hidden is None:
        return None
    if isinstance(hidden, int):
        seq: tuple[object, ...] = (hidden,)
    elif isinstance(hidden, Iterable) and not isinstance(hidden, (str, bytes)):
        seq = tuple(hidden)
    else:
        raise ConfigError(f"hidden must be an int or a sequence of ints, got {hidden!r}")
    if seq == (0,):
        return ()
    widths = [h for h in seq if isinstance(h, Integral) and not isinstance(h, bool)]
    if len(widths) != len(seq) or any(h < 1 for h in widths):
        raise ConfigError(f"hidden widths must be integers >= 1, got {hidden!r}")
    return tuple(int(h) for h in widths)


def make_model(
    dataset: Dataset | str,
    hidden: int | Sequence[int] | None = None,
    *,
    kind: str | None = None,
    seed: int = 0,
) -> Model:
    """Build a freshly initialised model that fits ``dataset``.

    Args:
        dataset: a :class:`fl.training.data.Dataset`, or the name of one (loaded to read its sizes).
        hidden: hidden widths (``mlp``) or convolution channels (``cnn``): an int or a
            sequence of ints. ``0`` or ``()`` means no hidden layer (``linear``). ``None``
            takes the dataset's default.
        kind: one of :data:`MODEL_KINDS`; ``None`` picks the dataset's default, or ``mlp``
            when ``hidden`` is given.
        seed: seed of the weight initialisation. Torch's global random state is left as
            it was (a linear model does not touch torch at all).

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
    if kind == "linear":
        return LinearModel(ds.n_features, ds.n_classes, seed=seed)
    try:
        import torch

        from fl.training.nets import CNN, MLP
    except ImportError as exc:
        if exc.name is None or exc.name.split(".")[0] != "torch":
            raise
        raise ConfigError(f"the {kind} model needs torch: pip install 'secagg[fl]'; the "
                          "linear model does not (--model linear, the default on "
                          "breast_cancer and diabetes)") from exc

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if kind == "mlp" or image_shape is None:
            return MLP(ds.n_features, widths or (), ds.n_classes)
        return CNN(image_shape, widths or (), ds.n_classes)


def num_params(model: Model) -> int:
    """The number of scalar parameters of ``model``: the length of its flat vector."""
    if isinstance(model, LinearModel):
        return model.vector.size
    return sum(p.numel() for p in model.parameters())


class ModelVector:
    """Moves a model's parameters to and from one flat float32 numpy vector.

    Args:
        model: the :class:`~fl.training.linear.LinearModel` or torch module whose parameters
            are read and written in place.

    Raises:
        ConfigError: if the model has no parameters.

    .. warning::
       ``to_vector()`` without ``out`` returns this object's own buffer, which the next
       call overwrites. Copy it (``.copy()``) if you need to keep it.
    """

    def __init__(self, model: Model) -> None:
        self.model = model
        #: Number of scalar parameters: the length of every vector in and out.
        self.size: int
        #: Shape of each parameter, in vector order.
        self.shapes: tuple[tuple[int, ...], ...]
        self._buffer: NDArray[np.float32]
        self._params: list[torch.Tensor] = []
        if isinstance(model, LinearModel):  # its parameters already are one vector
            self.size = model.vector.size
            self.shapes = (model.weight.shape, model.bias.shape)
            self._buffer = np.empty(self.size, dtype=np.float32)
            return
        import torch

        self._params = list(model.parameters())
        if not self._params:
            raise ConfigError("the model has no parameters to turn into a vector")
        self._spans: list[tuple[int, int]] = []
        offset = 0
        for p in self._params:
            self._spans.append((offset, offset + p.numel()))
            offset += p.numel()
        self.size = offset
        self.shapes = tuple(tuple(p.shape) for p in self._params)
        self._flat = torch.empty(self.size, dtype=torch.float32)
        self._buffer = self._flat.numpy()  # shares memory with _flat

    def __len__(self) -> int:
        return self.size

    def __repr__(self) -> str:
        return f"ModelVector(size={self.size}, tensors={len(self.shapes)})"

    def to_vector(self, out: NDArray[np.float32] | None = None) -> NDArray[np.float32]:
        """Copy the model's current parameters into a flat float32 vector.

        Args:
            out: a writable, C-contiguous float32 array of shape ``(size,)`` to fill. If
                ``None``, the object's own reused buffer is filled and returned.

        Returns:
            ``out``, or the internal buffer (valid until the next call on this object).

        Raises:
            ConfigError: if ``out`` has the wrong size.
            TypeError: if ``out`` is not a writable C-contiguous float32 numpy array.
        """
        if out is not None:
            self._check_out(out)
        result = self._buffer if out is None else out
        if isinstance(self.model, LinearModel):
            np.copyto(result, self.model.vector)
            return result
        import torch

        target = self._flat if out is None else torch.from_numpy(out)
        with torch.no_grad():
            for (lo, hi), p in zip(self._spans, self._params):
                target[lo:hi].view(p.shape).copy_(p.detach())
        return result

    def from_vector(self, vector: NDArray[np.floating]) -> None:
        """Write a flat vector into the model's parameters, in place.

        The exact inverse of :meth:`to_vector` for float32 input. Other float dtypes are
        rounded to float32 on the way in.

        Args:
            vector: a 1-D floating-point array of length :attr:`size`, all finite.

        Raises:
            ConfigError: if the length differs from the model's size (both are named), or
                the vector holds NaN or infinity.
            TypeError: if ``vector`` is not a floating-point array.
        """
        vec = np.asarray(vector)
        if vec.dtype.kind != "f":
            raise TypeError(f"vector must hold floats, got dtype {vec.dtype}")
        if vec.ndim != 1 or vec.shape[0] != self.size:
            raise ConfigError(
                f"vector has shape {vec.shape} ({vec.size} values) but the model has "
                f"{self.size} parameters"
            )
        if not np.isfinite(vec.sum(dtype=np.float64)):
            raise ConfigError("vector holds NaN or infinity; refusing to load it into the model")
        if vec is not self._buffer:
            np.copyto(self._buffer, vec, casting="same_kind")
        if isinstance(self.model, LinearModel):
            np.copyto(self.model.vector, self._buffer)
            return
        import torch

        with torch.no_grad():
            for (lo, hi), p in zip(self._spans, self._params):
                p.copy_(self._flat[lo:hi].view(p.shape))

    def _check_out(self, out: NDArray[np.float32]) -> None:
        if not isinstance(out, np.ndarray) or out.dtype != np.float32:
            raise TypeError("out must be a float32 numpy array")
        if not (out.flags.c_contiguous and out.flags.writeable):
            raise TypeError("out must be writable and C-contiguous")
        if out.ndim != 1 or out.shape[0] != self.size:
            raise ConfigError(
                f"out has shape {out.shape} ({out.size} values) but the model has "
                f"{self.size} parameters"
            )
