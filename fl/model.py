"""A torch model's parameters as one flat float32 vector, and back.

The protocols aggregate flat vectors; torch trains modules. :class:`ModelVector` is the
bridge. It walks ``model.parameters()`` once, in their registration order, and keeps one
preallocated float32 buffer the size of the model, so moving weights in and out each round
allocates nothing beyond what torch itself needs.

The layout is the concatenation of every parameter flattened in row-major order. Only
parameters travel; buffers such as batch-norm running statistics do not (the models in
:mod:`fl.models` have none). Parameters shared between modules count once, as
``model.parameters()`` yields them once.
"""

from __future__ import annotations

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from secagg.errors import ConfigError

__all__ = ["ModelVector", "num_params"]


def num_params(model: nn.Module) -> int:
    """The number of scalar parameters of ``model``: the length of its flat vector."""
    return sum(p.numel() for p in model.parameters())


class ModelVector:
    """Moves a model's parameters to and from one flat float32 numpy vector.

    Args:
        model: the torch module whose parameters are read and written in place.

    Raises:
        ConfigError: if the model has no parameters.

    .. warning::
       ``to_vector()`` without ``out`` returns this object's own buffer, which the next
       call overwrites. Copy it (``.copy()``) if you need to keep it.
    """

    def __init__(self, model: nn.Module) -> None:
        params = list(model.parameters())
        if not params:
            raise ConfigError("the model has no parameters to turn into a vector")
        self.model = model
        self._params = params
        self._spans: list[tuple[int, int]] = []
        offset = 0
        for p in params:
            self._spans.append((offset, offset + p.numel()))
            offset += p.numel()
        #: Number of scalar parameters: the length of every vector in and out.
        self.size = offset
        #: Shape of each parameter, in vector order.
        self.shapes: tuple[tuple[int, ...], ...] = tuple(tuple(p.shape) for p in params)
        self._flat = torch.empty(self.size, dtype=torch.float32)
        self._buffer: NDArray[np.float32] = self._flat.numpy()  # shares memory with _flat

    def __len__(self) -> int:
        return self.size

    def __repr__(self) -> str:
        return f"ModelVector(size={self.size}, tensors={len(self._params)})"

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
        if out is None:
            target = self._flat
            result = self._buffer
        else:
            self._check_out(out)
            target = torch.from_numpy(out)
            result = out
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
