"""Bolt-on DP: output perturbation of a convex model trained by permutation SGD.

Theory of operation
-------------------
Wu, Li, Kumar, Chaudhuri, Jha and Naughton, "Bolt-on Differential Privacy for Scalable
Stochastic Gradient Descent-based Analytics" (SIGMOD 2017, arXiv:1606.04722), section 3:
train with *permutation* SGD (PSGD: each pass visits every example exactly once, in any
order), then add noise to the final model, calibrated to the L2 sensitivity of PSGD's output
between two datasets of the same size ``m`` that differ in one example (replace-one). They
bound it with the expansiveness of gradient steps (Hardt, Recht and Singer, ICML 2016,
lemmas 3.6 and 3.7): for a loss whose per-example part is ``L``-Lipschitz, the whole loss
``beta``-smooth, and a step ``G(w) = w - eta * grad`` (the derivation is repeated here so it
can be checked; ``tests/test_bolt_on.py`` trains on neighbouring datasets and checks that the
outputs never differ by more):

- *convex*, ``eta <= 2 / beta``: ``G`` is 1-expansive, so the trajectories of the two
  datasets drift apart only at the steps that use the differing example, by at most
  ``2 eta L / b`` each (mini-batch ``b``: the example's gradient is averaged over the
  batch). ``k`` passes use it ``k`` times: **Delta_2 = 2 k L eta / b** (Wu et al.,
  section 3: ``2 k L eta`` for ``b = 1``, and its mini-batch form). It grows with the
  passes, and it does not shrink with ``m``.
- *gamma-strongly convex*, ``eta_t = min(1 / beta, 1 / (gamma t))`` for step ``t = 1, 2,
  ...`` counted across passes: ``G`` is ``(1 - eta_t gamma)``-expansive (``eta_t <= 1 /
  beta``; the Hessian lies between ``gamma`` and ``beta``), so ``delta_{t+1} <= (1 - eta_t
  gamma) delta_t + [t uses the example] 2 eta_t L / b``. Unrolled, each use contributes at
  most ``2 L / (b gamma T)`` after ``T`` steps, and with ``n_b`` batches per pass (``T = k
  n_b``): **Delta_2 = 2 L / (gamma b n_b) = 2 L / (gamma m)** when the batches have equal
  size ``b = m / n_b`` (Wu et al., section 3: ``2 L / (gamma m)`` for ``b = 1``, and its
  mini-batch form). It does not grow with the passes. With unequal batches, ``b`` is the
  smallest. Batching does *not* divide this bound by ``b`` once more
  (``2 L / (gamma m b)``, which some implementations use): ``tests/test_bolt_on.py`` shows
  neighbouring datasets whose PSGD outputs are further apart than that.

``L`` is the Lipschitz constant of the *per-example data loss* only: a regulariser
``(lambda/2) |w|^2`` that both datasets share cancels out of the ``2 eta L / b`` term, and only
enters ``beta`` (``+ lambda``) and ``gamma`` (``= lambda``). :func:`logistic_constants` gives
the constants of softmax cross-entropy (logistic regression) on features of L2 norm at most
``R`` with a bias input of 1: ``L = sqrt(2) sqrt(R^2 + 1)`` (the logit gradient ``p - e_y``
has norm at most ``sqrt(2)``) and ``beta = (R^2 + 1) / 2`` (Boehning's bound: the logits'
Hessian ``diag(p) - p p^T`` is at most ``1/2``).

The mechanism (:class:`BoltOnGaussian`) is the Gaussian mechanism on that sensitivity: the
discrete Gaussian of :mod:`secagg.dp.discrete_gaussian` on the fixed-point model (CSPRNG,
no NumPy generator), so its event is a :class:`~secagg.dp.events.DiscreteGaussianEvent`
and it composes in the same :class:`~secagg.dp.ledger.PrivacyLedger` as every other round.
Wu et al. release with Laplace-type noise for epsilon-DP or the Gaussian for (epsilon,
delta)-DP; the Gaussian is the one that composes with the rest of secagg's accounting.

The guarantee is *example-level* (one record replaced), not client-level: see
:mod:`fl.privacy.bolt_on` for how a federated round's sensitivity follows from it.

Nothing here imports torch, protocols or fl.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from secagg.dp.mechanisms import CentralDiscreteGaussian
from secagg.errors import ConfigError, SecAggTypeError

__all__ = [
    "BoltOnGaussian",
    "LossConstants",
    "convex_sensitivity",
    "logistic_constants",
    "strongly_convex_sensitivity",
    "strongly_convex_step",
]


def _positive(name: str, value: object, hint: str, *, zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise SecAggTypeError(f"{name} must be a number, got {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v) or v < 0 or (v == 0 and not zero):
        raise ConfigError(f"{name} must be finite and {'>= 0' if zero else '> 0'}, {hint}, "
                          f"got {v}")
    return v


def _count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


@dataclass(frozen=True, slots=True)
class LossConstants:
    """The constants Bolt-on needs: ``lipschitz`` (per-example data loss), ``smoothness``
    (the whole loss, regulariser included) and ``strong_convexity`` (0: merely convex)."""

    lipschitz: float
    smoothness: float
    strong_convexity: float


def logistic_constants(feature_norm: float, l2: float = 0.0) -> LossConstants:
    """Constants of softmax cross-entropy on a linear model with a bias, features of L2 norm
    at most ``feature_norm``, plus ``(l2 / 2) |w|^2`` over every parameter (bias included).

    Returns:
        ``L = sqrt(2 (R^2 + 1))``, ``beta = (R^2 + 1) / 2 + l2``, ``gamma = l2``.

    Raises:
        ConfigError: ``feature_norm <= 0`` or ``l2 < 0``.
    """
    r = _positive("feature_norm", feature_norm, "e.g. 1.0 (features are clipped to it)")
    lam = _positive("l2", l2, "e.g. 0.05 (0: convex, constant step)", zero=True)
    sq = r * r + 1.0
    return LossConstants(math.sqrt(2.0 * sq), sq / 2.0 + lam, lam)


def convex_sensitivity(constants: LossConstants, step: float, passes: int,
                       min_batch: int) -> float:
    """``Delta_2 = 2 k L eta / b`` for ``k`` passes of PSGD with constant step ``eta``.

    Args:
        constants: the loss's constants (``strong_convexity`` is not used).
        step: the constant step ``eta``, at most ``2 / beta``.
        passes: ``k``, passes over the data.
        min_batch: the smallest mini-batch a pass uses (1: plain SGD).

    Raises:
        ConfigError: ``eta > 2 / beta`` (the bound needs 1-expansive steps: the message names
            the largest step), or a non-positive argument.
    """
    eta = _positive("step", step, "e.g. 0.5")
    beta = constants.smoothness
    if eta > 2.0 / beta:
        raise ConfigError(f"Bolt-on's convex bound needs a step <= 2/beta = {2.0 / beta:.4g} "
                          f"(beta = {beta:.4g}); got {eta:g}: use --lr {2.0 / beta:.4g} or less")
    return 2.0 * _count("passes", passes) * constants.lipschitz * eta / _count("min_batch",
                                                                                min_batch)


def strongly_convex_step(t: int, constants: LossConstants) -> float:
    """``eta_t = min(1 / beta, 1 / (gamma t))`` for step ``t >= 1`` (counted across passes).

    Raises:
        ConfigError: ``t < 1`` or a loss that is not strongly convex.
    """
    gamma = constants.strong_convexity
    if gamma <= 0:
        raise ConfigError("the decreasing step needs a strongly convex loss (l2 > 0)")
    return min(1.0 / constants.smoothness, 1.0 / (gamma * _count("t", t)))


def strongly_convex_sensitivity(constants: LossConstants, batches_per_pass: int,
                                min_batch: int) -> float:
    """``Delta_2 = 2 L / (gamma b n_b)``: PSGD with :func:`strongly_convex_step`, any number of
    passes; ``= 2 L / (gamma m)`` when ``n_b`` batches of ``b`` examples make up ``m``.

    Raises:
        ConfigError: a loss that is not strongly convex, or a non-positive count.
    """
    gamma = constants.strong_convexity
    if gamma <= 0:
        raise ConfigError("Bolt-on's strongly convex bound needs l2 > 0; with l2 = 0 use the "
                          "convex bound (constant step)")
    nb = _count("batches_per_pass", batches_per_pass)
    return 2.0 * constants.lipschitz / (gamma * _count("min_batch", min_batch) * nb)


@dataclass(frozen=True, slots=True)
class BoltOnGaussian(CentralDiscreteGaussian):
    """Output perturbation: discrete Gaussian noise on a fixed-point model (or aggregate).

    The central discrete Gaussian (:class:`~secagg.dp.mechanisms.CentralDiscreteGaussian`:
    ``add_noise``, ``sigma``, ``event``) with its sensitivity taken from a Bolt-on bound.

    Args:
        noise_multiplier: ``z = sigma / l2_sensitivity`` (> 0).
        l2_sensitivity: the Bolt-on sensitivity in the integer units of the encoding
            (> 0): the model-space bound times ``2**frac_bits`` and any scaling, plus the
            fixed-point rounding allowance (:meth:`from_bound`).

    Raises:
        ConfigError: an argument out of range, or ``sigma`` outside the sampler's range.
    """

    @classmethod
    def from_bound(cls, noise_multiplier: float, bound: float, scale: float,
                   dim: int) -> BoltOnGaussian:
        """The mechanism for a model-space bound ``bound`` on a fixed-point vector of ``dim``
        values with ``scale`` integer units per unit: ``bound * scale + sqrt(dim)`` (stochastic
        rounding moves each coordinate by less than one unit).

        Raises:
            ConfigError: a non-positive argument.
        """
        b = _positive("bound", bound, "from the Bolt-on sensitivity")
        sc = _positive("scale", scale, "e.g. 2**16")
        return cls(float(noise_multiplier), b * sc + math.sqrt(_count("dim", dim)))
