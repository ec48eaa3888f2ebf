"""Differential privacy for secagg: exact discrete Gaussian noise, mechanisms and accounting.

- :mod:`secagg.dp.discrete_gaussian`: the Canonne-Kamath-Steinke exact sampler on a CSPRNG.
- :mod:`secagg.dp.mechanisms`: central noise at the decoding party; distributed noise at
  every client.
- :mod:`secagg.dp.clipping`: adaptive clipping by a private quantile estimate.
- :mod:`secagg.dp.events` and :mod:`secagg.dp.ledger`: DP events, their composition across
  rounds with ``dp-accounting`` (RDP or PLD), and the epsilon budget.

Nothing here imports torch, protocols or fl; ``dp-accounting`` is imported only when
accounting is used.
"""

from __future__ import annotations

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
    CentralDiscreteGaussian,
    DistributedDiscreteGaussian,
    l2_sensitivity_units,
)

__all__ = [
    "ACCOUNTANTS",
    "MAX_SIGMA_SQ",
    "MIN_SIGMA_SQ",
    "Accountant",
    "AdaptiveClipper",
    "CentralDiscreteGaussian",
    "ComposedEvent",
    "DiscreteGaussianEvent",
    "DistributedDiscreteGaussian",
    "DpEvent",
    "PoissonSampledEvent",
    "PrivacyLedger",
    "SelfComposedEvent",
    "bernoulli_exp",
    "compute_epsilon",
    "l2_sensitivity_units",
    "noise_multiplier_for",
    "sample_discrete_gaussian",
    "sample_discrete_gaussian_scalar",
    "to_dp_accounting",
    "update_noise_multiplier",
]
