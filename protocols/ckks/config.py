"""CKKS parameters for addition only, and the documented error bound.

Parameters. Ring degree N = 8192 (4096 real slots per ciphertext) and a coefficient-modulus
chain of one 60-bit data prime q plus a 40-bit special prime p. Ciphertexts live modulo q
alone: two polynomials of N 64-bit words, 128 KiB for 4096 values, 8x float32. The special
prime never appears in a ciphertext; TenSEAL needs it only because it always makes
relinearisation keys when it generates a key (and those are never serialised). 100 bits of
modulus at N = 8192 is far inside the 218 bits the HE security standard allows at 128-bit
security, and nothing is ever multiplied, so no rescaling level is needed.

Scale. The sum of n clients has slots of magnitude at most B = n_max * A, where
A = max_weight * max(clip, 1) bounds one client's value (L2 clipping bounds every coordinate
by the clip, and the weight slot by max_weight). The scale is Delta = 2^s with
s = 57 - ceil(log2 B), so Delta * B <= 2^57 and the aggregate never wraps modulo q > 2^59.

Error bound (worst case, not a heuristic). A released coordinate of the sum of n clients
differs from the exact float sum of their weighted, clipped inputs by at most::

    E(n) = n * N * (N/2 + 2) / Delta  +  2^-30 * n * A  +  2^-(f+1)

1. One fresh ciphertext decrypts to Delta*m + e with |e| <= N/2 + 2 per coefficient. SEAL
   encrypts at the key level and divides by p: what remains is the rounding d0 + d1*s
   (|d| <= 1/2, s ternary: at most 1/2 + N/2), the encryption noise divided by p (at most
   (2N+1)*21/p < 2^-21), and the encoder's rounding of each coefficient (1/2).
2. Addition is exact modulo q and nothing wraps (above), so the sum carries the n errors.
3. Decoding evaluates the polynomial at roots of unity, so a slot moves by at most the L1
   norm of the error, N * n * (N/2 + 2), divided by Delta.
4. Double-precision FFTs in encoding and decoding add at most 2^-30 per unit of magnitude
   (a generous form of the classic 5*log2(N)*2^-53 relative FFT error bound).
5. The decryptor rounds to the fixed-point grid before noising (2^-(f+1)).

In practice terms 1-4 are many orders of magnitude below the worst case (the errors are
independent and mostly cancel); the fixed-point rounding dominates. DP noise, when
configured, comes on top and is not part of E(n).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

from protocols._he import HeConfig
from secagg.encoding import EncodingConfig
from secagg.errors import ConfigError

__all__ = ["COEFF_MOD_BIT_SIZES", "POLY_MODULUS_DEGREE", "SLOTS", "CkksConfig", "make_config"]

POLY_MODULUS_DEGREE: Final = 8192
SLOTS: Final = POLY_MODULUS_DEGREE // 2
COEFF_MOD_BIT_SIZES: Final = (60, 40)
#: largest log2(Delta * B): leaves the sum a factor 2 below q/2 > 2^58
_TOP_BITS: Final = 57
#: the scale keeps at least this many bits below the fixed-point grid 2^-f
GUARD_BITS: Final = 20
_FP_FACTOR: Final = 2.0**-30


@dataclass(frozen=True)
class CkksConfig(HeConfig):
    """A CKKS round (see the module docstring for parameters and the error bound).

    Raises:
        ConfigError: a value bound too large for a 60-bit prime at the encoding's precision
            (the scale would fall below 2^(frac_bits + 20)), naming what would fit.
    """

    def __post_init__(self) -> None:
        HeConfig.__post_init__(self)
        need = self.encoding.frac_bits + GUARD_BITS
        if self.scale_bits < need:
            fit = 2 ** (_TOP_BITS - need) / self.value_bound
            raise ConfigError(
                f"a CKKS sum of up to {self.encoding.max_clients} clients of magnitude "
                f"{self.value_bound:g} leaves a scale of 2^{self.scale_bits}, below "
                f"2^{need} (frac_bits {self.encoding.frac_bits} + {GUARD_BITS}); use "
                f"max_clients<={math.floor(fit)} or frac_bits<={self.scale_bits - GUARD_BITS}"
            )

    @property
    def value_bound(self) -> float:
        """A = max_weight * max(clip, 1): the largest magnitude of one client's slot."""
        return self.encoding.max_weight * max(self.encoding.clip, 1.0)

    @property
    def scale_bits(self) -> int:
        """log2 of the CKKS scale Delta."""
        b = self.encoding.max_clients * self.value_bound
        return _TOP_BITS - max(0, math.ceil(math.log2(b)))

    @property
    def n_ciphertexts(self) -> int:
        """Ciphertexts per upload: every slot is used, ``dim + 1`` values in all."""
        return -(-(self.dim + 1) // SLOTS)

    def max_abs_error(self, n: int) -> float:
        """E(n): the worst-case error of a released coordinate (weight included) of the sum
        of ``n`` clients, before any DP noise."""
        big_n = POLY_MODULUS_DEGREE
        return (n * big_n * (big_n / 2 + 2) / 2.0**self.scale_bits
                + _FP_FACTOR * n * self.value_bound + 2.0 ** -(self.encoding.frac_bits + 1))


def make_config(n_clients: int, dim: int, **kw: Any) -> CkksConfig:
    """A validated :class:`CkksConfig`; the encoding's ``max_clients`` defaults to n."""
    kw.setdefault("encoding", EncodingConfig(max_clients=max(n_clients, 1)))
    return CkksConfig(n_clients=n_clients, dim=dim, **kw)
