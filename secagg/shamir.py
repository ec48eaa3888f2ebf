"""Shamir secret sharing over the prime field GF(2^521 - 1).

A secret of up to 64 bytes (here: 32-byte seeds and X25519 secret keys) is the constant term
of a random polynomial of degree ``t - 1``; party ``x`` (x >= 1) holds its value at ``x``.
Any ``t`` shares give the secret back by Lagrange interpolation at 0; ``t - 1`` shares are
consistent with every secret (perfect secrecy).

Reconstruction uses exactly ``t`` shares and, when more are given, checks that every extra
share lies on the same polynomial, so a forged share is detected rather than silently giving
a wrong secret. Lagrange and check coefficients are cached per set of x-coordinates: in a
round every secret is usually rebuilt from the same responders, so the cost is paid once.

.. warning:: shares are secret material; a party must never reveal t shares of one secret.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any

from secagg.errors import ConfigError, ProtocolError
from secagg.rng import Csprng

__all__ = ["PRIME", "SHARE_SIZE", "reconstruct", "reconstruct_bytes", "split", "split_bytes"]

PRIME = 2**521 - 1

# gmpy2 (a core dependency) makes field arithmetic ~3x and inversion ~20x faster; plain
# Python ints give identical results where it is missing.
_num: Callable[[int], Any] = int
_gmp_invert: Callable[[Any, Any], Any] | None = None
try:
    import gmpy2

    _num, _gmp_invert = gmpy2.mpz, gmpy2.invert
except ImportError:  # pragma: no cover - gmpy2 is a declared dependency
    pass
_P: Any = _num(PRIME)
SHARE_SIZE = 66  # bytes of one big-endian field element
_MAX_SECRET_BYTES = 64


def _check_params(xs: Sequence[int], t: int) -> None:
    n = len(xs)
    if not isinstance(t, int) or t < 1:
        raise ConfigError(f"threshold must be an integer >= 1, got {t!r}")
    if t > n:
        raise ConfigError(f"threshold {t} is above the number of share holders {n}; use t <= {n}")
    if len(set(xs)) != n:
        raise ConfigError("share holders' x-coordinates must be distinct")
    for x in xs:
        if not isinstance(x, int) or not 0 < x < PRIME:
            raise ConfigError(f"x-coordinate must be an integer in [1, 2^521-2], got {x!r}")


def split(secret: int, xs: Sequence[int], t: int, rng: Csprng) -> list[int]:
    """Share ``secret`` (0 <= secret < PRIME) so that any ``t`` of the holders ``xs`` recover it.

    Returns:
        The share (polynomial value) for each x in ``xs``, in order.

    Raises:
        ConfigError: ``t`` out of ``1..len(xs)``, repeated or zero x, a secret out of range.
    """
    _check_params(xs, t)
    if not 0 <= secret < PRIME:
        raise ConfigError("secret must be in [0, 2^521 - 1)")
    coeffs = [_num(secret)] + [_num(rng.randbelow(PRIME)) for _ in range(t - 1)]
    out = []
    for x in xs:
        acc = _num(0)
        for c in reversed(coeffs):  # Horner
            acc = (acc * x + c) % _P
        out.append(int(acc))
    return out


def split_bytes(secret: bytes, xs: Sequence[int], t: int, rng: Csprng) -> list[bytes]:
    """:func:`split` for a byte string of at most 64 bytes; shares are 66-byte strings."""
    if len(secret) > _MAX_SECRET_BYTES:
        raise ConfigError(f"secret is {len(secret)} bytes; at most {_MAX_SECRET_BYTES} fit the field")
    s = int.from_bytes(secret, "big")
    return [y.to_bytes(SHARE_SIZE, "big") for y in split(s, xs, t, rng)]


@lru_cache(maxsize=1 << 16)
def _inv(a: int) -> Any:
    """Inverse mod PRIME; cached, since x-coordinates (and their differences) are small."""
    if _gmp_invert is not None:
        return _gmp_invert(_num(a % PRIME), _P)
    return pow(a % PRIME, -1, PRIME)


@lru_cache(maxsize=512)
def _weights(xs: tuple[int, ...]) -> tuple[Any, ...]:
    """Barycentric weights w_i = 1 / prod_{m != i} (x_i - x_m)."""
    out = []
    for i, xi in enumerate(xs):
        d = _num(1)
        for m, xm in enumerate(xs):
            if m != i:
                d = d * (xi - xm) % _P
        out.append(_inv(int(d)))
    return tuple(out)


@lru_cache(maxsize=4096)
def _lagrange_at(xs: tuple[int, ...], target: int) -> tuple[Any, ...]:
    """Coefficients c_i with f(target) = sum c_i f(x_i) for any f of degree < len(xs)."""
    if target in xs:
        return tuple(_num(1 if x == target else 0) for x in xs)
    w = _weights(xs)
    ell = _num(1)
    for x in xs:
        ell = ell * (target - x) % _P
    return tuple(ell * wi % _P * _inv(target - xi) % _P for xi, wi in zip(xs, w))


def reconstruct(shares: Mapping[int, int], t: int) -> int:
    """The secret from at least ``t`` shares ``{x: y}``.

    The first ``t`` shares (by x) interpolate; every further share is checked against them.

    Raises:
        ConfigError: fewer than ``t`` shares (names how many are missing).
        ProtocolError: an extra share inconsistent with the others (a forged share).
    """
    if len(shares) < t:
        raise ConfigError(f"need {t} shares to reconstruct, got {len(shares)}")
    xs = sorted(shares)
    _check_params(xs, t)
    base = tuple(xs[:t])
    ys = [_num(shares[x] % PRIME) for x in base]
    coeffs = _lagrange_at(base, 0)
    secret = sum(c * y for c, y in zip(coeffs, ys)) % _P
    for x in xs[t:]:
        cx = _lagrange_at(base, x)
        if sum(c * y for c, y in zip(cx, ys)) % _P != shares[x] % PRIME:
            raise ProtocolError(f"share of party x={x} is inconsistent with the other {t} shares")
    return int(secret)


def reconstruct_bytes(shares: Mapping[int, bytes], t: int, length: int = 32) -> bytes:
    """:func:`reconstruct` for byte shares from :func:`split_bytes`; returns ``length`` bytes.

    Raises:
        ProtocolError: a share of the wrong size, or a secret that does not fit ``length``.
    """
    ints = {}
    for x, s in shares.items():
        if len(s) != SHARE_SIZE:
            raise ProtocolError(f"share from x={x} is {len(s)} bytes, expected {SHARE_SIZE}")
        v = int.from_bytes(s, "big")
        if v >= PRIME:
            raise ProtocolError(f"share from x={x} is not a field element")
        ints[x] = v
    secret = reconstruct(ints, t)
    if secret.bit_length() > 8 * length:
        raise ProtocolError(f"reconstructed secret does not fit in {length} bytes: forged shares")
    return secret.to_bytes(length, "big")
