"""Threshold evaluation of a label-bound key: a threshold Diffie-Hellman PRF on Ed25519.

A party with a secret scalar ``z`` Shamir-shares ``z`` over the group order ``L`` among ``n``
holders (any ``t`` of them reconstruct *in the exponent*, none learns ``z``). For a public
label ``l`` (in the enrolled mode: session, round, owner and peer of one escrowed seed),
every party maps ``l`` to a point ``H(l)`` of the prime-order subgroup (:func:`hash_point`,
libsodium's Elligator 2 map with the cofactor cleared), and the key of that label is::

    K(l) = u(z * H(l))       (u: the Montgomery coordinate; the owner knows z, so one X25519)

Holder ``i`` answers a request about label ``l`` with the *partial* ``z_i * H(l)``; any ``t``
partials give ``z * H(l) = sum_i lambda_i * (z_i * H(l))`` (Lagrange at 0 mod L), hence
``K(l)``. This is the
threshold form of the "2HashDH" PRF (Jarecki et al., TOPPSS 2017): partials for some labels
reveal nothing about ``z`` or about the key of any other label (computational Diffie-Hellman
in the random-oracle model), so holders can open escrowed secrets one at a time. The holder
computes ``H(l)`` itself from the label it is asked about, so whoever relays the request
cannot point the partial at another label's key. There is no proof that a partial is
honest; the caller authenticates what the key opens (an AEAD), so a forged partial is
detected, not silently used.

The owner's scalar is drawn as an X25519 secret (a multiple of 8 in [2^254, 2^255), so
clamping leaves it unchanged) and shared mod L: on points of the prime-order subgroup the two
agree, so the owner computes each key with one X25519 ladder (:func:`owner_keys`, with the
Edwards-to-Montgomery map batched into one inversion) while holders, whose shares are
uniform mod L, use Edwards arithmetic. Group operations are libsodium's (PyNaCl
``crypto_core_ed25519_*``, ``crypto_scalarmult_ed25519_noclamp``, ``crypto_scalarmult``,
``crypto_sign_ed25519_pk_to_curve25519``); only the sharing, the Lagrange coefficients and
the birational map are ours.

.. warning:: ``z`` and its shares are secret material; a holder must never reveal its share.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from functools import lru_cache

from nacl.bindings import (
    crypto_core_ed25519_add,
    crypto_core_ed25519_from_uniform,
    crypto_scalarmult,
    crypto_scalarmult_ed25519_noclamp,
    crypto_sign_ed25519_pk_to_curve25519,
)

from secagg.errors import ConfigError, ProtocolError
from secagg.rng import Csprng

__all__ = ["L", "POINT_SIZE", "SCALAR_SIZE", "combine", "combined_key", "decode_scalar",
           "encode_scalar", "hash_point", "owner_keys", "partial", "random_owner_scalar",
           "random_scalar", "split"]

#: the order of the Ed25519 prime-order subgroup
L = 2**252 + 27742317777372353535851937790883648493
SCALAR_SIZE = 32
POINT_SIZE = 32
_P = 2**255 - 19  # the field of Curve25519 / Ed25519


def random_scalar(rng: Csprng) -> int:
    """A uniform non-zero scalar mod L (64 random bytes reduced: bias below 2^-250)."""
    while True:
        s = int.from_bytes(rng.bytes(64), "little") % L
        if s:
            return s


def random_owner_scalar(rng: Csprng) -> int:
    """An owner's secret ``z``: an X25519 secret (251 random bits, a multiple of 8 in
    [2^254, 2^255)), which :func:`owner_keys` uses as it is; share ``z % L``."""
    return (1 << 254) | (int.from_bytes(rng.bytes(32), "little") >> 5 << 3)


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


def owner_keys(z: int, points: Sequence[bytes]) -> list[bytes]:
    """``K = u(z * H)`` for each point ``H`` (from :func:`hash_point`), for the owner's
    scalar ``z`` from :func:`random_owner_scalar`: one X25519 ladder each, with the Edwards
    y of every point mapped to the Montgomery u = (1 + y) / (1 - y) under one inversion.

    Raises:
        ConfigError: ``z`` is not an X25519 secret (clamping would change it).
    """
    if z >> 255 or not z >> 254 or z & 7:
        raise ConfigError("the owner's scalar must come from random_owner_scalar")
    ys = [int.from_bytes(H, "little") & ((1 << 255) - 1) for H in points]
    dens = [(1 - y) % _P for y in ys]
    prefix, acc = [], 1  # Montgomery's trick: one inversion for all denominators
    for d in dens:
        prefix.append(acc)
        acc = acc * d % _P
    if acc == 0:  # y = 1, the identity: never an output of hash_point
        raise ProtocolError("the identity is no escrow point")
    inv = pow(acc, -1, _P)
    us = [0] * len(ys)
    for i in range(len(ys) - 1, -1, -1):
        us[i] = (1 + ys[i]) * inv * prefix[i] % _P
        inv = inv * dens[i] % _P
    zb = z.to_bytes(SCALAR_SIZE, "little")
    return [crypto_scalarmult(zb, u.to_bytes(32, "little")) for u in us]


def combined_key(partials: Mapping[int, bytes], t: int) -> bytes:
    """The owner's ``K = u(z * H)`` from at least ``t`` holders' partials ``{x: z_x * H}``
    (see :func:`combine`).

    Raises:
        ConfigError / ProtocolError: as :func:`combine`.
    """
    point = combine(partials, t)
    try:
        key: bytes = crypto_sign_ed25519_pk_to_curve25519(point)
    except Exception as exc:
        raise ProtocolError("the partials combine to no point of large order") from exc
    return key


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
