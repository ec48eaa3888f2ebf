"""Threshold decryption of short escrowed secrets: ElGamal key encapsulation on Ed25519.

A party with a secret scalar ``z`` Shamir-shares ``z`` over the group order ``L`` among ``n``
holders (any ``t`` of them reconstruct *in the exponent*, none learns ``z``). It can then
encapsulate a fresh key to ``Z = z*G`` once per secret it escrows::

    r random,  R = r*G,  K = r*Z = (r*z)*G          (the encapsulator knows z, so 2 base mults)

Holder ``i`` answers a request about one ciphertext with the *partial* ``z_i * R``; any ``t``
partials give ``K = sum_i lambda_i * (z_i * R)`` (Lagrange at 0 mod L). A partial reveals
nothing about ``z`` or about the keys of other ciphertexts (each has its own ``r``), so holders
can open escrowed secrets one at a time. There is no proof that a partial is honest; the
caller authenticates what the key opens (an AEAD), so a forged partial is detected, not
silently used.

Group operations are libsodium's (PyNaCl ``crypto_core_ed25519_*`` and
``crypto_scalarmult_ed25519_*_noclamp``); only the sharing and the Lagrange coefficients are
ours.

.. warning:: ``z`` and its shares are secret material; a holder must never reveal its share.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache

from nacl.bindings import (
    crypto_core_ed25519_add,
    crypto_core_ed25519_is_valid_point,
    crypto_scalarmult_ed25519_base_noclamp,
    crypto_scalarmult_ed25519_noclamp,
)

from secagg.errors import ConfigError, ProtocolError
from secagg.rng import Csprng

__all__ = ["L", "POINT_SIZE", "SCALAR_SIZE", "check_point", "combine", "decode_scalar",
           "encapsulate", "encode_scalar", "partial", "random_scalar", "split"]

#: the order of the Ed25519 prime-order subgroup
L = 2**252 + 27742317777372353535851937790883648493
SCALAR_SIZE = 32
POINT_SIZE = 32


def random_scalar(rng: Csprng) -> int:
    """A uniform non-zero scalar mod L (64 random bytes reduced: bias below 2^-250)."""
    while True:
        s = int.from_bytes(rng.bytes(64), "little") % L
        if s:
            return s


def encode_scalar(s: int) -> bytes:
    """32 bytes little-endian."""
    if not 0 <= s < L:
        raise ConfigError("scalar must be in [0, L)")
    return s.to_bytes(SCALAR_SIZE, "little")


def decode_scalar(b: bytes) -> int:
    """The scalar of 32 little-endian bytes.

    Raises:
        ProtocolError: wrong size, or not reduced mod L.
    """
    if len(b) != SCALAR_SIZE:
        raise ProtocolError(f"scalar must be {SCALAR_SIZE} bytes, got {len(b)}")
    s = int.from_bytes(b, "little")
    if s >= L:
        raise ProtocolError("scalar is not reduced mod L")
    return s


def split(secret: int, xs: Sequence[int], t: int, rng: Csprng) -> list[int]:
    """Shamir shares of ``secret`` mod L for the holders ``xs`` (distinct, 1 <= x < L).

    Raises:
        ConfigError: t outside 1..len(xs), repeated or out-of-range x.
    """
    if not isinstance(t, int) or not 1 <= t <= len(xs):
        raise ConfigError(f"threshold must be in 1..{len(xs)} (the holders), got {t!r}")
    if len(set(xs)) != len(xs) or any(not 0 < x < L for x in xs):
        raise ConfigError("holders' x-coordinates must be distinct integers in [1, L)")
    coeffs = [secret % L] + [rng.randbelow(L) for _ in range(t - 1)]
    out = []
    for x in xs:
        acc = 0
        for c in reversed(coeffs):
            acc = (acc * x + c) % L
        out.append(acc)
    return out


def encapsulate(z: int, rng: Csprng) -> tuple[bytes, bytes]:
    """``(R, K)`` for a fresh ``r``: ``R = r*G`` goes with the ciphertext, ``K = r*z*G``
    keys it (feed ``K`` to HKDF, never use it raw)."""
    r = random_scalar(rng)
    R = crypto_scalarmult_ed25519_base_noclamp(encode_scalar(r))
    K = crypto_scalarmult_ed25519_base_noclamp(encode_scalar(r * z % L))
    return R, K


def check_point(R: bytes) -> None:
    """Refuse anything but a valid point of the main subgroup (not small order).

    Raises:
        ProtocolError: wrong size, not on the curve, or of small order.
    """
    if len(R) != POINT_SIZE or not crypto_core_ed25519_is_valid_point(R):
        raise ProtocolError("escrow point is not a valid Ed25519 point of large order")


def partial(share: int, R: bytes) -> bytes:
    """A holder's partial decryption ``share * R``.

    libsodium's ``crypto_scalarmult_ed25519_noclamp`` refuses any point that is not a
    canonical encoding of a point of the prime-order subgroup (it checks ``L * R = 0``), so
    a forged ``R`` with a small-order component is refused and cannot reveal
    ``share mod 8``.

    Raises:
        ProtocolError: ``R`` is not a canonical point of the prime-order subgroup.
    """
    if len(R) != POINT_SIZE:
        raise ProtocolError(f"escrow point must be {POINT_SIZE} bytes, got {len(R)}")
    try:
        out: bytes = crypto_scalarmult_ed25519_noclamp(encode_scalar(share), R)
    except Exception as exc:  # libsodium refuses invalid points and an identity result
        raise ProtocolError("escrow point is not a valid Ed25519 point of large order") from exc
    return out


@lru_cache(maxsize=4096)
def _lagrange0(xs: tuple[int, ...]) -> tuple[int, ...]:
    out = []
    for i, xi in enumerate(xs):
        num = den = 1
        for j, xj in enumerate(xs):
            if i != j:
                num = num * xj % L
                den = den * (xj - xi) % L
        out.append(num * pow(den, -1, L) % L)
    return tuple(out)


def combine(partials: Mapping[int, bytes], t: int) -> bytes:
    """``K`` from at least ``t`` partials ``{x: z_x * R}`` (the first t by x are used).

    libsodium refuses a partial outside the prime-order subgroup; a forged partial inside it
    only gives a wrong ``K``, which the caller's AEAD refuses.

    Raises:
        ConfigError: fewer than ``t`` partials.
        ProtocolError: a partial that is not a canonical point of large order.
    """
    if len(partials) < t:
        raise ConfigError(f"need {t} partial decryptions, got {len(partials)}")
    xs = tuple(sorted(partials)[:t])
    acc: bytes | None = None
    for x, lam in zip(xs, _lagrange0(xs)):
        p = partials[x]
        if len(p) != POINT_SIZE:
            raise ProtocolError(f"partial must be {POINT_SIZE} bytes, got {len(p)}")
        try:
            term: bytes = crypto_scalarmult_ed25519_noclamp(encode_scalar(lam), p)
        except Exception as exc:
            raise ProtocolError("partial decryption combines to the identity") from exc
        acc = term if acc is None else crypto_core_ed25519_add(acc, term)
    if acc is None:  # t >= 1, so unreachable; keeps the type checker honest
        raise ConfigError("threshold must be >= 1")
    return acc
