"""Fixed-point encoding of clipped updates into the ring Z_{2^b}, and the headroom check.

update (float) -> L2 clip to C -> scale by a weight w <= w_max -> fixed point with 2^f levels
and stochastic rounding (CSPRNG) -> Z_{2^b}, b in {32, 64} (uint32/uint64, free wraparound).

Every encoded update carries one extra coordinate, the weight ``w`` itself, so a weighted
sum and its total weight go through the same secure sum (unweighted: w = 1, and the last
coordinate of the sum counts the contributors).

Headroom: each coordinate of one encoded update has magnitude at most
``M = ceil(w_max * max(C, 1) * 2^f)``; the centred decode of a sum of ``n`` updates plus
``noise_bound`` of added integer noise is exact while ``n*M + noise_bound <= 2^(b-1) - 1``.
:class:`EncodingConfig` checks this at construction and refuses settings that could wrap,
naming the numbers that fit; :func:`headroom` answers the same question for users.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

import numpy as np

from secagg.errors import ConfigError
from secagg.rng import Csprng

__all__ = ["EncodingConfig", "Headroom", "clip_l2", "headroom"]

_BITS = (32, 64)
_ENC_CHUNK = 1 << 16  # 64k values a chunk: 2^16 and 2^17 measured fastest here, 2^14 about 20% slower
_TWO32 = 2.0**32
_TWO62 = 2.0**62


def _max_coord(clip: float, frac_bits: int, max_weight: float) -> int:
    return math.ceil(max_weight * max(clip, 1.0) * 2.0**frac_bits)


@dataclass(frozen=True, slots=True)
class Headroom:
    """What a sum of ``n`` encoded updates needs, and what would fit.

    Attributes:
        required_bits: the smallest ring width that holds the sum (before rounding up to 32/64).
        bits: the ring width asked about.
        fits: whether ``bits`` is enough.
        max_frac_bits: the largest ``frac_bits`` that fits in ``bits`` (-1 if none).
        max_clients: the largest ``n`` that fits in ``bits`` with the other settings.
        max_clip: the largest clip that fits (clips below 1.0 do not reduce the weight
            coordinate's range, so this may be 0.0 when nothing fits).
    """

    required_bits: int
    bits: int
    fits: bool
    max_frac_bits: int
    max_clients: int
    max_clip: float

    def advice(self) -> str:
        """One sentence naming settings that would fit."""
        opts = []
        if self.bits == 32:
            opts.append("bits=64")
        if self.max_frac_bits >= 0:
            opts.append(f"frac_bits<={self.max_frac_bits}")
        if self.max_clients >= 1:
            opts.append(f"max_clients<={self.max_clients}")
        if self.max_clip >= 1.0:
            opts.append(f"clip<={self.max_clip:.6g}")
        return "use " + (" or ".join(opts) if opts else "fewer clients or a smaller weight cap")


def headroom(
    n: int,
    clip: float,
    frac_bits: int,
    bits: int = 32,
    max_weight: float = 1.0,
    noise_bound: int = 0,
) -> Headroom:
    """How many ring bits a sum of ``n`` encoded updates needs, and what fits in ``bits``.

    Raises:
        ConfigError: a non-positive ``n``, ``clip`` or ``max_weight``, negative ``frac_bits``
            or ``noise_bound``, or ``bits`` not in (32, 64).
    """
    _check_basic(n, clip, frac_bits, bits, max_weight, noise_bound)
    m = _max_coord(clip, frac_bits, max_weight)
    top = n * m + noise_bound  # largest magnitude of the centred sum
    required = top.bit_length() + 1  # a sign bit plus the magnitude
    limit = 2 ** (bits - 1) - 1
    max_f = -1
    for f in range(frac_bits + 64, -1, -1):
        if n * _max_coord(clip, f, max_weight) + noise_bound <= limit:
            max_f = f
            break
    max_n = max(0, (limit - noise_bound) // m)
    return Headroom(required, bits, top <= limit, max_f, max_n,
                    _max_clip(n, frac_bits, max_weight, noise_bound, limit))


def _max_clip(n: int, frac_bits: int, max_weight: float, noise_bound: int, limit: int) -> float:
    """The largest clip c >= 1, with at most 6 significant digits (so it prints exactly),
    such that n*ceil(w*c*2^f) + noise fits; 0.0 when even c = 1 does not fit."""
    def fits(c: float) -> bool:
        return n * _max_coord(c, frac_bits, max_weight) + noise_bound <= limit

    if not fits(1.0):
        return 0.0
    c = float(f"{((limit - noise_bound) // n) / (max_weight * 2.0**frac_bits):.6g}")
    while c > 1.0 and not fits(c):
        digits = 10.0 ** (math.floor(math.log10(c)) - 5)
        c = float(f"{c - digits:.6g}")
    return max(c, 1.0)


def _check_basic(
    n: int, clip: float, frac_bits: int, bits: int, max_weight: float, noise_bound: int
) -> None:
    if not isinstance(n, int) or n < 1:
        raise ConfigError(f"number of clients must be an integer >= 1, got {n!r}")
    if not (isinstance(clip, (int, float)) and math.isfinite(clip) and clip > 0):
        raise ConfigError(f"clip must be a finite number > 0, got {clip!r}")
    if not isinstance(frac_bits, int) or not 0 <= frac_bits <= 62:
        raise ConfigError(f"frac_bits must be an integer in 0..62, got {frac_bits!r}")
    if bits not in _BITS:
        raise ConfigError(f"bits must be 32 or 64, got {bits!r}")
    if not (math.isfinite(max_weight) and max_weight > 0):
        raise ConfigError(f"max_weight must be a finite number > 0, got {max_weight!r}")
    if not isinstance(noise_bound, int) or noise_bound < 0:
        raise ConfigError(f"noise_bound must be an integer >= 0, got {noise_bound!r}")


def clip_l2(x: np.ndarray, clip: float) -> tuple[np.ndarray, float]:
    """Scale ``x`` so that its L2 norm is at most ``clip``.

    Returns:
        ``(clipped float64 copy, original norm)``.

    Raises:
        ConfigError: non-finite values in ``x`` or a non-positive ``clip``.
    """
    if not (math.isfinite(clip) and clip > 0):
        raise ConfigError(f"clip must be a finite number > 0, got {clip!r}")
    v = np.asarray(x, dtype=np.float64)
    norm = _l2_norm(v)
    if norm > clip:
        return v * (clip / norm), norm
    return v.copy(), norm


@dataclass(frozen=True, slots=True)
class EncodingConfig:
    """How updates become ring elements.

    Args:
        clip: L2 clipping bound C of one update (> 0).
        frac_bits: fixed-point fraction bits f (precision 2^-f per client).
        bits: ring width b, 32 or 64.
        max_clients: the most clients whose updates may be summed (n_max).
        max_weight: the largest weight a client may apply (w_max).
        noise_bound: integer magnitude reserved in the sum for added noise (distributed DP).

    Raises:
        ConfigError: if a sum of ``max_clients`` updates could wrap, naming what would fit.
    """

    clip: float = 1.0
    frac_bits: int = 16
    bits: int = 32
    max_clients: int = 1000
    max_weight: float = 1.0
    noise_bound: int = 0

    def __post_init__(self) -> None:
        h = headroom(
            self.max_clients, self.clip, self.frac_bits, self.bits, self.max_weight,
            self.noise_bound,
        )
        if not h.fits:
            raise ConfigError(
                f"a sum of {self.max_clients} updates with clip {self.clip:g}, frac_bits "
                f"{self.frac_bits}, max_weight {self.max_weight:g} and noise_bound "
                f"{self.noise_bound} needs {h.required_bits} bits but bits={self.bits}; "
                + h.advice()
            )

    @property
    def dtype(self) -> np.dtype:
        """The ring's numpy dtype (uint32 or uint64)."""
        return np.dtype(np.uint32 if self.bits == 32 else np.uint64)

    @property
    def scale(self) -> float:
        """2^f."""
        return float(2**self.frac_bits)

    def l2_sensitivity(self, dim: int) -> float:
        """Worst-case L2 norm of one encoded update of ``dim`` values, weight included.

        Stochastic rounding moves each coordinate by less than 1, so the norm of the rounded
        value part is below ``w_max*C*2^f + sqrt(dim)``, and the weight coordinate below
        ``w_max*2^f + 1``. This is what DP noise is calibrated to, in integer units.
        """
        values = self.max_weight * self.clip * self.scale + math.sqrt(dim)
        weight = self.max_weight * self.scale + 1.0
        return math.sqrt(values * values + weight * weight)

    # -- client side ---------------------------------------------------------------------
    def encode(self, x: np.ndarray, rng: Csprng, weight: float = 1.0) -> np.ndarray:
        """Clip, weight, quantise with stochastic rounding, and map into the ring.

        Args:
            x: the update, a 1-D float array.
            rng: the client's CSPRNG (stochastic rounding bits).
            weight: the client's weight, 0 < weight <= max_weight.

        Returns:
            A ring array of length ``len(x) + 1``; the last entry encodes ``weight``.

        Raises:
            ConfigError: a weight out of range, a non-1-D or non-finite update.
        """
        if not (math.isfinite(weight) and 0 < weight <= self.max_weight):
            raise ConfigError(
                f"weight must be in (0, {self.max_weight:g}] (max_weight), got {weight!r}"
            )
        arr = np.asarray(x)
        if arr.ndim != 1:
            raise ConfigError(f"update must be a 1-D vector, got shape {arr.shape}")
        if not np.issubdtype(arr.dtype, np.floating) and not np.issubdtype(arr.dtype, np.integer):
            raise ConfigError(f"update must be a float array, got dtype {arr.dtype}")
        within = _surely_within(arr, self.clip)
        if within:
            factor = weight * self.scale  # what the exact norm's branch gives: no clipping
        else:
            norm = _l2_norm(arr)
            factor = weight * self.scale * (self.clip / norm if norm > self.clip else 1.0)
        out = np.empty(arr.size + 1, self.dtype)
        signed = out.view(np.int32 if self.bits == 32 else np.int64)
        top = _max_coord(self.clip, self.frac_bits, self.max_weight)
        # Stochastic rounding: floor(y + u), u = bits * 2^-32 with 32 fresh CSPRNG bits per
        # coordinate, so P[round up] = frac(y) to within 2^-32 at any magnitude of y. It is
        # computed exactly, at scale 2^32: with Y = 2^32 y, floor(y + u) = (floor(Y) + bits)
        # >> 32 in integers. Y is formed by one multiply, Y = x * (factor * 2^32), in x's own
        # float type: float32 updates are rounded in float32, and that rounding is part of
        # the encoding. The clamp to +-M only ever acts when the float rescale or norm
        # overshot by an ulp: it keeps the headroom bound unconditional, and it is skipped
        # when it provably cannot act (the multiply is monotone in x, so Y lies between its
        # values at min(x) and max(x), and floor(y + u) in [floor(y), ceil(y)]). An update
        # surely within the clip needs neither end: its norm is below 0.999 C, so |y| <
        # 0.999 C w 2^f (1 + 2^-22) < M, and M <= 2^30 keeps floor(Y) + bits inside int64.
        n = arr.size
        scale32 = factor * _TWO32
        ydt = np.float32 if arr.dtype == np.float32 else np.float64
        exact_range, fits = True, True
        if n and not (within and top <= 2**30):
            ends = np.multiply(np.array([arr.max(), arr.min()], arr.dtype), scale32, dtype=ydt)
            hi, lo = float(ends[0]), float(ends[1])
            exact_range = -(math.floor(-hi) >> 32) <= top and math.floor(lo) >> 32 >= -top
            fits = max(hi, -lo) < _TWO62  # floor(Y) + bits cannot leave int64
        chunk = max(1, min(n, _ENC_CHUNK))
        ubits = np.empty(chunk, np.uint32)  # CSPRNG bits, drawn chunk by chunk in order
        ybuf = np.empty(chunk, ydt if fits else np.float64)
        zbuf = np.empty(chunk if fits else 0, np.int64)
        high = 1 if sys.byteorder == "little" else 0  # the int64's upper uint32
        take_high = exact_range and self.bits == 32
        for s in range(0, n, _ENC_CHUNK):
            xs = arr[s : s + _ENC_CHUNK]
            m = xs.size
            y = ybuf[:m]
            if fits:
                np.multiply(xs, scale32, out=y, dtype=ydt)
                z = zbuf[:m]
                np.floor(y, out=z, casting="unsafe")  # exact: |Y| < 2^62
                np.add(z, rng.fill(ubits[:m]), out=z)
                if take_high:  # the ring value is (floor(Y) + bits) >> 32 mod 2^32
                    out[s : s + m] = z.view(np.uint32)[high::2]
                    continue
                np.right_shift(z, 32, out=z)
                if not exact_range:
                    np.clip(z, -top, top, out=z)
                signed[s : s + m] = z
            else:
                y[...] = np.multiply(xs, scale32, dtype=ydt)
                signed[s : s + m] = _round_wide(y, rng.fill(ubits[:m]), top)
        weight_y = math.floor(weight * self.scale * _TWO32)
        weight_bits = int(rng.fill(ubits[:1])[0])
        signed[-1] = min((weight_y + weight_bits) >> 32, top)
        return out

    # -- decoding party ------------------------------------------------------------------
    def centre(self, ring_sum: np.ndarray) -> np.ndarray:
        """The ring sum as signed integers (int64), centred on zero."""
        if ring_sum.dtype != self.dtype:
            raise ConfigError(f"ring sum must be {self.dtype}, got {ring_sum.dtype}")
        signed = ring_sum.view(np.int32 if self.bits == 32 else np.int64)
        return signed.astype(np.int64)

    def decode(self, int_sum: np.ndarray) -> tuple[np.ndarray, float]:
        """Centred integer sum -> (sum of w*x as float64, total weight)."""
        vals = int_sum.astype(np.float64) / self.scale
        return vals[:-1], float(vals[-1])


_DOT_CHUNK = 1 << 13  # below OpenBLAS's threading threshold for dot: one core per call


def _round_wide(y: np.ndarray, bits: np.ndarray, top: int) -> np.ndarray:
    """floor(Y / 2^32 + bits / 2^32) clamped to +-top, for Y that int64 cannot hold (64-bit
    rings near their range). ``y`` (float64, holding Y) is overwritten and returned.

    Exact in float64: floor(Y) is an integer; its quotient q = floor(floor(Y) / 2^32) and
    remainder r = floor(Y) - 2^32 q in [0, 2^32) are exact (powers of two, and a remainder
    that is representable); the result is q + [r + bits >= 2^32], with r + bits < 2^33.
    """
    np.floor(y, out=y)
    q = np.floor(y * 2.0**-32)
    np.subtract(y, q * _TWO32, out=y)  # r
    np.add(y, bits, out=y)
    q += y >= _TWO32
    limit = float(top)
    if limit > top:  # the largest float64 <= top: clamps nothing that is <= top
        limit = math.nextafter(limit, 0.0)
    return np.clip(q, -limit, limit, out=q)


def _surely_within(x: np.ndarray, clip: float) -> bool:
    """True only when the L2 norm of a float32 ``x`` is certainly at most ``clip`` (so
    clipping cannot act), decided by a float32 dot product in chunks.

    Each chunk's float32 sum of m non-negative squares is within a factor (1 +- m*2^-24)
    of the exact one (any summation order, FMA or not) plus at most m*2^-148 of underflow;
    the float64 einsum of :func:`_l2_norm` is within n*2^-53. So ``1.01 * s + n*2^-140 <
    clip^2`` implies that the exact norm, and the float64 one the clipping branch tests, are
    both at most ``clip``: the encoding is the same integers as with :func:`_l2_norm`, bit
    for bit. False (NaN, inf, near or over the clip, other dtypes) sends the caller to
    :func:`_l2_norm`, which also rejects non-finite input.
    """
    if x.dtype != np.float32:
        return False
    total = 0.0
    with np.errstate(over="ignore", invalid="ignore"):  # inf/NaN: the exact path decides
        for s in range(0, x.size, _DOT_CHUNK):
            c = x[s : s + _DOT_CHUNK]
            total += float(np.dot(c, c))
    limit = clip * clip
    return math.isfinite(total) and 1.01 * total + x.size * 2.0**-140 < limit


def _l2_norm(x: np.ndarray) -> float:
    """L2 norm accumulated in float64 (chunked, so float32 input needs no full copy).

    Raises:
        ConfigError: NaN or infinite values.
    """
    # einsum's own loop (float64 accumulation, buffered casts), not BLAS dot: BLAS threads
    # fight for cores on a busy machine.
    with np.errstate(over="ignore", invalid="ignore"):  # handled below
        total = float(np.einsum("i,i->", x, x, dtype=np.float64))
    if math.isfinite(total):
        return math.sqrt(total)
    if not np.all(np.isfinite(x)):
        raise ConfigError("update contains NaN or infinite values; refusing to encode it")
    # finite but huge: the squares overflowed, so scale by the largest magnitude first
    big = float(np.max(np.abs(x)))
    total = 0.0
    for s in range(0, x.size, _ENC_CHUNK):
        c = x[s : s + _ENC_CHUNK].astype(np.float64) / big
        total += float(np.square(c).sum())
    return big * math.sqrt(total)
