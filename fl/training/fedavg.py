"""Local training, evaluation, the FedAvg step, client weights and client sampling.

One round of FedAvg as the drivers run it::

    ids = sample_clients(n_clients, "poisson", q, rng_seed=round_seed)
    for i in ids:                                  # on each client
        delta, n_i, metrics = local_train(mv, shards[i], epochs, lr, batch_size, seed,
                                          weights=global_vector)
        w_i = cap_weights([n_i], max_weight)[0]
        # fl.training.payload.client_vector(delta, metrics, clip) goes through the secure sum,
        # weighted by w_i
    global_vector = fedavg_step(global_vector, summed_w_delta, summed_w, server_lr)

The server only ever sees the sums (of ``w_i * delta_i``, of ``w_i`` and of the weighted
metrics), which is why :func:`fedavg_step` and :func:`fl.training.payload.metrics_from_sum` take
sums and never a list of client updates. The layout of what a client sends is
:mod:`fl.training.payload`'s.

Sampling matches the privacy accountant: ``"poisson"`` takes each client independently with
probability ``q`` (Poisson subsampling), ``"fixed"`` takes exactly ``k`` distinct clients
(sampling without replacement).
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any, Protocol

import numpy as np
from numpy.typing import ArrayLike, NDArray

from fl.training import linear
from fl.training.linear import LinearModel
from fl.training.model import Model, ModelVector
from secagg.errors import ConfigError

__all__ = [
    "SAMPLING_MODES",
    "cap_weights",
    "evaluate",
    "fedavg_step",
    "local_train",
    "sample_clients",
]

#: Values accepted for ``sample_clients(mode=...)``.
SAMPLING_MODES: tuple[str, ...] = ("poisson", "fixed")


class Examples(Protocol):
    """Anything with features ``x`` (float, 2-D) and integer labels ``y``: a
    :class:`fl.training.data.Shard`, for instance."""

    @property
    def x(self) -> NDArray[np.floating]: ...

    @property
    def y(self) -> NDArray[np.integer]: ...


def _arrays(data: Examples) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    x = np.ascontiguousarray(data.x, dtype=np.float32)
    y = np.ascontiguousarray(data.y, dtype=np.int64)
    if x.ndim != 2 or y.ndim != 1 or x.shape[0] != y.shape[0]:
        raise ConfigError(
            f"data must hold x of shape (n, features) and y of shape (n,); "
            f"got {x.shape} and {y.shape}"
        )
    if y.shape[0] == 0:
        raise ConfigError("data holds no examples")
    return x, y


def _check_positive_int(label: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or int(value) < 1:
        raise ConfigError(f"{label} must be an integer >= 1, got {value!r}")
    return int(value)


def _check_positive_real(label: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ConfigError(f"{label} must be a positive number, got {value!r}")
    v = float(value)
    if not (math.isfinite(v) and v > 0):
        raise ConfigError(f"{label} must be a positive finite number, got {v}")
    return v


def _backend(model: Model) -> Any:
    """The module that trains and evaluates ``model``: :mod:`fl.training.linear` for the numpy
    linear model, :mod:`fl.training.nets` (and torch with it) for a torch module. Both have
    ``sgd(model, x, y, orders, lr=, batch_size=, momentum=)`` and ``evaluate(model, x, y,
    batch_size)``, returning ``(loss_sum, correct)``."""
    if isinstance(model, LinearModel):
        return linear
    from fl.training import nets

    return nets


def local_train(
    model: Model | ModelVector,
    data: Examples,
    epochs: int = 1,
    lr: float = 0.1,
    batch_size: int = 32,
    seed: int = 0,
    *,
    weights: NDArray[np.floating] | None = None,
    momentum: float = 0.0,
) -> tuple[NDArray[np.float32], int, dict[str, float]]:
    """Train a client's model on its own data with minibatch SGD and return the update.

    Args:
        model: the model, or a :class:`fl.training.model.ModelVector` around it (pass one to reuse
            its buffer across calls). It is trained in place and left holding the
            locally trained weights.
        data: the client's examples (a :class:`fl.training.data.Shard`).
        epochs: passes over ``data``, >= 1.
        lr: SGD learning rate, > 0.
        batch_size: examples per step, >= 1 (the last batch of an epoch may be smaller).
        seed: seed of the per-epoch shuffles; the same seed gives the same update.
        weights: the global model as a flat vector, loaded before training. ``None``
            trains from whatever weights the model holds.
        momentum: SGD momentum, in ``[0, 1)``.

    Returns:
        ``(delta, n_examples, metrics)``: ``delta`` is ``new - old`` as a fresh float32
        vector; ``n_examples`` is ``len(data)``; ``metrics`` holds the mean cross-entropy
        ``loss`` and the ``accuracy`` over the last epoch's batches.

    Raises:
        ConfigError: on a bad hyperparameter, empty data, a ``weights`` vector of the
            wrong size, or training that diverged (NaN or infinite loss).
    """
    epochs = _check_positive_int("epochs", epochs)
    batch_size = _check_positive_int("batch_size", batch_size)
    lr = _check_positive_real("lr", lr)
    if not (isinstance(momentum, Real) and 0.0 <= float(momentum) < 1.0):
        raise ConfigError(f"momentum must be in [0, 1), got {momentum!r}")
    mv = model if isinstance(model, ModelVector) else ModelVector(model)
    x, y = _arrays(data)
    n = int(y.shape[0])
    if weights is not None:
        mv.from_vector(weights)
    start = mv.to_vector().copy()  # the one allocation: it becomes the returned delta

    rng = np.random.default_rng(seed)
    orders = [rng.permutation(n) for _ in range(epochs)]
    loss_sum, correct = _backend(mv.model).sgd(mv.model, x, y, orders, lr=lr,
                                               batch_size=batch_size, momentum=float(momentum))
    if not math.isfinite(loss_sum):
        raise ConfigError(f"local training diverged (loss is {loss_sum}); lower lr={lr}")

    np.subtract(mv.to_vector(), start, out=start)
    delta = start
    if not math.isfinite(float(delta.sum(dtype=np.float64))):
        raise ConfigError(f"local training diverged (update holds NaN or inf); lower lr={lr}")
    return delta, n, {"loss": loss_sum / n, "accuracy": correct / n}


def evaluate(
    model: Model | ModelVector, data: Examples, batch_size: int = 4096
) -> dict[str, float]:
    """Mean cross-entropy loss and accuracy of ``model`` on ``data``, without training.

    Returns:
        ``{"loss": float, "accuracy": float, "n_examples": float}``.

    Raises:
        ConfigError: on empty data or a bad ``batch_size``.
    """
    batch_size = _check_positive_int("batch_size", batch_size)
    net = model.model if isinstance(model, ModelVector) else model
    x, y = _arrays(data)
    n = int(y.shape[0])
    loss_sum, correct = _backend(net).evaluate(net, x, y, batch_size)
    return {"loss": loss_sum / n, "accuracy": correct / n, "n_examples": float(n)}


def fedavg_step(
    global_vector: NDArray[np.floating],
    aggregate_sum: NDArray[np.floating],
    total_weight: float,
    server_lr: float = 1.0,
    *,
    out: NDArray[np.float32] | None = None,
) -> NDArray[np.float32]:
    """Apply one weighted FedAvg step from the decoded secure sum.

    Computes ``global + server_lr * aggregate_sum / total_weight``, where
    ``aggregate_sum`` is the sum over clients of ``w_i * delta_i`` and ``total_weight`` is
    the sum of the ``w_i`` (both as decoded, possibly with DP noise).

    Args:
        global_vector: the current global model, 1-D.
        aggregate_sum: the summed weighted updates, same shape.
        total_weight: the summed weights, > 0.
        server_lr: server learning rate, > 0 (1.0 is plain FedAvg).
        out: float32 array to write the result into; it may be ``global_vector`` itself
            for an in-place step. ``None`` allocates a new one.

    Returns:
        The new global model as a float32 vector.

    Raises:
        ConfigError: on mismatched sizes (both are named), a non-positive or non-finite
            ``total_weight`` or ``server_lr``, or a non-finite result.
    """
    g = np.asarray(global_vector)
    a = np.asarray(aggregate_sum)
    if g.ndim != 1 or a.shape != g.shape:
        raise ConfigError(
            f"aggregate_sum has shape {a.shape} but global_vector has shape {g.shape}; "
            f"both must be 1-D of the same length"
        )
    tw = _check_positive_real("total_weight", total_weight)
    slr = _check_positive_real("server_lr", server_lr)
    if out is None:
        out = np.empty(g.shape, dtype=np.float32)
    elif out.dtype != np.float32 or out.shape != g.shape:
        raise ConfigError(f"out must be float32 of shape {g.shape}, got {out.dtype} {out.shape}")
    step = a * (slr / tw)  # computed before writing, so out may alias global_vector
    np.add(g, step, out=out, casting="same_kind")
    if not math.isfinite(float(out.sum(dtype=np.float64))):
        raise ConfigError("the FedAvg step produced NaN or infinity; check the decoded aggregate")
    return out


def cap_weights(counts: ArrayLike, max_weight: float | None) -> NDArray[np.float64]:
    """Client weights for weighted FedAvg: example counts, capped at ``max_weight``.

    The cap bounds one client's influence (and its sensitivity under DP), and keeps the
    weighted sum inside the encoding's headroom.

    Args:
        counts: examples per client, non-negative.
        max_weight: the largest weight any client gets, > 0; ``None`` means no cap.

    Returns:
        ``min(count, max_weight)`` for each client, as float64.

    Raises:
        ConfigError: on a non-positive or non-finite ``max_weight``, or a negative or
            non-finite count.
    """
    c = np.asarray(counts, dtype=np.float64)
    if c.size and not (np.all(np.isfinite(c)) and c.min() >= 0):
        raise ConfigError("example counts must be finite and >= 0")
    if max_weight is None:
        return c.copy()
    cap = _check_positive_real("max_weight", max_weight)
    return np.minimum(c, cap)


def sample_clients(
    n: int,
    mode: str = "poisson",
    rate_or_k: float = 1.0,
    rng_seed: int | np.random.Generator | None = None,
) -> list[int]:
    """Choose the clients that take part in a round.

    Args:
        n: number of clients to choose from, >= 1; they are ``0 .. n - 1``.
        mode: ``"poisson"`` (each client independently with probability ``rate_or_k``)
            or ``"fixed"`` (exactly ``rate_or_k`` distinct clients, uniformly).
        rate_or_k: the sampling rate ``q`` in ``(0, 1]`` for ``"poisson"``, or the count
            ``k`` in ``1 .. n`` for ``"fixed"``.
        rng_seed: an int seed, a ``numpy.random.Generator``, or ``None`` for OS entropy.
            Privacy amplification by sampling assumes the adversary cannot predict the
            sample, so real deployments pass ``None`` (or a secret seed).

    Returns:
        The chosen client indices, sorted. Poisson sampling may return an empty list; the
        round is then skipped, but the accountant must still count it.

    Raises:
        ConfigError: on an unknown mode (the valid ones are listed), or a rate or count
            out of range (the range is named).
    """
    n = _check_positive_int("n", n)
    if mode not in SAMPLING_MODES:
        raise ConfigError(
            f"unknown sampling mode {mode!r}; choose one of: {', '.join(SAMPLING_MODES)}"
        )
    rng = np.random.default_rng(rng_seed)
    if mode == "poisson":
        q = _check_positive_real("sampling rate", rate_or_k)
        if q > 1.0:
            raise ConfigError(f"the Poisson sampling rate must be in (0, 1], got {q}")
        return [int(i) for i in np.flatnonzero(rng.random(n) < q)]
    if (
        isinstance(rate_or_k, bool)
        or not isinstance(rate_or_k, Integral)
        or not (1 <= int(rate_or_k) <= n)
    ):
        raise ConfigError(f"fixed-size sampling needs an integer k in 1..{n}, got {rate_or_k!r}")
    return sorted(int(i) for i in rng.choice(n, size=int(rate_or_k), replace=False))
