"""CKKS parameters for addition only, and the documented error bound.

Parameters. Ring degree N = 8192 (4096 real slots per ciphertext) and a coefficient-modulus
chain of one 60-bit data prime q plus a 40-bit special prime p. Ciphertexts live modulo q
alone: two polynomials of N 64-bit words, 128 KiB for 4096 values, 8x float32. The special
prime never appears in a ciphertext; TenSEAL needs it only because it always makes
relinearisation keys when it generates a key (and those are never serialised). 100 bits of
modulus at N = 8192 is far inside the 218 bits the HE security standard allows at 128-bit
security, and nothing is ever multiplied, so no rescaling level is needed.

Scale. Clients quantise to the fixed-point grid 2^-f exactly as the exact protocols do (clip,
weight, stochastic rounding; one client's slot is at most M = ceil(A * 2^f) + 1 grid units,
A = max_weight * max(clip, 1)), then add a one-time blind in [0, 1) grid units to *every*
slot (the padding too). The sum of n clients has slots of magnitude at most
B = n_max * (M + 1) * 2^-f. The scale is Delta = 2^s with s = 57 - ceil(log2 B), so
Delta * B <= 2^57 and the aggregate never wraps modulo q > 2^59.

Release and the grid check. The decryptor removes the named contributors' blinds; what is
left must lie within 2^-t grid units of the grid in every slot (t = :attr:`CkksConfig.
tolerance_bits`, 2 to 20), the padding must round to 0, and every slot to at most
``count * M`` units. It then releases the *rounded* integer sum: exactly the sum of the
clients' quantised inputs. CKKS error never reaches a release, so no release carries
decryption-error bits; anything the aggregator adds must also land within 2^-t units of the
grid in every one of the ``4096 * ciphertexts`` slots, or nothing is released.

Honest error (what the tolerance must cover). A fresh ciphertext decrypts to Delta*m + e with
e from SEAL's rounding (d0 + d1*s, |d| <= 1/2, s ternary) and the encoder; summed over n
clients and decoded, a slot's error has standard deviation about 2^10.4 * sqrt(n) / Delta
(measured: 2^10 for n = 1, 2^12 for n = 16, in units of 1/Delta). :meth:`CkksConfig.
honest_error` bounds it by 2^15 * sqrt(n) / Delta (more than 20 standard deviations) plus
2^-40 * B for double-precision FFTs; the tolerance is the largest 2^-t with
honest_error(n_max) <= 2^-(t+1) grid units. A round whose honest error exceeded it would be
refused (an abort, never a wrong release).

Release error. A released coordinate of the sum of n clients differs from the exact float sum
of their weighted, clipped inputs by less than n * 2^-f (stochastic rounding, one grid unit
per client), :meth:`CkksConfig.max_abs_error`. DP noise, when configured, comes on top.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Final

from protocols.he import HeConfig
from secagg.encoding import EncodingConfig
from secagg.errors import ConfigError

__all__ = ["COEFF_MOD_BIT_SIZES", "MAX_TOLERANCE_BITS", "MIN_TOLERANCE_BITS", "POLY_MODULUS_DEGREE", "SLOTS", "CkksConfig", "make_config"]

POLY_MODULUS_DEGREE: Final = 8192
SLOTS: Final = POLY_MODULUS_DEGREE // 2
COEFF_MOD_BIT_SIZES: Final = (60, 40)
#: largest log2(Delta * B): leaves the sum a factor 2 below q/2 > 2^58
_TOP_BITS: Final = 57
#: the grid check's tolerance is 2^-t grid units with t in this range
MIN_TOLERANCE_BITS: Final = 2
MAX_TOLERANCE_BITS: Final = 20


@dataclass(frozen=True)
class CkksConfig(HeConfig):
    """A CKKS round (see the module docstring for parameters and the grid check).

    Raises:
        ConfigError: a value bound too large for a 60-bit prime at the encoding's precision
            (the honest CKKS error would not fit 2^-2 grid units), naming what would fit.
    """

    def __post_init__(self) -> None:
        HeConfig.__post_init__(self)
        if self.tolerance_bits < MIN_TOLERANCE_BITS:
            n, fit = self.encoding.max_clients, self.encoding.max_clients
            while fit > 2 and not _fits(self, fit):
                fit //= 2
            short = MIN_TOLERANCE_BITS - self.tolerance_bits
            raise ConfigError(
                f"a CKKS sum of up to {n} clients of magnitude {self.value_bound:g} at "
                f"frac_bits {self.encoding.frac_bits} leaves a scale of 2^{self.scale_bits}, too "
                f"small to tell the grid from CKKS error; use max_clients<={fit} or "
                f"frac_bits<={max(0, self.encoding.frac_bits - short)}")

    @property
    def value_bound(self) -> float:
        """A = max_weight * max(clip, 1): the largest magnitude of one client's slot."""
        return self.encoding.max_weight * max(self.encoding.clip, 1.0)

    @property
    def unit_bound(self) -> int:
        """M: the largest magnitude of one client's quantised slot, in grid units."""
        return math.ceil(self.value_bound * self.encoding.scale) + 1

    @property
    def scale_bits(self) -> int:
        """log2 of the CKKS scale Delta."""
        b = self.encoding.max_clients * (self.unit_bound + 1) / self.encoding.scale
        return _TOP_BITS - max(0, math.ceil(math.log2(b)))

    @property
    def n_ciphertexts(self) -> int:
        """Ciphertexts per upload: every slot is used, ``dim + 1`` values in all."""
        return -(-(self.dim + 1) // SLOTS)

    def honest_error(self, n: int) -> float:
        """A bound (see the module docstring) on the CKKS error of a decoded slot of the sum
        of ``n`` honest uploads, in value units."""
        magnitude = n * (self.unit_bound + 1) / self.encoding.scale
        return 2.0**15 * math.sqrt(n) / 2.0**self.scale_bits + 2.0**-40 * magnitude

    @property
    def tolerance_bits(self) -> int:
        """t: a decrypted slot must lie within 2^-t grid units of the grid (at most 20)."""
        units = self.honest_error(self.encoding.max_clients) * self.encoding.scale
        return min(MAX_TOLERANCE_BITS, math.floor(-math.log2(units)) - 1)

    def max_abs_error(self, n: int) -> float:
        """The worst-case error of a released coordinate (weight included) of the sum of
        ``n`` clients, before any DP noise: stochastic rounding, under one grid unit each."""
        return n * 2.0 ** -self.encoding.frac_bits


def _fits(config: CkksConfig, n: int) -> bool:
    enc = dataclasses.replace(config.encoding, max_clients=n)
    b = n * (math.ceil(config.value_bound * enc.scale) + 2) / enc.scale
    s = _TOP_BITS - max(0, math.ceil(math.log2(b)))
    units = (2.0**15 * math.sqrt(n) / 2.0**s + 2.0**-40 * b) * enc.scale
    return math.floor(-math.log2(units)) - 1 >= MIN_TOLERANCE_BITS


def make_config(n_clients: int, dim: int, **kw: Any) -> CkksConfig:
    """A validated :class:`CkksConfig`; the encoding's ``max_clients`` defaults to n."""
    kw.setdefault("encoding", EncodingConfig(max_clients=max(n_clients, 1)))
    return CkksConfig(n_clients=n_clients, dim=dim, **kw)
