"""Adaptive clipping by a private quantile estimate (Andrew, Thakkar, McMahan and Ramaswamy,
"Differentially Private Learning with Adaptive Clipping", NeurIPS 2021).

Each round, every sampled client reports one bit, ``1`` if its update's L2 norm is at most the
current clip ``C``. The bits are summed with the same secure aggregation and noise as the
update (sensitivity 1 per client), giving a noisy fraction ``b``; the server then moves the
clip geometrically towards the target quantile ``gamma``::

    C <- C * exp(-eta * (b - gamma))

The bit sum is a second release about the same clients. With bit noise multiplier ``z_b``
(noise standard deviation on the count divided by 1), releasing both is exactly as private as
one Gaussian release with ``z^-2 = z_update^-2 + z_b^-2``; :func:`update_noise_multiplier`
solves that for the update's multiplier given the total ``z`` (the paper's formula has
``2 sigma_b`` because it centres the bits, halving their sensitivity). Fixed L2 clipping
itself lives in the encoding module.
"""

from __future__ import annotations

import math

from secagg.errors import ConfigError, SecAggTypeError

__all__ = ["AdaptiveClipper", "update_noise_multiplier"]


def _finite(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SecAggTypeError(f"{name} must be a number, got {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v):
        raise ConfigError(f"{name} must be finite, got {v}")
    return v


class AdaptiveClipper:
    """The clip-norm state of adaptive clipping; pure arithmetic, no randomness.

    Args:
        initial_clip: starting clip ``C`` (> 0), in the update's own units.
        target_quantile: ``gamma`` in [0, 1], the fraction of clients meant to stay unclipped
            (the paper uses 0.5).
        learning_rate: ``eta`` > 0 of the geometric update (the paper uses 0.2).

    Raises:
        ConfigError: if an argument is out of range.
    """

    __slots__ = ("_clip", "_quantile", "_rate")

    def __init__(self, initial_clip: float, target_quantile: float, learning_rate: float) -> None:
        clip = _finite("initial_clip", initial_clip)
        if clip <= 0:
            raise ConfigError(f"initial_clip must be > 0, e.g. 0.1 or 1.0, got {clip}")
        quantile = _finite("target_quantile", target_quantile)
        if not 0 <= quantile <= 1:
            raise ConfigError(f"target_quantile must be in [0, 1], e.g. 0.5, got {quantile}")
        rate = _finite("learning_rate", learning_rate)
        if rate <= 0:
            raise ConfigError(f"learning_rate must be > 0, e.g. 0.2, got {rate}")
        self._clip = clip
        self._quantile = quantile
        self._rate = rate

    @property
    def clip(self) -> float:
        """The current clip norm ``C``."""
        return self._clip

    @property
    def target_quantile(self) -> float:
        """``gamma``."""
        return self._quantile

    @property
    def learning_rate(self) -> float:
        """``eta``."""
        return self._rate

    def client_bit(self, update_norm: float) -> int:
        """The bit a client reports: ``1`` if ``update_norm <= clip`` else ``0``.

        Raises:
            ConfigError: if ``update_norm`` is negative or not finite.
        """
        norm = _finite("update_norm", update_norm)
        if norm < 0:
            raise ConfigError(f"update_norm must be >= 0, got {norm}")
        return 1 if norm <= self._clip else 0

    def update(self, noisy_fraction: float) -> float:
        """Move the clip: ``C <- C * exp(-eta * (noisy_fraction - gamma))``.

        Args:
            noisy_fraction: the noisy bit sum divided by the expected number of clients. Noise
                may put it outside [0, 1]; that is expected and used as is.

        Returns:
            The new clip.

        Raises:
            ConfigError: if ``noisy_fraction`` is not finite, or the clip would leave the
                positive floats.
        """
        b = _finite("noisy_fraction", noisy_fraction)
        new = self._clip * math.exp(-self._rate * (b - self._quantile))
        if not (math.isfinite(new) and new > 0):
            raise ConfigError(
                f"clip update with noisy_fraction={b} gives {new}; the noisy fraction should "
                "be near [0, 1]: divide the bit sum by the number of clients"
            )
        self._clip = new
        return new

    def __repr__(self) -> str:
        return (
            f"AdaptiveClipper(clip={self._clip!r}, target_quantile={self._quantile!r}, "
            f"learning_rate={self._rate!r})"
        )


def update_noise_multiplier(total_noise_multiplier: float, bit_noise_multiplier: float) -> float:
    """The update's noise multiplier so that update plus clip bits cost ``total`` together.

    Solves ``total^-2 = z_update^-2 + z_bits^-2`` for ``z_update`` (Gaussian composition).

    Args:
        total_noise_multiplier: ``z`` the accountant is told about (> 0).
        bit_noise_multiplier: noise std on the bit count divided by its sensitivity 1.

    Returns:
        ``z_update = (total^-2 - z_bits^-2)^-1/2``.

    Raises:
        ConfigError: if ``bit_noise_multiplier <= total_noise_multiplier`` (the bits alone
            would spend the whole budget).
    """
    z = _finite("total_noise_multiplier", total_noise_multiplier)
    zb = _finite("bit_noise_multiplier", bit_noise_multiplier)
    if z <= 0 or zb <= 0:
        raise ConfigError(f"noise multipliers must be > 0, got {z} and {zb}")
    if zb <= z:
        raise ConfigError(
            f"bit_noise_multiplier={zb:g} must exceed total_noise_multiplier={z:g}; "
            f"e.g. {max(10 * z, 1.0):g} (Andrew et al. suggest a bit-count noise std of "
            "about clients / 20)"
        )
    return float((z**-2 - zb**-2) ** -0.5)
