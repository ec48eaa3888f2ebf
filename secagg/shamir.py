"""Shamir secret sharing over the prime field GF(p), p = 2^256 + 297 (the least prime above
2^256, so every 32-byte secret is one field element and a share is 33 bytes).

A secret of up to 32 bytes (here: seeds and X25519 secret keys) is the constant term
of a random polynomial of degree ``t - 1``; party ``x`` (x >= 1) holds its value at ``x``.
Any ``t`` shares give the secret back by Lagrange interpolation at 0; ``t - 1`` shares are
consistent with every secret (perfect secrecy).

:func:`reconstruct` uses exactly ``t`` shares and, when more are given, checks that every
extra share lies on the same polynomial, so a forged share is detected rather than silently
giving a wrong secret. Lagrange and check coefficients are cached per set of x-coordinates.

For a server rebuilding many secrets (one per client, each from a different holder set in a
sparse graph) the fast path is :func:`reconstruct_many_bytes`: each secret from exactly its
``t`` lowest-x shares, extra shares ignored (not checked), with the Lagrange coefficients of
all the holder sets computed in one batch (:class:`LagrangeCache`: the differences
``x_m - x_i`` multiplied in groups inside int64 numpy arrays, then one field inversion per
holder set by Montgomery's trick). A secret rebuilt this way must be checked against a
commitment (e.g. the public key of a rebuilt X25519 secret, or a hash commitment to a seed),
since a forged share yields a wrong secret rather than an error. :class:`ShareBook` keeps
the first ``t`` shares of each secret compactly (33 bytes of value + 8 of x per share) for
exactly that path.

.. warning:: shares are secret material; a party must never reveal t shares of one secret.
"""

from __future__ import annotations

import operator
from array import array
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from secagg.errors import ConfigError, ProtocolError
from secagg.rng import Csprng

__all__ = ["PRIME", "SHARE_SIZE", "LagrangeCache", "ShareBook", "reconstruct", "reconstruct_bytes",
           "reconstruct_many", "reconstruct_many_bytes", "split", "split_bytes"]

PRIME = 2**256 + 297  # prime (gmpy2.next_prime(2**256)); tests/test_shamir.py checks it

# gmpy2 (a core dependency) makes field arithmetic ~3x and inversion ~20x faster; plain
# Python ints give identical results where it is missing.
_num: Callable[[int], Any] = int
_mul: Callable[[Any, Any], Any] = operator.mul
_gmp_invert: Callable[[Any, Any], Any] | None = None
try:
    import gmpy2

    _num, _mul, _gmp_invert = gmpy2.mpz, gmpy2.mul, gmpy2.invert
except ImportError:  # pragma: no cover - gmpy2 is a declared dependency
    pass
_P: Any = _num(PRIME)
SHARE_SIZE = 33  # bytes of one big-endian field element
_MAX_SECRET_BYTES = 32


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
            raise ConfigError(f"x-coordinate must be an integer in [1, 2^256 + 296], got {x!r}")


def split(secret: int, xs: Sequence[int], t: int, rng: Csprng) -> list[int]:
    """Share ``secret`` (0 <= secret < PRIME) so that any ``t`` of the holders ``xs`` recover it.

    Returns:
        The share (polynomial value) for each x in ``xs``, in order.

    Raises:
        ConfigError: ``t`` out of ``1..len(xs)``, repeated or zero x, a secret out of range.
    """
    _check_params(xs, t)
    if not 0 <= secret < PRIME:
        raise ConfigError("secret must be in [0, 2^256 + 297)")
    coeffs = [_num(secret)] + [_num(rng.randbelow(PRIME)) for _ in range(t - 1)]
    out = []
    top = coeffs[::-1]
    for x in xs:
        # Horner without reducing at every step: x is far below the prime, so the value
        # only grows by x's bit length per coefficient; one reduction at the end gives the
        # same field element.
        acc = _num(0)
        if x.bit_length() <= 64:
            for c in top:
                acc = acc * x + c
        else:
            for c in top:
                acc = (acc * x + c) % _P
        out.append(int(acc % _P))
    return out


def split_bytes(secret: bytes, xs: Sequence[int], t: int, rng: Csprng) -> list[bytes]:
    """:func:`split` for a byte string of at most 32 bytes; shares are 33-byte strings."""
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


# -- many secrets, each from exactly t shares ------------------------------------------------
def _coefficients_batch(sets: Sequence[tuple[int, ...]]) -> list[tuple[Any, ...]]:
    """Lagrange coefficients at 0 for each holder set (all of one size t, sorted, distinct).

    c_i = prod_{m != i} x_m / (x_m - x_i) = N / D_i with N = prod_m x_m and
    D_i = x_i * prod_{m != i} (x_m - x_i). The D_i are products of small integers, formed
    exactly: g factors of at most b bits at a time in int64 (g * b <= 62), the rest as
    Python integers. One inversion per set inverts all its D_i (Montgomery's trick); every
    step runs across all the sets at once on object arrays, so the interpreter loops t times,
    not (sets x t) times.
    """
    if not sets:
        return []
    t = len(sets[0])
    bits = max(max(xs) for xs in sets).bit_length()
    if t == 1 or bits > 31:
        return [_lagrange_at(xs, 0) for xs in sets]
    g = max(1, 62 // bits)
    width = -(-t // g) * g
    to_num = np.frompyfunc(_num, 1, 1)
    invert = np.frompyfunc(_inv_num, 1, 1)
    out: list[tuple[Any, ...]] = []
    step = max(1, (1 << 22) // (t * width))  # sets per numpy batch: ~32 MB of int64
    for b0 in range(0, len(sets), step):
        chunk = sets[b0 : b0 + step]
        count = len(chunk)
        xs_arr = np.array(chunk, dtype=np.int64)  # (S, t)
        diff = np.ones((count, t, width), np.int64)
        np.subtract(xs_arr[:, None, :], xs_arr[:, :, None], out=diff[:, :, :t])
        idx = np.arange(t)
        diff[:, idx, idx] = xs_arr  # the x_i factor of D_i sits where x_i - x_i = 0 would
        grouped = diff[:, :, 0::g].copy()
        for j in range(1, g):
            grouped *= diff[:, :, j::g]
        dens = to_num(grouped.astype(object).prod(axis=2) % PRIME)  # (S, t) field elements
        prefix = np.empty((count, t), dtype=object)
        prefix[:, 0] = dens[:, 0]
        for i in range(1, t):
            prefix[:, i] = prefix[:, i - 1] * dens[:, i] % _P
        num = to_num(xs_arr.astype(object).prod(axis=1) % PRIME)
        inv = invert(prefix[:, t - 1]) * num % _P  # N / (D_0 ... D_{t-1}), one per set
        coeffs = np.empty((count, t), dtype=object)
        for i in range(t - 1, 0, -1):
            coeffs[:, i] = inv * prefix[:, i - 1] % _P  # N / D_i
            inv = inv * dens[:, i] % _P
        coeffs[:, 0] = inv
        out.extend(tuple(row) for row in coeffs.tolist())
    return out


def _inv_num(a: Any) -> Any:
    if _gmp_invert is not None:
        return _gmp_invert(a, _P)
    return pow(int(a), -1, PRIME)  # pragma: no cover - gmpy2 is a declared dependency


class LagrangeCache:
    """Lagrange coefficients at 0, per holder set, computed in batches and kept (bounded).

    Args:
        maxsize: how many holder sets to keep; the oldest are dropped beyond it.
    """

    def __init__(self, maxsize: int = 1 << 16) -> None:
        if maxsize < 1:
            raise ConfigError(f"LagrangeCache maxsize must be >= 1, got {maxsize}")
        self._maxsize = maxsize
        self._coeffs: dict[tuple[int, ...], tuple[Any, ...]] = {}

    def __len__(self) -> int:
        return len(self._coeffs)

    def prepare(self, sets: Iterable[tuple[int, ...]]) -> None:
        """Compute (in one batch per size) the coefficients of every set not cached yet.

        Raises:
            ConfigError: a set with a repeated, zero or out-of-field x-coordinate.
        """
        todo: dict[int, dict[tuple[int, ...], None]] = {}
        for xs in sets:
            if xs not in self._coeffs:
                todo.setdefault(len(xs), {})[xs] = None
        for size, group in todo.items():
            batch = list(group)
            for xs in batch:
                _check_params(xs, size)
                if list(xs) != sorted(xs):
                    raise ConfigError("holder sets must list their x-coordinates in increasing order")
            for xs, c in zip(batch, _coefficients_batch(batch)):
                self._coeffs[xs] = c
        while len(self._coeffs) > self._maxsize:
            del self._coeffs[next(iter(self._coeffs))]

    def coefficients(self, xs: tuple[int, ...]) -> tuple[Any, ...]:
        """c with f(0) = sum c_i f(xs[i]) for every f of degree < len(xs)."""
        c = self._coeffs.get(xs)
        if c is None:
            self.prepare([xs])
            c = self._coeffs[xs]
        return c


def reconstruct_many(share_sets: Sequence[Mapping[int, int]], t: int,
                     cache: LagrangeCache | None = None) -> list[int]:
    """Each secret from exactly ``t`` of its shares ``{x: y}`` (the ``t`` lowest x).

    Shares beyond ``t`` are ignored, not checked: check each result against a commitment.

    Raises:
        ConfigError: a bad threshold, or a secret with fewer than ``t`` shares (names it).
    """
    _check_threshold(t)
    bases, rows = [], []
    for j, shares in enumerate(share_sets):
        if len(shares) < t:
            raise ConfigError(f"secret #{j}: need {t} shares to reconstruct, got {len(shares)}")
        base = tuple(sorted(shares)[:t])
        bases.append(base)
        rows.append([shares[x] % PRIME for x in base])
    return _combine(bases, rows, t, cache)


def _check_threshold(t: int) -> None:
    if not isinstance(t, int) or t < 1:
        raise ConfigError(f"threshold must be an integer >= 1, got {t!r}")


def _combine(bases: list[tuple[int, ...]], rows: list[list[int]], t: int,
             cache: LagrangeCache | None) -> list[int]:
    """sum_i c_i y_i for each (holder set, share values) pair, coefficients in one batch."""
    if not bases:
        return []
    cache = cache if cache is not None else LagrangeCache()
    cache.prepare(bases)
    # A plain loop, not object arrays: filling an object array from tuples of field
    # elements costs numpy a sequence probe per element, several times the products.
    coefficients, mul, p = cache.coefficients, _mul, _P
    return [int(sum(map(mul, coefficients(base), row)) % p) for base, row in zip(bases, rows)]


def reconstruct_many_bytes(share_sets: Sequence[Mapping[int, bytes]], t: int, length: int = 32,
                           cache: LagrangeCache | None = None) -> list[bytes]:
    """:func:`reconstruct_many` for byte shares from :func:`split_bytes`.

    Raises:
        ProtocolError: a used share of the wrong size or outside the field, or a secret that
            does not fit ``length`` bytes (forged shares).
        ConfigError: as :func:`reconstruct_many`.
    """
    _check_threshold(t)
    bases, rows = [], []
    for j, shares in enumerate(share_sets):
        if len(shares) < t:
            raise ConfigError(f"secret #{j}: need {t} shares to reconstruct, got {len(shares)}")
        base = tuple(sorted(shares)[:t])
        bases.append(base)
        rows.append([_share_int(x, shares[x]) for x in base])
    return [_to_bytes(v, length) for v in _combine(bases, rows, t, cache)]


def _share_int(x: int, s: bytes) -> int:
    if len(s) != SHARE_SIZE:
        raise ProtocolError(f"share from x={x} is {len(s)} bytes, expected {SHARE_SIZE}")
    v = int.from_bytes(s, "big")
    if v >= PRIME:
        raise ProtocolError(f"share from x={x} is not a field element")
    return v


def _to_bytes(secret: int, length: int) -> bytes:
    if secret.bit_length() > 8 * length:
        raise ProtocolError(f"reconstructed secret does not fit in {length} bytes: forged shares")
    return secret.to_bytes(length, "big")


class ShareBook:
    """The first ``keep`` shares of each of many secrets, kept compactly (about 41 bytes per
    share held; later shares are dropped), for :meth:`reconstruct`.

    Args:
        t: the threshold.
        keep: how many shares to keep per secret (default ``t``: the fast path, each secret
            from exactly t shares). Keep more to check the extra shares
            (``reconstruct(..., check_extra=True)``) where no commitment is available.
    """

    def __init__(self, t: int, keep: int | None = None) -> None:
        if not isinstance(t, int) or t < 1:
            raise ConfigError(f"threshold must be an integer >= 1, got {t!r}")
        keep = t if keep is None else keep
        if not isinstance(keep, int) or keep < t:
            raise ConfigError(f"ShareBook keep must be an integer >= t={t}, got {keep!r}")
        self.t = t
        self.keep = keep
        self._xs: dict[int, array[int]] = {}
        self._values: dict[int, bytearray] = {}
        self._holders: set[int] = set()  # every x that has offered a share

    def add(self, owner: int, x: int, value: bytes) -> bool:
        """Keep share ``value`` (held by x) of ``owner``'s secret unless ``t`` are kept already.

        Returns:
            Whether it was kept.

        Raises:
            ProtocolError: a share of the wrong size, or a second share from the same x.
        """
        if len(value) != SHARE_SIZE:
            raise ProtocolError(f"share from x={x} is {len(value)} bytes, expected {SHARE_SIZE}")
        return self.add_from(x, (owner,), value) == 1

    def add_from(self, x: int, owners: Sequence[int], values: bytes) -> int:
        """:meth:`add` for every share that holder ``x`` sent, as two columns: ``values``
        holds the shares back to back, the i-th of ``owners[i]``'s secret. Validates them
        all before keeping any. Returns how many were kept."""
        if len(set(owners)) != len(owners):
            raise ProtocolError(f"holder x={x} sent two shares of one secret")
        if len(values) != SHARE_SIZE * len(owners):
            raise ProtocolError(f"{len(values)} bytes of shares from x={x} are not "
                                f"{len(owners)} shares of {SHARE_SIZE} bytes")
        if x in self._holders:  # only a holder seen before can repeat a share (a scan each)
            for owner in owners:
                xs = self._xs.get(owner)
                if xs is not None and x in xs:
                    raise ProtocolError(f"a second share of secret {owner} from x={x}")
        self._holders.add(x)
        kept, at = 0, 0
        t, xs_of, kept_values = self.keep, self._xs, self._values
        for owner in owners:
            xs = xs_of.get(owner)
            if xs is None:
                xs = xs_of[owner] = array("q")
                kept_values[owner] = bytearray()
            if len(xs) < t:
                xs.append(x)
                kept_values[owner] += values[at:at + SHARE_SIZE]
                kept += 1
            at += SHARE_SIZE
        return kept

    def count(self, owner: int) -> int:
        """Shares kept for ``owner`` (at most ``keep``)."""
        xs = self._xs.get(owner)
        return 0 if xs is None else len(xs)

    def shares(self, owner: int) -> dict[int, bytes]:
        """The kept shares of ``owner`` as ``{x: value}``."""
        xs, vals = self._xs.get(owner, array("q")), self._values.get(owner, bytearray())
        return {x: bytes(vals[i * SHARE_SIZE : (i + 1) * SHARE_SIZE]) for i, x in enumerate(xs)}

    def reconstruct(self, owners: Sequence[int], length: int = 32,
                    cache: LagrangeCache | None = None, check_extra: bool = False) -> list[bytes]:
        """The secrets of ``owners``, each from the t lowest-x of its kept shares (see
        :func:`reconstruct_many_bytes`; the caller checks each against a commitment).

        With ``check_extra`` every kept share beyond t is checked to lie on the same
        polynomial (:func:`reconstruct_bytes`, one secret at a time: the slow path).

        Raises:
            ConfigError: an owner with fewer than ``t`` shares.
            ProtocolError: a share outside the field, a secret that does not fit, or (with
                ``check_extra``) an inconsistent extra share.
        """
        if check_extra:
            out = []
            for u in owners:
                if self.count(u) < self.t:
                    raise ConfigError(f"secret {u}: need {self.t} shares to reconstruct, "
                                      f"got {self.count(u)}")
                out.append(reconstruct_bytes(self.shares(u), self.t, length))
            return out
        t, size = self.t, SHARE_SIZE
        bases, rows = [], []
        for u in owners:
            xs = self._xs.get(u, array("q"))
            if len(xs) < t:
                raise ConfigError(f"secret {u}: need {t} shares to reconstruct, got {len(xs)}")
            blob = memoryview(self._values[u])
            order = sorted(range(len(xs)), key=xs.__getitem__)[:t]
            bases.append(tuple(xs[i] for i in order))
            row = [int.from_bytes(blob[i * size : (i + 1) * size], "big") for i in order]
            if max(row) >= PRIME:
                bad = next(xs[i] for i, v in zip(order, row) if v >= PRIME)
                raise ProtocolError(f"share from x={bad} is not a field element")
            rows.append(row)
        return [_to_bytes(v, length) for v in _combine(bases, rows, t, cache)]

    def clear(self) -> None:
        self._xs.clear()
        self._values.clear()
        self._holders.clear()
