"""DP mechanisms on integer aggregates: central and distributed discrete Gaussian noise.

Both work in the integer units of the fixed-point encoding: ``l2_sensitivity`` is one
client's largest possible contribution after clipping, weighting and encoding (for example
``max_weight * clip * 2**frac_bits``, plus the encoder's rounding allowance), and
``sigma = noise_multiplier * l2_sensitivity``. ``sigma^2`` is the exact rational square of the
two floats' product, so the noise is exactly ``N_Z(0, sigma^2)`` (see
:mod:`secagg.dp.discrete_gaussian`).

- :class:`CentralDiscreteGaussian`: the party that decodes the aggregate (the server for
  secagg and secagg+, the decryptor for ckks and paillier) adds the noise once per round,
  before it releases anything.
- :class:`DistributedDiscreteGaussian` (Kairouz, Liu and Steinke, ICML 2021): every client adds
  ``N_Z(0, sigma^2 / n)`` before masking, so nobody ever sees an un-noised sum. Only the
  survivors' noise reaches the sum, so the event is computed from the number of survivors.

Every mechanism returns or builds a :class:`secagg.dp.events.DiscreteGaussianEvent` for the
:class:`secagg.dp.ledger.PrivacyLedger`.

.. warning::
   Pass a generator seeded from OS entropy (``Csprng()``) in production. Noise from a known
   seed can be subtracted and protects nobody.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Protocol

import numpy as np
import numpy.typing as npt

from secagg.dp.discrete_gaussian import (
    MAX_SIGMA_SQ,
    MIN_SIGMA_SQ,
    sample_discrete_gaussian,
)
from secagg.dp.events import DiscreteGaussianEvent
from secagg.errors import ConfigError, SecAggTypeError
from secagg.rng import Csprng

__all__ = ["NOISE_FAILURE", "CentralDiscreteGaussian", "DistributedDiscreteGaussian",
           "TailBounded", "client_noise_bound", "l2_sensitivity_units"]

IntArray = npt.NDArray[np.int64]

#: probability, over a whole round, that any client's distributed noise would exceed its
#: clamp (:func:`client_noise_bound`); it adds at most this much to delta.
NOISE_FAILURE = 2.0**-40


def _positive_float(name: str, value: object, hint: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SecAggTypeError(f"{name} must be a number, got {type(value).__name__}")
    v = float(value)
    if not (math.isfinite(v) and v > 0):
        raise ConfigError(f"{name} must be finite and > 0, {hint}, got {v}")
    return v


def _count(name: str, value: object, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise SecAggTypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < low:
        raise ConfigError(f"{name} must be >= {low}, got {value}")
    return int(value)


def _check_beta(beta: object) -> float:
    if isinstance(beta, bool) or not isinstance(beta, (int, float)):
        raise SecAggTypeError(f"beta must be a number, got {type(beta).__name__}")
    b = float(beta)
    if not 0 < b < 1:
        raise ConfigError(f"beta must be in (0, 1), e.g. 1e-9, got {b}")
    return b


def _sigma_sq(noise_multiplier: float, l2_sensitivity: float) -> Fraction:
    s2 = (Fraction(noise_multiplier) * Fraction(l2_sensitivity)) ** 2
    if not MIN_SIGMA_SQ <= s2 <= MAX_SIGMA_SQ:
        raise ConfigError(
            f"sigma = noise_multiplier * l2_sensitivity = {math.sqrt(s2):.6g} integer units is "
            "outside the sampler's range [2**-20, 2**40]; change the fixed-point scale so that "
            "l2_sensitivity is between about 1 and 2**30"
        )
    return s2


def l2_sensitivity_units(
    clip: float,
    frac_bits: int,
    dim: int,
    max_weight: float = 1.0,
    weight_frac_bits: int | None = None,
) -> float:
    """One client's largest L2 contribution to the integer sum, for calibrating the noise.

    The update is clipped to L2 norm ``clip``, scaled by a weight ``w <= max_weight``, and
    encoded with ``2**frac_bits`` levels per unit by stochastic rounding, which moves each of the
    ``dim`` coordinates by less than one unit: at most ``max_weight * clip * 2**frac_bits +
    sqrt(dim)``. When the weight itself travels in the same sum (weighted FedAvg) as one more
    coordinate encoded with ``2**weight_frac_bits`` levels, it adds at most
    ``max_weight * 2**weight_frac_bits + 1``, in quadrature.

    Raises:
        ConfigError: if ``clip`` or ``max_weight`` is not positive, or a count is negative.
    """
    c = _positive_float("clip", clip, "e.g. 1.0")
    w = _positive_float("max_weight", max_weight, "e.g. 1.0 or the example-count cap")
    f = _count("frac_bits", frac_bits, 0)
    update = w * c * 2.0**f + math.sqrt(_count("dim", dim, 0))
    if weight_frac_bits is None:
        return update
    weight = w * 2.0 ** _count("weight_frac_bits", weight_frac_bits, 0) + 1.0
    return math.hypot(update, weight)


def _subgaussian_bound(variance_proxy: float, dim: int, beta: float) -> int:
    """``T`` with ``P(max_i |X_i| > T) <= beta`` for ``dim`` coordinates, each
    ``variance_proxy``-sub-Gaussian: ``2 dim exp(-T^2 / (2 v)) = beta``."""
    return math.ceil(math.sqrt(2.0 * variance_proxy * math.log(2.0 * dim / beta)))


def _add_checked(int_sum: object, noise_for: int, rng: Csprng, s2: Fraction) -> IntArray:
    if not isinstance(int_sum, np.ndarray) or int_sum.dtype.kind not in "iu":
        raise SecAggTypeError("int_sum must be a numpy array of integers (fixed-point units)")
    if int_sum.dtype.kind == "u" and int_sum.size and int(int_sum.max()) >= 2**63:
        raise ConfigError("int_sum has values >= 2**63; decode (centre) it to int64 first")
    values = int_sum.astype(np.int64)
    noise = sample_discrete_gaussian(s2, noise_for, rng).reshape(values.shape)
    out = values + noise  # wraps silently on overflow; checked next
    if np.any(((values ^ out) & (noise ^ out)) < 0):
        raise ConfigError("aggregate plus noise overflows int64; use fewer fractional bits")
    return out


@dataclass(frozen=True, slots=True)
class CentralDiscreteGaussian:
    """Central DP: discrete Gaussian noise added by the party that decodes the aggregate.

    Args:
        noise_multiplier: ``z = sigma / l2_sensitivity`` (> 0).
        l2_sensitivity: one client's clipped, weighted contribution in integer units (> 0).

    Raises:
        ConfigError: if an argument is not positive, or ``sigma`` is outside [2^-20, 2^40].
    """

    noise_multiplier: float
    l2_sensitivity: float

    def __post_init__(self) -> None:
        _positive_float("noise_multiplier", self.noise_multiplier, "e.g. 1.0")
        _positive_float("l2_sensitivity", self.l2_sensitivity, "e.g. clip * 2**frac_bits")
        _sigma_sq(self.noise_multiplier, self.l2_sensitivity)

    @property
    def sigma_sq(self) -> Fraction:
        """``sigma^2`` exactly, in integer units squared."""
        return _sigma_sq(self.noise_multiplier, self.l2_sensitivity)

    @property
    def sigma(self) -> float:
        """``sigma`` in integer units."""
        return math.sqrt(self.sigma_sq)

    def event(self) -> DiscreteGaussianEvent:
        """The event of one release."""
        return DiscreteGaussianEvent(
            float(self.noise_multiplier),
            sigma=self.sigma,
            l2_sensitivity=float(self.l2_sensitivity),
        )

    def add_noise(
        self, int_sum: npt.NDArray[np.integer], rng: Csprng
    ) -> tuple[IntArray, DiscreteGaussianEvent]:
        """Add ``N_Z(0, sigma^2)`` to every coordinate of the decoded integer aggregate.

        Call it exactly once per round, before the sum leaves the decoding party, and charge
        the returned event to the ledger.

        Args:
            int_sum: the exact integer aggregate (any shape, integer dtype, values < 2^63).
            rng: the decoding party's CSPRNG.

        Returns:
            ``(noisy_sum, event)``: a new int64 array of the same shape; ``int_sum`` is not
            modified.

        Raises:
            SecAggTypeError: if ``int_sum`` is not an integer numpy array.
            ConfigError: if the result would overflow int64.
        """
        size = int(int_sum.size) if isinstance(int_sum, np.ndarray) else 0
        return _add_checked(int_sum, size, rng, self.sigma_sq), self.event()

    def tail_bound(self, dim: int, beta: float) -> int:
        """``T`` such that the noise's largest coordinate exceeds ``T`` with probability
        at most ``beta`` (the discrete Gaussian is ``sigma^2``-sub-Gaussian, CKS 2020).

        Raises:
            ConfigError: if ``dim`` < 1 or ``beta`` is not in (0, 1).
        """
        return _subgaussian_bound(float(self.sigma_sq), _count("dim", dim), _check_beta(beta))


def _kairouz_tau(client_sigma_sq: float, n: int) -> float:
    """``tau = 10 * sum_{k=1}^{n-1} exp(-2 pi^2 sigma^2 k / (k+1))`` (Kairouz et al. 2021)."""
    return 10.0 * sum(
        math.exp(-2.0 * math.pi**2 * client_sigma_sq * k / (k + 1)) for k in range(1, n)
    )


@dataclass(frozen=True, slots=True)
class DistributedDiscreteGaussian:
    """Distributed DP: each of ``n_clients`` adds ``N_Z(0, sigma^2 / n_clients)`` before masking.

    The sum of ``s`` survivors' noise has variance ``s / n * sigma^2``. Kairouz, Liu and Steinke
    (ICML 2021, the distributed discrete Gaussian) bound its privacy by that of a Gaussian with
    ``epsilon^2 = Delta^2 / (s sigma_c^2) + tau d / 2`` where ``sigma_c^2 = sigma^2 / n`` and
    ``tau = 10 sum_{k<s} exp(-2 pi^2 sigma_c^2 k / (k+1))``; :meth:`event_for` includes the
    ``tau`` term when given the dimension ``d`` (it underflows to 0.0 once ``sigma_c >= 9``).

    Args:
        noise_multiplier: target ``z = sigma / l2_sensitivity`` when all clients survive.
        l2_sensitivity: one client's clipped, weighted contribution in integer units.
        n_clients: number of clients that add noise in the round (>= 1).

    Raises:
        ConfigError: if an argument is out of range, or a client's ``sigma_c`` is below 1/2
            (the theorem's condition) or outside the sampler's range.
    """

    noise_multiplier: float
    l2_sensitivity: float
    n_clients: int

    def __post_init__(self) -> None:
        _positive_float("noise_multiplier", self.noise_multiplier, "e.g. 1.0")
        _positive_float("l2_sensitivity", self.l2_sensitivity, "e.g. clip * 2**frac_bits")
        n = _count("n_clients", self.n_clients)
        client = _sigma_sq(self.noise_multiplier, self.l2_sensitivity) / n
        if client < Fraction(1, 4) or client > MAX_SIGMA_SQ:
            need = 0.5 * math.sqrt(n) / self.noise_multiplier
            raise ConfigError(
                f"each client's noise sigma_c = sigma / sqrt({n}) = {math.sqrt(client):.4g} "
                f"integer units must be >= 0.5; raise l2_sensitivity to >= {need:.4g} by using "
                "more fractional bits"
            )

    @property
    def sigma_sq(self) -> Fraction:
        """Target total ``sigma^2`` (all clients survive), exactly."""
        return _sigma_sq(self.noise_multiplier, self.l2_sensitivity)

    @property
    def client_sigma_sq(self) -> Fraction:
        """``sigma^2 / n_clients`` exactly: each client's noise variance parameter."""
        return self.sigma_sq / self.n_clients

    def client_noise(self, dim: int, rng: Csprng) -> IntArray:
        """One client's noise vector, to add to its encoded update before masking.

        .. warning:: the client must use its own OS-seeded CSPRNG and keep the noise secret.

        Raises:
            ConfigError: if ``dim`` < 0.
        """
        return sample_discrete_gaussian(self.client_sigma_sq, _count("dim", dim, 0), rng)

    def event_for(self, survivors: int, dim: int | None = None) -> DiscreteGaussianEvent:
        """The event for the noise that reached the sum: ``survivors`` clients' worth.

        The noise multiplier is ``z * sqrt(survivors / n_clients)``, reduced further by the
        Kairouz et al. ``tau * dim / 2`` term when ``dim`` is given.

        Raises:
            ConfigError: if ``survivors`` is not in [1, n_clients] or ``dim`` < 1.
        """
        s = _count("survivors", survivors)
        if s > self.n_clients:
            raise ConfigError(f"survivors must be in [1, {self.n_clients}], got {s}")
        sigma_s = math.sqrt(self.client_sigma_sq * s)
        inv_sq = (self.l2_sensitivity / sigma_s) ** 2
        if dim is not None:
            inv_sq += _kairouz_tau(float(self.client_sigma_sq), s) * _count("dim", dim) / 2.0
        return DiscreteGaussianEvent(
            inv_sq**-0.5, sigma=sigma_s, l2_sensitivity=float(self.l2_sensitivity)
        )

    def tail_bound(self, dim: int, n: int, beta: float) -> int:
        """``T`` such that the sum of ``n`` clients' noise has a coordinate beyond ``T`` with
        probability at most ``beta``; add it to the bit-width headroom.

        Each client's noise is ``sigma_c^2``-sub-Gaussian (CKS 2020), so the sum of ``n`` is
        ``n sigma_c^2``-sub-Gaussian; a union bound covers the ``dim`` coordinates.

        Raises:
            ConfigError: if ``dim`` or ``n`` < 1 or ``beta`` is not in (0, 1).
        """
        variance = float(self.client_sigma_sq) * _count("n", n)
        return _subgaussian_bound(variance, _count("dim", dim), _check_beta(beta))


class TailBounded(Protocol):
    """Distributed noise that can bound its own tail (:class:`DistributedDiscreteGaussian`
    has this shape)."""

    def tail_bound(self, dim: int, n: int, beta: float) -> int:
        """A bound on the largest coordinate of ``n`` clients' summed noise, but for
        probability ``beta``."""
        ...


def client_noise_bound(noise: TailBounded, dim: int, n: int) -> int:
    """The clamp of one client's distributed noise in a round of ``n`` clients.

    A client's noise vector has ``dim + 1`` coordinates (its update's ``dim`` and the
    weight, which travels in the same sum); any coordinate of any of the ``n`` clients
    exceeds the clamp with probability at most :data:`NOISE_FAILURE`, so clamping changes
    the mechanism only on that event. The encoding's headroom must hold ``n`` times it.

    Raises:
        ConfigError: if ``dim`` < 0 or ``n`` < 1.
    """
    return int(noise.tail_bound(_count("dim", dim, 0) + 1, 1, NOISE_FAILURE / _count("n", n)))
