"""Bolt-on DP in federated training: ``secagg run --dp-mode bolt-on``.

What each party does in a round
-------------------------------
1. Every cohort member clips each of its records' features to L2 norm ``R``
   (``--bolt-on-norm``; a per-record map, so it needs no privacy) and trains the global
   logistic-regression model on its own ``m_i`` records with exact permutation SGD
   (:func:`psgd_train`): ``epochs`` passes, each a fresh permutation dealt into ``n_b =
   ceil(m_i / batch_size)`` near-equal batches, softmax cross-entropy plus ``(lambda / 2)
   |w|^2``, no momentum, and the step of :mod:`secagg.dp.bolt_on` (``min(1/beta,
   1/(lambda t))`` when ``lambda > 0``, else the constant ``--lr <= 2/beta``).
2. Its update ``u_i = w_i' - w`` goes through the usual pipeline
   (:func:`fl.training.payload.client_vector`): L2 clip to ``clip`` (a projection: it never
   increases the distance between two updates), scaling by ``WIRE_NORM / clip``, weight ``c_i =
   min(m_i, max_weight)``; its two metric coordinates are sent as zeros (they are not
   covered by the bound).
3. The decoding party adds the discrete Gaussian once to the decoded integer sum, before it
   releases it (:class:`secagg.dp.BoltOnGaussian` in :class:`fl.privacy.rounds.CentralDPHook`), and
   returns its Gaussian event in the result; :meth:`fl.privacy.rounds.RoundPrivacy.settle` charges
   it to the ledger after the round, as for every mode.
4. The server takes the FedAvg step ``w += server_lr * (clip / WIRE_NORM) * sum / T`` with the
   fixed denominator ``T = expected cohort * max_weight``.

The sensitivity, worked out
---------------------------
Neighbouring data: one record of one client replaced (Wu et al.'s replace-one relation;
every shard size is unchanged, so the weights are too). Both runs start the round from
the same released global model, so by :mod:`secagg.dp.bolt_on` client ``i``'s trained model,
hence ``u_i``, moves by at most ``Delta_i``: ``2 L / (lambda b_i n_i)`` (``= 2 L / (lambda
m_i)`` with equal batches) or ``2 k L eta / b_i``, with ``b_i`` the smallest batch. The
clip does not increase it, so the secure sum moves by at most ``c_i (WIRE_NORM / clip)
Delta_i``, and the released model by ``server_lr * (c_i / T) * Delta_i``: the client's
weight share times its Bolt-on bound. The noise is calibrated to the worst client,
``max_i c_i Delta_i`` (for the strongly convex bound ``c_i Delta_i <= 2 L / lambda`` whatever
``m_i``), in the encoding's integer units, plus ``sqrt(dim + 1)`` for fixed-point rounding.
Over rounds the releases compose adaptively in the ledger (each round's bound holds for any
starting model), and Poisson sampling of clients amplifies it as it does for central DP.

What the epsilon means: example-level DP (one record of one client) for whoever sees the
released models; the central and distributed modes give client-level DP, which is
stronger. A ledger shared with such runs gives a valid example-level total (client-level
DP implies example-level DP). The decoding party sees the exact sum, as in central mode.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from fl.privacy.rounds import CentralDPHook, RoundPrivacy
from fl.training.linear import cross_entropy_grad
from fl.training.payload import wire_scale
from secagg.dp import (
    BoltOnGaussian,
    LossConstants,
    PrivacyLedger,
    convex_sensitivity,
    logistic_constants,
    round_event,
    strongly_convex_sensitivity,
    strongly_convex_step,
)
from secagg.encoding import EncodingConfig
from secagg.errors import ConfigError

if TYPE_CHECKING:
    from fl.training.model import Model

__all__ = [
    "BoltOnSetup",
    "batch_layout",
    "bolt_on_privacy",
    "clip_features",
    "plan_bolt_on",
    "psgd_train",
    "require_convex",
]

def require_convex(model: Model, dataset: str) -> None:
    """Refuse Bolt-on DP for a model that is not convex in its parameters.

    Raises:
        ConfigError: ``model`` is not a :class:`fl.training.linear.LinearModel`.
    """
    from fl.training.linear import LinearModel

    if not isinstance(model, LinearModel):
        kind = {"MLP": "mlp", "CNN": "cnn"}.get(type(model).__name__, type(model).__name__)
        raise ConfigError(
            f"bolt-on DP needs a convex model, and a {kind} on {dataset} is not convex; use "
            f"--model linear (logistic regression), or --dp-mode central for the {kind}")


def clip_features(x: NDArray[np.floating], norm: float) -> NDArray[np.float64]:
    """Scale each row of ``x`` down to L2 norm at most ``norm`` (rows within it are kept)."""
    a = np.asarray(x, dtype=np.float64)
    lengths: NDArray[np.float64] = np.linalg.norm(a, axis=1, keepdims=True)
    return a * np.minimum(1.0, norm / np.maximum(lengths, 1e-300))


def batch_layout(m: int, batch_size: int) -> tuple[int, int]:
    """``(n_b, b_min)``: batches per pass and the smallest batch, when ``m`` records are dealt
    into ``ceil(m / batch_size)`` near-equal batches (sizes differ by at most one)."""
    if m < 1 or batch_size < 1:
        raise ConfigError(f"need at least one record and batch_size >= 1, got {m}, {batch_size}")
    n_b = math.ceil(m / batch_size)
    return n_b, m // n_b


def _sensitivity(m: int, epochs: int, batch_size: int, constants: LossConstants,
                 step: float | None) -> float:
    n_b, b_min = batch_layout(m, batch_size)
    if step is None:
        return strongly_convex_sensitivity(constants, n_b, b_min)
    return convex_sensitivity(constants, step, epochs, b_min)


def psgd_train(
    weights: NDArray[np.floating], x: NDArray[np.floating], y: NDArray[np.integer],
    n_classes: int, *, epochs: int, batch_size: int, constants: LossConstants,
    feature_norm: float, step: float | None, seed: int,
) -> tuple[NDArray[np.float32], int, dict[str, float]]:
    """Permutation SGD on softmax regression, exactly as the Bolt-on bound assumes.

    Args:
        weights: the global linear model as :class:`fl.training.model.ModelVector` lays it out
            (``n_classes x n_features`` weights, row-major, then ``n_classes`` biases).
        x, y: the client's records; rows are clipped to ``feature_norm`` first.
        step: the constant step (convex bound), or ``None`` for ``min(1/beta, 1/(gamma t))``.
        seed: seed of the per-pass permutations (not a secret: the bound holds for any order).

    Returns:
        ``(delta, m, metrics)`` like :func:`fl.training.fedavg.local_train`.

    Raises:
        ConfigError: a weight vector of the wrong length, or a diverged run.
    """
    xs = clip_features(x, feature_norm)
    m, d = xs.shape
    yi = np.asarray(y, dtype=np.int64)
    if weights.shape != (n_classes * (d + 1),):
        raise ConfigError(f"a linear model on {d} features and {n_classes} classes has "
                          f"{n_classes * (d + 1)} parameters, got {weights.shape}")
    start = np.asarray(weights, dtype=np.float64)
    w = start[: n_classes * d].reshape(n_classes, d).copy()
    b = start[n_classes * d :].copy()
    lam = constants.strong_convexity
    n_b = math.ceil(m / batch_size)
    rng = np.random.default_rng(seed)
    t = 0
    loss_sum, correct = 0.0, 0
    for _ in range(epochs):
        loss_sum, correct = 0.0, 0
        for idx in np.array_split(rng.permutation(m), n_b):
            t += 1
            eta = step if step is not None else strongly_convex_step(t, constants)
            batch_loss, batch_correct, g = cross_entropy_grad(xs[idx] @ w.T + b, yi[idx])
            loss_sum += batch_loss
            correct += batch_correct
            w -= eta * (g.T @ xs[idx] + lam * w)
            b -= eta * (g.sum(axis=0) + lam * b)
    out = np.concatenate([w.ravel(), b]) - start
    if not np.all(np.isfinite(out)):
        raise ConfigError("Bolt-on PSGD diverged (NaN or inf in the update)")
    return out.astype(np.float32), m, {"loss": loss_sum / m, "accuracy": correct / m}


@dataclass(frozen=True)
class BoltOnSetup:
    """A run's Bolt-on constants and per-client bounds (model units).

    Attributes:
        constants: the loss's ``L``, ``beta``, ``gamma``.
        step: the constant step (convex bound) or ``None`` (strongly convex schedule).
        feature_norm: ``R``.
        client_sensitivity: ``Delta_i`` for each client.
        weighted_sensitivity: ``max_i c_i Delta_i`` with ``c_i`` the client's weight.
    """

    constants: LossConstants
    step: float | None
    feature_norm: float
    client_sensitivity: tuple[float, ...]
    weighted_sensitivity: float

    def units(self, encoding: EncodingConfig, dim: int, clip: float) -> float:
        """The round's L2 sensitivity in the integer units of the secure sum, for client
        vectors of ``dim`` values whose update :func:`fl.training.payload.client_vector` scaled by
        ``wire_scale(clip)``."""
        return (self.weighted_sensitivity * wire_scale(clip) * encoding.scale
                + math.sqrt(dim + 1))

    def summary(self, total_weight: float, server_lr: float) -> dict[str, float | str | None]:
        """The figures ``run --json`` reports under ``bolt_on``."""
        return {
            "bound": "strongly-convex" if self.step is None else "convex",
            "lipschitz": self.constants.lipschitz,
            "smoothness": self.constants.smoothness,
            "l2": self.constants.strong_convexity,
            "feature_norm": self.feature_norm,
            "step": self.step,
            "client_sensitivity_max": max(self.client_sensitivity),
            "model_sensitivity": server_lr * self.weighted_sensitivity / total_weight,
        }


def plan_bolt_on(sizes: Sequence[int], weights: Sequence[float], *, epochs: int,
                 batch_size: int, feature_norm: float, l2: float, lr: float) -> BoltOnSetup:
    """The constants and bounds for clients holding ``sizes`` records with ``weights``.

    ``l2 > 0`` takes the strongly convex bound (the step schedule ignores ``lr``); ``l2 = 0``
    the convex one with the constant step ``lr``.

    Raises:
        ConfigError: a bad norm or ``l2``, or ``lr > 2 / beta`` for the convex bound.
    """
    constants = logistic_constants(feature_norm, l2)
    step = None if constants.strong_convexity > 0 else float(lr)
    per = tuple(_sensitivity(int(m), epochs, batch_size, constants, step) for m in sizes)
    weighted = max(float(c) * s for c, s in zip(weights, per))
    return BoltOnSetup(constants, step, float(feature_norm), per, weighted)


def bolt_on_privacy(ledger: PrivacyLedger, noise_multiplier: float, sensitivity_units: float,
                    encoding: EncodingConfig, sampling_rate: float) -> RoundPrivacy:
    """One Bolt-on round's DP, checked against the budget before anything is released.

    Raises:
        BudgetExceededError: the round would exceed the budget.
        ConfigError: the noise is out of the sampler's range.
    """
    hook = CentralDPHook(BoltOnGaussian(float(noise_multiplier), float(sensitivity_units)))
    return RoundPrivacy.planned("bolt-on", ledger, round_event(noise_multiplier), sampling_rate,
                                {"noise": hook}, encoding, hook.mechanism.sigma)
