"""Paillier parameters: key size and the packing of fixed-point values into plaintext slots.

Packing. Each client's update is encoded exactly as for the other exact protocols (clip,
weight, fixed point with 2^f levels and stochastic rounding), then every value v (weight
included) is offset to ``v + A``, with ``A = ceil(max_weight * max(clip, 1) * 2^f) + 1`` (one
more than the encoding's largest magnitude, for float rounding at the clip), so it lies in
``[0, 2A]``. A slot is ``slot_bytes`` whole bytes wide, enough for the sum of ``max_clients``
offset values, ``2 * A * max_clients < 2^(8 * slot_bytes)``, so slots never carry into each
other. The slots of a plaintext use its low P bits (an honest sum lies in [0, 2^P)); above
them the plaintext keeps room for the *window* (P + 42 bits: an identification test adds
masks of P + 40 bits), for ``max_clients`` of those (ceil(log2 n) + 1 more bits) and for 64
guard bits, so ``floor((key_bits - 109 - ceil(log2 max_clients)) / (8 * slot_bytes))`` slots
fill a plaintext. With the defaults (clip 1, f = 16, 100 clients) a slot is 3 bytes and a
2048-bit key holds 80 values: a 512-byte ciphertext for 320 bytes of float32 (1.6x).

Decoding (:meth:`protocols.paillier.PaillierScheme.decrypt`). Blinds removed and centred mod
n, a plaintext of magnitude 2^far_bits or more is *far* out of range: a leftover blind lands
inside with probability at most 2^-64, and a client far out of range is identified. Inside,
the low P bits are decoded, every slot sum is clamped to ``[0, 2A * count]`` and the
decryptor subtracts ``count * A``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

from protocols.he import HeConfig
from secagg.encoding import EncodingConfig
from secagg.errors import ConfigError

__all__ = ["GUARD_BITS", "MIN_KEY_BITS", "PaillierConfig", "make_config"]

MIN_KEY_BITS: Final = 2048
#: a residual blind (uniform mod n) lands within the accepted window with probability at
#: most 2^-GUARD_BITS
GUARD_BITS: Final = 64
#: the aggregator's masks on identification tests are MASK_BITS wider than a plaintext, so
#: a test reveals at most 2^(1 - MASK_BITS) about an upload
MASK_BITS: Final = 40
MAX_KEY_BITS: Final = 8192


@dataclass(frozen=True)
class PaillierConfig(HeConfig):
    """A Paillier round.

    Args (beyond :class:`~protocols.he.HeConfig`):
        key_bits: bit length of the modulus n, at least 2048 and a multiple of 64.

    Raises:
        ConfigError: a key under 2048 bits, or slots too wide for the key.
    """

    key_bits: int = MIN_KEY_BITS

    def __post_init__(self) -> None:
        HeConfig.__post_init__(self)
        k = self.key_bits
        if isinstance(k, bool) or not isinstance(k, int) or not MIN_KEY_BITS <= k <= MAX_KEY_BITS:
            raise ConfigError(f"Paillier keys must have at least {MIN_KEY_BITS} bits (and at "
                              f"most {MAX_KEY_BITS}), got key_bits={k!r}")
        if k % 64:
            raise ConfigError(f"key_bits must be a multiple of 64, got {k}")
        if self.slots_per_ciphertext < 1:
            raise ConfigError(
                f"a slot of {8 * self.slot_bytes} bits does not fit a {k}-bit key; lower "
                "max_clients, frac_bits, clip or max_weight, or raise key_bits")

    @property
    def offset(self) -> int:
        """A: added to every encoded value so that it is non-negative."""
        enc = self.encoding
        return math.ceil(enc.max_weight * max(enc.clip, 1.0) * enc.scale) + 1

    @property
    def slot_bytes(self) -> int:
        """Bytes per slot: holds the sum of max_clients offset values."""
        return -(-(2 * self.offset * self.encoding.max_clients).bit_length() // 8)

    @property
    def slots_per_ciphertext(self) -> int:
        """Values packed into one plaintext: P = slots * 8 * slot_bytes bits, with room above
        for the window, its test masks and the 64-bit guard (:attr:`far_bits`)."""
        spare = self.key_bits - 2 - GUARD_BITS - MASK_BITS - 3 - self._count_bits
        return spare // (8 * self.slot_bytes)

    @property
    def _count_bits(self) -> int:
        return max(1, (self.encoding.max_clients - 1).bit_length())

    @property
    def packed_bits(self) -> int:
        """P: the bits a packed plaintext uses; an honest sum is in [0, 2^P)."""
        return self.slots_per_ciphertext * 8 * self.slot_bytes

    @property
    def window_bits(self) -> int:
        """A masked identification test of an honest upload lies in [0, 2^window_bits)."""
        return self.packed_bits + MASK_BITS + 2

    @property
    def far_bits(self) -> int:
        """A decrypted plaintext (blinds removed, centred mod n) of magnitude 2^far_bits or
        more is *far* out of range: some client's own upload is outside its window, or the
        aggregate is not the named uploads once each. 2^(far_bits + 2) <= 2^-64 * n."""
        return self.window_bits + self._count_bits + 1

    @property
    def n_ciphertexts(self) -> int:
        """Ciphertexts per upload, for ``dim + 1`` values."""
        return -(-(self.dim + 1) // self.slots_per_ciphertext)

    @property
    def ciphertext_bytes(self) -> int:
        """Bytes of one ciphertext on the wire (an element of Z_{n^2}, big-endian)."""
        return self.key_bits // 4


def make_config(n_clients: int, dim: int, **kw: Any) -> PaillierConfig:
    """A validated :class:`PaillierConfig`; the encoding's ``max_clients`` defaults to n."""
    kw.setdefault("encoding", EncodingConfig(max_clients=max(n_clients, 1)))
    return PaillierConfig(n_clients=n_clients, dim=dim, **kw)
