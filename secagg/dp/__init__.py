"""Differential privacy for secagg: exact discrete Gaussian noise, mechanisms and accounting.

- :mod:`secagg.dp.discrete_gaussian`: the Canonne-Kamath-Steinke exact sampler on a CSPRNG.
- :mod:`secagg.dp.mechanisms`: central noise at the decoding party; distributed noise at
  every client, and the clamp of one client's noise (:func:`client_noise_bound`). A
  mechanism returns the DP event of what it released and never sees a ledger.
- :mod:`secagg.dp.bolt_on`: Bolt-on output perturbation for convex models trained by
  permutation SGD (Wu et al. 2017): the PSGD sensitivity bounds and the mechanism.
- :mod:`secagg.dp.clipping`: adaptive clipping by a private quantile estimate.
- :mod:`secagg.dp.events` and :mod:`secagg.dp.ledger`: DP events (:func:`round_event` is
  a planned round's), their composition across rounds with ``dp-accounting`` (RDP or PLD),
  the epsilon budget, and the one calibration search
  (:meth:`PrivacyLedger.noise_multiplier_for`).

Nothing here imports torch, protocols or fl; ``dp-accounting`` is imported only when
accounting is used.
"""

from __future__ import annotations

from secagg.dp.bolt_on import (
    BoltOnGaussian,
    LossConstants,
    convex_sensitivity,
    logistic_constants,
    strongly_convex_sensitivity,
    strongly_convex_step,
)
from secagg.dp.clipping import AdaptiveClipper, update_noise_multiplier
from secagg.dp.discrete_gaussian import (
    MAX_SIGMA_SQ,
    MIN_SIGMA_SQ,
    bernoulli_exp,
    sample_discrete_gaussian,
    sample_discrete_gaussian_scalar,
)
from secagg.dp.events import (
    ComposedEvent,
    DiscreteGaussianEvent,
    DpEvent,
    PoissonSampledEvent,
    SelfComposedEvent,
    poisson_sampled,
    round_event,
    to_dp_accounting,
)
from secagg.dp.ledger import (
    ACCOUNTANTS,
    Accountant,
    PrivacyLedger,
    compute_epsilon,
    noise_multiplier_for,
)
from secagg.dp.mechanisms import (
    NOISE_FAILURE,
    CentralDiscreteGaussian,
    DistributedDiscreteGaussian,
    TailBounded,
    client_noise_bound,
    l2_sensitivity_units,
)

__all__ = [
    "ACCOUNTANTS",
    "MAX_SIGMA_SQ",
    "MIN_SIGMA_SQ",
    "NOISE_FAILURE",
    "Accountant",
    "AdaptiveClipper",
    "BoltOnGaussian",
    "CentralDiscreteGaussian",
    "ComposedEvent",
    "DiscreteGaussianEvent",
    "DistributedDiscreteGaussian",
    "DpEvent",
    "LossConstants",
    "PoissonSampledEvent",
    "PrivacyLedger",
    "SelfComposedEvent",
    "TailBounded",
    "bernoulli_exp",
    "client_noise_bound",
    "compute_epsilon",
    "convex_sensitivity",
    "l2_sensitivity_units",
    "logistic_constants",
    "noise_multiplier_for",
    "poisson_sampled",
    "round_event",
    "sample_discrete_gaussian",
    "sample_discrete_gaussian_scalar",
    "strongly_convex_sensitivity",
    "strongly_convex_step",
    "to_dp_accounting",
    "update_noise_multiplier",
]
