"""Multinomial logistic regression in numpy: the default model of the tabular datasets.

Why not torch: ``secagg run`` on ``breast_cancer`` trains 62 parameters, and importing torch
took longer than the five rounds of training and secure aggregation together. The model is one
matrix product and a softmax, so numpy does it in the same float32 arithmetic, and a run on a
linear model never loads torch (nor does a Flower ClientApp that trains one).

Layout and semantics are torch's ``nn.Linear(n_features, n_classes)`` followed by
``nn.CrossEntropyLoss``: the flat vector is the ``n_classes x n_features`` weights, row-major,
then the ``n_classes`` biases (what :class:`fl.training.model.ModelVector` moves, and what
:func:`fl.privacy.bolt_on.psgd_train` reads); the initialisation draws both uniformly from
``(-1/sqrt(n_features), 1/sqrt(n_features))``, torch's default for that layer (from numpy's
generator, so the values are not torch's); one SGD step is torch's (tests/test_fl_fedavg.py
checks the gradient and a trained update against torch autograd).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from secagg.errors import ConfigError

__all__ = ["LinearModel", "cross_entropy_grad", "evaluate", "sgd"]


class LinearModel:
    """Softmax regression whose parameters live in one flat float32 vector.

    Args:
        n_features, n_classes: the layer's input and output sizes, >= 1.
        seed: seed of the initialisation.

    Attributes:
        vector: the parameters, ``n_classes * (n_features + 1)`` float32 values.
        weight: ``(n_classes, n_features)`` view of ``vector``.
        bias: ``(n_classes,)`` view of ``vector``.
    """

    def __init__(self, n_features: int, n_classes: int, *, seed: int = 0) -> None:
        self.n_features, self.n_classes = int(n_features), int(n_classes)
        size = self.n_classes * (self.n_features + 1)
        bound = 1.0 / math.sqrt(self.n_features)
        rng = np.random.default_rng(seed)  # model initialisation, not a secret
        self.vector: NDArray[np.float32] = rng.uniform(-bound, bound, size).astype(np.float32)
        cut = self.n_classes * self.n_features
        self.weight = self.vector[:cut].reshape(self.n_classes, self.n_features)
        self.bias = self.vector[cut:]

    def __repr__(self) -> str:
        return f"LinearModel(n_features={self.n_features}, n_classes={self.n_classes})"

    def check_data(self, x: NDArray[np.floating], y: NDArray[np.integer]) -> None:
        """Refuse examples this model cannot take, naming what it takes.

        Raises:
            ConfigError: ``x`` without ``n_features`` columns, or a label outside
                ``0..n_classes-1``.
        """
        if x.shape[1] != self.n_features:
            raise ConfigError(f"the data has {x.shape[1]} features but the model takes "
                              f"{self.n_features}")
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= self.n_classes):
            raise ConfigError(f"labels must be in 0..{self.n_classes - 1} for this model, got "
                              f"{int(y.min())}..{int(y.max())}")

    def __call__(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        """The logits of a float32 batch ``(n, n_features)``: ``x @ weight.T + bias``."""
        out: NDArray[np.float32] = x @ self.weight.T
        out += self.bias
        return out


def _loss(logits: NDArray[np.floating], y: NDArray[np.integer]
          ) -> tuple[float, int, NDArray[np.floating], NDArray[np.floating]]:
    """``(loss_sum, correct, exp, total)``: the summed cross-entropy, the argmaxes equal to
    ``y``, the exponentials of the max-shifted logits and their row sums. ``logits`` is
    overwritten (shifted by its row maxima)."""
    correct = int((logits.argmax(axis=1) == y).sum())
    logits -= logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    total = e.sum(axis=1, keepdims=True)
    loss_sum = float((np.log(total[:, 0]) - logits[np.arange(len(y)), y]).sum(dtype=np.float64))
    return loss_sum, correct, e, total


def cross_entropy_grad(logits: NDArray[np.floating], y: NDArray[np.integer]
                       ) -> tuple[float, int, NDArray[np.floating]]:
    """Softmax cross-entropy of a batch, and its gradient with respect to the logits.

    Returns:
        ``(loss_sum, correct, g)``: the summed loss, how many argmaxes equal ``y``, and
        ``g = (softmax(logits) - onehot(y)) / batch``, the gradient of the *mean* loss.
        ``logits`` is overwritten.
    """
    loss_sum, correct, p, total = _loss(logits, y)
    p /= total
    p[np.arange(len(y)), y] -= 1
    p /= len(y)
    return loss_sum, correct, p


def sgd(model: LinearModel, x: NDArray[np.float32], y: NDArray[np.int64],
        orders: list[NDArray[np.int64]], *, lr: float, batch_size: int,
        momentum: float) -> tuple[float, int]:
    """Minibatch SGD in place, one pass per entry of ``orders`` (a permutation of the rows):
    ``p -= lr * g``, or with momentum ``b = g`` on the first step, then ``b = momentum * b +
    g`` and ``p -= lr * b`` (``torch.optim.SGD`` without dampening, decay or Nesterov).

    Returns:
        ``(loss_sum, correct)`` over the last pass's batches, before each step; a diverged
        run returns a non-finite loss (the caller reports it).

    Raises:
        ConfigError: data the model cannot take (:meth:`LinearModel.check_data`).
    """
    model.check_data(x, y)
    grad = np.empty_like(model.vector)
    gw = grad[: model.weight.size].reshape(model.weight.shape)
    gb = grad[model.weight.size :]
    buf: NDArray[np.float32] | None = None
    lr32 = np.float32(lr)
    loss_sum, correct = 0.0, 0
    with np.errstate(over="ignore", invalid="ignore"):
        for order in orders:
            loss_sum, correct = 0.0, 0
            for lo in range(0, len(order), batch_size):
                idx = order[lo : lo + batch_size]
                xb, yb = x[idx], y[idx]
                batch_loss, batch_correct, g = cross_entropy_grad(model(xb), yb)
                loss_sum += batch_loss
                correct += batch_correct
                np.matmul(g.T, xb, out=gw)
                g.sum(axis=0, out=gb)
                if momentum != 0.0:
                    if buf is None:
                        buf = grad.copy()
                    else:
                        buf *= np.float32(momentum)
                        buf += grad
                    step = buf
                else:
                    step = grad
                model.vector -= lr32 * step
    return loss_sum, correct


def evaluate(model: LinearModel, x: NDArray[np.float32], y: NDArray[np.int64],
             batch_size: int) -> tuple[float, int]:
    """``(loss_sum, correct)`` of ``model`` on ``(x, y)``, ``batch_size`` rows at a time (a
    diverged model gives a non-finite loss).

    Raises:
        ConfigError: data the model cannot take (:meth:`LinearModel.check_data`).
    """
    model.check_data(x, y)
    loss_sum, correct = 0.0, 0
    with np.errstate(over="ignore", invalid="ignore"):
        for lo in range(0, len(y), batch_size):
            batch_loss, batch_correct, _, _ = _loss(model(x[lo : lo + batch_size]),
                                                    y[lo : lo + batch_size])
            loss_sum += batch_loss
            correct += batch_correct
    return loss_sum, correct
