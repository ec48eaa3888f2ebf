"""The client payload: what one client puts into the secure sum, and how the released sum is
read back. The only module that knows the layout.

A client vector has :func:`vector_dim` ``= d + 2`` coordinates for a model of ``d``
parameters (the encoding appends the client's weight as one more, and multiplies the whole
vector by it)::

    [0, d)   the model update, L2-clipped to ``clip`` and scaled by ``WIRE_NORM / clip``:
             norm at most :data:`WIRE_NORM` on the wire
    d        METRIC_SCALE * min(loss, LOSS_CAP) / LOSS_CAP      (loss over the last epoch)
    d + 1    METRIC_SCALE * accuracy                             (accuracy over the last epoch)

Its L2 norm is at most :data:`PAYLOAD_NORM` ``= sqrt(WIRE_NORM^2 + 2 METRIC_SCALE^2)``, the
clip the run's encoding uses, so the encoding never cuts anything. Under DP the metrics are
covered by the same noise and the same DP event as the update: one release per round.

:func:`client_vector` builds one client's vector (:func:`metrics_vector` its metric part);
:func:`read_sum` splits a released sum back into the update sum (still in wire units: the
FedAvg step scales it back by :func:`model_scale`) and the weighted mean metrics
(:func:`metrics_from_sum`), clamped to their ranges (post-processing).

Nothing here keeps a vector: the functions map arrays to arrays.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from numbers import Real

import numpy as np
from numpy.typing import NDArray

from secagg.encoding import clip_l2
from secagg.errors import ConfigError

__all__ = [
    "LOSS_CAP",
    "METRIC_NAMES",
    "METRIC_SCALE",
    "PAYLOAD_NORM",
    "WIRE_NORM",
    "ReleasedSum",
    "client_vector",
    "metric_noise_std",
    "metrics_from_sum",
    "metrics_vector",
    "model_scale",
    "read_sum",
    "vector_dim",
    "wire_scale",
]

#: L2 norm a clipped update has on the wire: updates are clipped to ``clip`` and then scaled
#: by ``WIRE_NORM / clip``. The encoding adds the weight as one more coordinate, of size
#: ``w`` next to the update's ``w * WIRE_NORM``, and DP noise is calibrated to both; a wire
#: norm well above 1 keeps the weight's share of the sensitivity small (3% here).
WIRE_NORM = 4.0
#: Upper bound on the loss a client reports (cross-entropy above it is reported as it).
LOSS_CAP = 4.0
#: Largest value of a metric coordinate in a client's vector.
METRIC_SCALE = 1.0
#: The client metrics that travel through the secure sum, in vector order.
METRIC_NAMES: tuple[str, ...] = ("loss", "accuracy")
#: The largest L2 norm of a client vector: the clip of the run's encoding.
PAYLOAD_NORM = math.sqrt(WIRE_NORM**2 + len(METRIC_NAMES) * METRIC_SCALE**2)


def vector_dim(model_dim: int) -> int:
    """The length of a client vector for a model of ``model_dim`` parameters."""
    return model_dim + len(METRIC_NAMES)


def wire_scale(clip: float) -> float:
    """``WIRE_NORM / clip``: what a clipped update is multiplied by on the way in."""
    return WIRE_NORM / clip


def model_scale(clip: float) -> float:
    """``clip / WIRE_NORM``: multiply the released update sum by it for model units."""
    return clip / WIRE_NORM


def client_vector(update: NDArray[np.floating], metrics: Mapping[str, float] | None,
                  clip: float) -> NDArray[np.float64]:
    """One client's vector: ``update`` clipped to ``clip`` and scaled to the wire norm, then
    its two bounded metrics (zeros when ``metrics`` is None: nothing to report).

    Raises:
        ConfigError: a metric missing or not finite.
    """
    if metrics is None:
        tail = np.zeros(len(METRIC_NAMES))
    else:
        bounded = {"loss": min(max(metrics["loss"], 0.0), LOSS_CAP) / LOSS_CAP,
                   "accuracy": min(max(metrics["accuracy"], 0.0), 1.0)}
        tail = metrics_vector(bounded, METRIC_SCALE)
    clipped, _ = clip_l2(update, clip)
    clipped *= wire_scale(clip)
    return np.concatenate([clipped, tail])


def metrics_vector(metrics: Mapping[str, float], weight: float) -> NDArray[np.float64]:
    """Metrics scaled by ``weight``, ready to go through the secure sum.

    Returns ``[weight * metrics[name] for name in METRIC_NAMES]``, so the server learns
    only the weighted sums, as it does for the model update.

    Raises:
        ConfigError: if a metric in :data:`METRIC_NAMES` is missing or not finite.
    """
    missing = [m for m in METRIC_NAMES if m not in metrics]
    if missing:
        raise ConfigError(f"metrics lack {', '.join(missing)}; need: {', '.join(METRIC_NAMES)}")
    v = np.array([float(metrics[m]) for m in METRIC_NAMES], dtype=np.float64) * float(weight)
    if not np.all(np.isfinite(v)):
        raise ConfigError(f"metrics must be finite, got {dict(metrics)}")
    return v


def metrics_from_sum(
    summed: Sequence[float] | NDArray[np.floating], total_weight: float
) -> dict[str, float]:
    """Weighted means of the clients' metrics from their secure sum.

    Args:
        summed: the sum over clients of :func:`metrics_vector`.
        total_weight: the sum of the clients' weights, > 0.

    Returns:
        ``{name: mean}`` for each name in :data:`METRIC_NAMES`.

    Raises:
        ConfigError: on a wrong length or a non-positive ``total_weight``.
    """
    s = np.asarray(summed, dtype=np.float64)
    if s.shape != (len(METRIC_NAMES),):
        raise ConfigError(
            f"summed metrics must have {len(METRIC_NAMES)} values, got shape {s.shape}"
        )
    if isinstance(total_weight, bool) or not isinstance(total_weight, Real):
        raise ConfigError(f"total_weight must be a positive number, got {total_weight!r}")
    tw = float(total_weight)
    if not (math.isfinite(tw) and tw > 0):
        raise ConfigError(f"total_weight must be a positive finite number, got {tw}")
    return {name: float(value / tw) for name, value in zip(METRIC_NAMES, s)}


@dataclass(frozen=True)
class ReleasedSum:
    """A released sum, read back.

    Attributes:
        update: the sum of the clients' weighted updates, in wire units (a view of the
            released sum; multiply by :func:`model_scale` for model units).
        train_loss: the weighted mean loss, clamped to ``[0, LOSS_CAP]``.
        train_accuracy: the weighted mean accuracy, clamped to ``[0, 1]``.
    """

    update: NDArray[np.float64]
    train_loss: float
    train_accuracy: float


def read_sum(summed: NDArray[np.float64], total_weight: float, model_dim: int) -> ReleasedSum:
    """Split a released sum of client vectors (``AggregateResult.sum``) into the update sum
    and the mean train metrics over ``total_weight``.

    Raises:
        ConfigError: a sum that is not :func:`vector_dim` long, or a non-positive weight.
    """
    if summed.shape != (vector_dim(model_dim),):
        raise ConfigError(f"a released sum for a model of {model_dim} parameters has "
                          f"{vector_dim(model_dim)} values, got shape {summed.shape}")
    train = metrics_from_sum(summed[model_dim:] / METRIC_SCALE, total_weight)
    return ReleasedSum(summed[:model_dim],
                       min(max(train["loss"], 0.0), 1.0) * LOSS_CAP,
                       min(max(train["accuracy"], 0.0), 1.0))


def metric_noise_std(sigma: float, total_weight: float) -> float:
    """The standard deviation of the noise in a decoded mean metric, for noise of ``sigma``
    (in float units) in each coordinate of the released sum."""
    return sigma / (total_weight * METRIC_SCALE)
