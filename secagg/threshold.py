"""Threshold evaluation of a label-bound key: a threshold Diffie-Hellman PRF on Ed25519.

A party with a secret scalar ``z`` Shamir-shares ``z`` over the group order ``L`` among ``n``
holders (any ``t`` of them reconstruct *in the exponent*, none learns ``z``). For a public
label ``l`` (in the enrolled mode: session, round, owner and peer of one escrowed seed),
every party maps ``l`` to a point ``H(l)`` of the prime-order subgroup (:func:`hash_point`,
libsodium's Elligator 2 map with the cofactor cleared), and the key of that label is::

    K(l) = z * H(l)                            (the owner knows z: one scalar multiplication)

Holder ``i`` answers a request about label ``l`` with the *partial* ``z_i * H(l)``; any ``t``
partials give ``K(l) = sum_i lambda_i * (z_i * H(l))`` (Lagrange at 0 mod L). This is the
threshold form of the "2HashDH" PRF (Jarecki et al., TOPPSS 2017): partials for some labels
reveal nothing about ``z`` or about the key of any other label (computational Diffie-Hellman
in the random-oracle model), so holders can open escrowed secrets one at a time. The holder
computes ``H(l)`` itself from the label it is asked about, so whoever relays the request
cannot point the partial at another label's key. There is no proof that a partial is
honest; the caller authenticates what the key opens (an AEAD), so a forged partial is
detected, not silently used.

Group operations are libsodium's (PyNaCl ``crypto_core_ed25519_*`` and
``crypto_scalarmult_ed25519_noclamp``); only the sharing and the Lagrange coefficients are
ours.

.. warning:: ``z`` and its shares are secret material; a holder must never reveal its share.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from functools import lru_cache

from nacl.bindings import (
    crypto_core_ed25519_add,
    crypto_core_ed25519_from_uniform,
    crypto_scalarmult_ed25519_noclamp,
)

from secagg.errors import ConfigError, ProtocolError
from secagg.rng import Csprng

__all__ = ["L", "POINT_SIZE", "SCALAR_SIZE", "combine", "decode_scalar", "encode_scalar",
           "hash_point", "partial", "random_scalar", "split"]

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


def hash_point(label: bytes) -> bytes:
    """``H(label)``: a point of the prime-order subgroup that nobody knows the discrete
    logarithm of (SHA-256 of a domain-separated label, through libsodium's Elligator 2 map,
    which clears the cofactor)."""
    point: bytes = crypto_core_ed25519_from_uniform(
        hashlib.sha256(b"secagg/v1/threshold-point" + label).digest())
    return point


def partial(share: int, R: bytes) -> bytes:
    """``share * R``: a holder's partial for the point ``R = H(label)``, or, with the whole
    scalar ``z``, the owner's key ``K(label)`` itself.

    libsodium's ``crypto_scalarmult_ed25519_noclamp`` refuses any point that is not a
    canonical encoding of a point of the prime-order subgroup (it checks ``L * R = 0``), so
    even a point that did not come from :func:`hash_point` cannot reveal ``share mod 8``.

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
    """``K`` from at least ``t`` partials ``{x: z_x * H}`` (the first t by x are used).

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
