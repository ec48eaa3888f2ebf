"""Exact sampling from the discrete Gaussian, driven by :class:`secagg.rng.Csprng`.

Theory of operation
-------------------
The discrete Gaussian ``N_Z(0, sigma^2)`` gives each integer ``x`` a probability proportional to
``exp(-x^2 / (2 sigma^2))``. We sample it exactly with the rejection sampler of Canonne, Kamath
and Steinke, "The Discrete Gaussian for Differential Privacy" (NeurIPS 2020), section 5:

- Algorithm 1, ``Bernoulli(exp(-gamma))`` for a rational ``gamma``: for ``gamma <= 1`` draw
  ``Bernoulli(gamma / k)`` for k = 1, 2, ... until the first failure and answer whether the number
  of draws was odd; for ``gamma > 1`` first draw ``floor(gamma)`` times ``Bernoulli(exp(-1))``.
- Algorithm 2, the discrete Laplace with integer scale ``t``.
- Algorithm 3, the discrete Gaussian: ``t = floor(sigma) + 1``, propose ``Y ~ Lap_Z(t)`` and
  accept with probability ``exp(-(|Y| - sigma^2/t)^2 / (2 sigma^2))``.

Every ``Bernoulli(a/b)`` is the exact integer comparison ``U < a`` with ``U`` uniform below ``b``,
drawn by rejection from the CSPRNG. No floating point decides an outcome.

:func:`sample_discrete_gaussian_scalar` is the reference: one sample, Python integers and
:class:`fractions.Fraction` throughout. :func:`sample_discrete_gaussian` runs the same algorithm
on many lanes at once with numpy integer arrays. Its one restructuring is in the acceptance step,
whose exact rationals (``sigma^2`` from a float has a denominator near 2^100) do not fit in int64:

- ``gamma`` is computed in float64 together with a proven bound on its error.
- ``floor(gamma)`` is taken from the float only when the bound shows it is the exact floor.
- ``Bernoulli(x)`` for ``x = frac(gamma) / k`` is decided by comparing a uniform 53-bit integer
  ``u`` (the leading bits of a uniform real ``U``) with ``x * 2^53``: the float decides when the
  error bound puts ``u`` clearly on one side. Otherwise (probability below 2^-40 per draw) that
  lane recomputes ``x`` exactly with fractions, and when ``u`` is still undecided draws the rest
  of ``U``'s bits as an exact ``Bernoulli(x * 2^53 - u)``.
- Lanes whose float filter is inconclusive, and all very large candidates, run the scalar exact
  ``Bernoulli(exp(-gamma))``.

So each lane's outcome is exactly that of the reference algorithm; only the cost differs.

.. warning::
   The output is noise that protects individuals. Never draw it from a seeded generator in
   production, and never reuse a generator's stream for anything else.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import numpy.typing as npt

from secagg.errors import ConfigError, SecAggTypeError
from secagg.rng import Csprng

__all__ = [
    "MAX_SIGMA_SQ",
    "MIN_SIGMA_SQ",
    "bernoulli_exp",
    "sample_discrete_gaussian",
    "sample_discrete_gaussian_scalar",
]

#: Largest accepted variance parameter (sigma <= 2^40).
MAX_SIGMA_SQ = Fraction(2**80)
#: Smallest accepted variance parameter (sigma >= 2^-20).
MIN_SIGMA_SQ = Fraction(1, 2**40)

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]

_CHUNK = 1 << 20  # lanes processed together by the vectorized sampler
_MAX_ABS = 1 << 62  # proposals beyond this magnitude are rejected (see sample_discrete_gaussian)
_TWO53 = float(2**53)
# Float filter of the acceptance step. _ERR_SCALE multiplies the proven error bound of gamma
# (8 unit roundoffs per unit of (|y| + mu)^2 / sigma^2 + gamma + 1, about 3x the proof's need);
# _SLACK_UNITS widens each 53-bit comparison. Tests raise both to force the exact fallbacks.
_ERR_SCALE = 2.0**-50
_SLACK_UNITS = 4.0
_FAST_GAMMA_MAX = 2.0**40  # larger gamma: the lane runs the scalar exact Bernoulli
_FAST_ABS_MAX = 1 << 52  # larger |y|: not exact in float64, the lane runs the scalar path


def _as_sigma_sq(sigma_sq: Fraction | float) -> Fraction:
    if isinstance(sigma_sq, bool) or not isinstance(sigma_sq, (Fraction, int, float)):
        raise SecAggTypeError(
            f"sigma_sq must be a Fraction, int or float, got {type(sigma_sq).__name__}")
    if isinstance(sigma_sq, float) and not math.isfinite(sigma_sq):
        raise ConfigError(f"sigma_sq must be finite, got {sigma_sq}")
    s2 = Fraction(sigma_sq)
    if not MIN_SIGMA_SQ <= s2 <= MAX_SIGMA_SQ:
        raise ConfigError(
            f"sigma_sq must lie in [2**-40, 2**80] (sigma in [2**-20, 2**40]), got {float(s2):.6g}"
        )
    return s2


def _laplace_scale(s2: Fraction) -> int:
    """``t = floor(sigma) + 1``; floor(sqrt(p/q)) equals isqrt(floor(p/q))."""
    return math.isqrt(s2.numerator // s2.denominator) + 1


# -- scalar reference ---------------------------------------------------------------------


def _bernoulli(num: int, den: int, rng: Csprng) -> bool:
    """Exactly ``Bernoulli(num / den)`` for ``0 <= num <= den``."""
    return rng.randbelow(den) < num


def _bernoulli_exp_le1(gamma: Fraction, rng: Csprng, k: int = 1) -> bool:
    """CKS Algorithm 1 for ``0 <= gamma <= 1``, optionally resumed at draw ``k``."""
    while _bernoulli(gamma.numerator, gamma.denominator * k, rng):
        k += 1
    return k % 2 == 1


def bernoulli_exp(gamma: Fraction | int, rng: Csprng) -> bool:
    """Exactly ``Bernoulli(exp(-gamma))`` for a rational ``gamma >= 0`` (CKS 2020, Algorithm 1).

    Args:
        gamma: the rate, an exact rational.
        rng: source of randomness.

    Returns:
        ``True`` with probability ``exp(-gamma)``.

    Raises:
        ConfigError: if ``gamma`` is negative.
    """
    g = Fraction(gamma)
    if g < 0:
        raise ConfigError(f"bernoulli_exp needs gamma >= 0, got {g}")
    whole = g.numerator // g.denominator
    for _ in range(whole):
        if not _bernoulli_exp_le1(Fraction(1), rng):
            return False
    return _bernoulli_exp_le1(g - whole, rng)


def _discrete_laplace_scalar(t: int, rng: Csprng) -> int:
    """CKS Algorithm 2 with integer scale ``t`` (s = 1)."""
    while True:
        u = rng.randbelow(t)
        if not _bernoulli_exp_le1(Fraction(u, t), rng):
            continue
        v = 0
        while _bernoulli_exp_le1(Fraction(1), rng):
            v += 1
        x = u + t * v
        negative = rng.randbits(1) == 1
        if negative and x == 0:
            continue
        return -x if negative else x


def _gamma(abs_y: int, s2: Fraction, t: int) -> Fraction:
    return (abs_y - s2 / t) ** 2 / (2 * s2)


def sample_discrete_gaussian_scalar(sigma_sq: Fraction | float, rng: Csprng) -> int:
    """One exact sample of ``N_Z(0, sigma_sq)`` (CKS 2020, Algorithm 3), the reference sampler.

    Args:
        sigma_sq: the variance parameter ``sigma^2``, an exact rational in [2^-40, 2^80]. A
            float is taken at its exact binary value.
        rng: source of randomness.

    Returns:
        A Python int.

    Raises:
        SecAggTypeError: if ``sigma_sq`` is not a number.
        ConfigError: if ``sigma_sq`` is out of range.
    """
    s2 = _as_sigma_sq(sigma_sq)
    t = _laplace_scale(s2)
    while True:
        y = _discrete_laplace_scalar(t, rng)
        if bernoulli_exp(_gamma(abs(y), s2, t), rng):
            return y


# -- vectorized building blocks -------------------------------------------------------------


def _bit_length(values: IntArray) -> IntArray:
    """An upper bound on the bit length of each non-negative value (exact below 2^53).

    Rounding to float64 never crosses below a power of two, so the bound is never too small.
    """
    return np.frexp(values.astype(np.float64))[1].astype(np.int64)


def _uniform_below(bound: IntArray, rng: Csprng) -> IntArray:
    """Uniform integers in ``[0, bound[i])`` for ``1 <= bound[i] < 2^63``, by rejection."""
    out = np.empty(bound.size, np.int64)
    masks = ((np.uint64(1) << _bit_length(bound - 1).astype(np.uint64)) - np.uint64(1)).astype(
        np.uint64
    )
    todo = np.arange(bound.size)
    while todo.size:
        draw = (rng.uint64(todo.size) & masks[todo]).astype(np.int64)
        ok = draw < bound[todo]
        out[todo[ok]] = draw[ok]
        todo = todo[~ok]
    return out


def _uniform_below_scalar(bound: int, n: int, rng: Csprng) -> IntArray:
    """``n`` uniform integers in ``[0, bound)`` for ``1 <= bound < 2^63``."""
    mask = np.uint64((1 << (bound - 1).bit_length()) - 1)
    out = np.empty(n, np.int64)
    todo = np.arange(n)
    while todo.size:
        draw = (rng.uint64(todo.size) & mask).astype(np.int64)
        ok = draw < bound
        out[todo[ok]] = draw[ok]
        todo = todo[~ok]
    return out


def _bernoulli_exp_le1_vec(num: IntArray, den: int, rng: Csprng) -> BoolArray:
    """CKS Algorithm 1 per lane: ``Bernoulli(exp(-num[i] / den))`` for ``0 <= num[i] <= den``."""
    result = np.empty(num.size, np.bool_)
    lanes = np.arange(num.size)
    k = np.ones(num.size, np.int64)
    k_max = (_MAX_ABS // den) if den <= _MAX_ABS else 0
    while lanes.size:
        big = k > k_max  # den * k would not fit; finish those lanes exactly (never in practice)
        for j in np.flatnonzero(big):
            lane = int(lanes[j])
            result[lane] = _bernoulli_exp_le1(Fraction(int(num[lane]), den), rng, int(k[j]))
        if big.any():
            lanes, k = lanes[~big], k[~big]
            continue
        draw = _uniform_below(k * den, rng) < num[lanes]
        stop = ~draw
        result[lanes[stop]] = (k[stop] & 1) == 1
        lanes, k = lanes[draw], k[draw] + 1
    return result


def _bernoulli_exp_minus_one(n: int, rng: Csprng) -> BoolArray:
    return _bernoulli_exp_le1_vec(np.ones(n, np.int64), 1, rng)


def _discrete_laplace_vec(t: int, n: int, rng: Csprng) -> IntArray:
    """CKS Algorithm 2 on ``n`` lanes; proposals with ``|x| > 2^62`` restart (truncation)."""
    out = np.empty(n, np.int64)
    pending = np.arange(n)
    scale = np.int64(t)
    v_max = (_MAX_ABS - t) // t
    while pending.size:
        u = _uniform_below_scalar(t, pending.size, rng)
        keep = _bernoulli_exp_le1_vec(u, t, rng)
        retry = [pending[~keep]]
        lanes, u = pending[keep], u[keep]
        v = np.zeros(lanes.size, np.int64)
        going = np.arange(lanes.size)
        while going.size:
            more = _bernoulli_exp_minus_one(going.size, rng)
            going = going[more]
            v[going] += 1
        fits = v <= v_max
        x = u + scale * np.where(fits, v, 0)
        negative = (rng.uint64(lanes.size) & np.uint64(1)).astype(np.bool_)
        good = fits & ~(negative & (x == 0))
        out[lanes[good]] = np.where(negative, -x, x)[good]
        retry.append(lanes[~good])
        pending = np.concatenate(retry)
    return out


class _Plan:
    """Per-sigma constants of the vectorized acceptance step."""

    __slots__ = ("mu_f", "s2", "s2_f", "t", "two_s2_f")

    def __init__(self, s2: Fraction) -> None:
        self.s2 = s2
        self.t = _laplace_scale(s2)
        self.s2_f = float(s2)  # correctly rounded
        self.mu_f = float(s2 / self.t)  # correctly rounded
        self.two_s2_f = 2.0 * self.s2_f

    def gamma(self, abs_y: int) -> Fraction:
        return _gamma(abs_y, self.s2, self.t)


def _resolve_exact(u: int, x: Fraction, rng: Csprng) -> bool:
    """``U < x`` for ``U = (u + V) / 2^53`` with ``V`` uniform in [0, 1), drawn lazily."""
    scaled = x * 2**53
    if u + 1 <= scaled:
        return True
    if u >= scaled:
        return False
    rest = scaled - u  # in (0, 1)
    return _bernoulli(rest.numerator, rest.denominator, rng)


def _bernoulli_exp_frac_vec(
    frac: FloatArray, err: FloatArray, abs_y: IntArray, plan: _Plan, rng: Csprng
) -> BoolArray:
    """Algorithm 1 on ``gamma - floor(gamma)``, given within ``err`` by ``frac``."""
    result = np.empty(frac.size, np.bool_)
    lanes = np.arange(frac.size)
    k = np.ones(frac.size, np.int64)
    while lanes.size:
        kf = k.astype(np.float64)
        threshold = frac[lanes] / kf * _TWO53
        width = err[lanes] / kf * _TWO53 + _SLACK_UNITS
        u = (rng.uint64(lanes.size) >> np.uint64(11)).astype(np.float64)  # exact, < 2^53
        draw = u + 1.0 <= threshold - width
        unsure = ~draw & (u < threshold + width)
        for j in np.flatnonzero(unsure):
            gamma = plan.gamma(int(abs_y[lanes[j]]))
            x = (gamma - gamma.numerator // gamma.denominator) / int(k[j])
            draw[j] = _resolve_exact(int(u[j]), x, rng)
        stop = ~draw
        result[lanes[stop]] = (k[stop] & 1) == 1
        lanes, k = lanes[draw], k[draw] + 1
    return result


def _accept_vec(abs_y: IntArray, plan: _Plan, rng: Csprng) -> BoolArray:
    """``Bernoulli(exp(-gamma(|y|)))`` per lane, exactly (CKS Algorithm 3's acceptance)."""
    y = abs_y.astype(np.float64)
    d = y - plan.mu_f
    g = (d * d) / plan.two_s2_f
    a = y + plan.mu_f
    # Error bound, with unit roundoff r = 2^-53, |y| < 2^52 exact, mu_f and s2_f correctly
    # rounded, A = |y| + mu: |d_f - d| <= 2rA, |d_f^2 - d^2| <= 5rA^2, hence
    # |g - gamma| <= 2.6 r A^2 / sigma^2 + 2.1 r gamma. err below is 8r (A^2/sigma^2 + gamma + 1).
    err = _ERR_SCALE * (a * a / plan.s2_f + g + 1.0)
    fl = np.floor(g)
    sure_floor = ((fl == 0.0) | (g - fl > 2.0 * err)) & (fl + 1.0 - g > 2.0 * err)
    fast = sure_floor & (g < _FAST_GAMMA_MAX) & (abs_y < _FAST_ABS_MAX)

    result = np.zeros(abs_y.size, np.bool_)
    for i in np.flatnonzero(~fast):
        result[i] = bernoulli_exp(plan.gamma(int(abs_y[i])), rng)

    idx = np.flatnonzero(fast)
    whole = fl[idx].astype(np.int64)
    alive = np.ones(idx.size, np.bool_)
    going = np.flatnonzero(whole > 0)
    while going.size:  # floor(gamma) draws of Bernoulli(exp(-1)), stop at the first failure
        ok = _bernoulli_exp_minus_one(going.size, rng)
        alive[going[~ok]] = False
        whole[going] -= 1
        going = going[ok]
        going = going[whole[going] > 0]
    live = np.flatnonzero(alive)
    sub = idx[live]
    result[sub] = _bernoulli_exp_frac_vec(g[sub] - fl[sub], err[sub], abs_y[sub], plan, rng)
    return result


def _sample_chunk(plan: _Plan, n: int, rng: Csprng) -> IntArray:
    out = np.empty(n, np.int64)
    pending = np.arange(n)
    while pending.size:
        y = _discrete_laplace_vec(plan.t, pending.size, rng)
        accept = _accept_vec(np.abs(y), plan, rng)
        out[pending[accept]] = y[accept]
        pending = pending[~accept]
    return out


def sample_discrete_gaussian(
    sigma_sq: Fraction | float, size: int, rng: Csprng
) -> IntArray:
    """``size`` independent exact samples of ``N_Z(0, sigma_sq)``, vectorized.

    Same algorithm and distribution as :func:`sample_discrete_gaussian_scalar` (see the module
    docstring), except that a discrete-Laplace proposal above 2^62 in magnitude is rejected so
    the result fits int64. That truncation changes the distribution by less than
    ``exp(-2^41)`` in total variation for every accepted ``sigma_sq`` (sigma <= 2^40).

    Args:
        sigma_sq: the variance parameter ``sigma^2``, an exact rational in [2^-40, 2^80]. A
            float is taken at its exact binary value.
        size: number of samples, >= 0.
        rng: source of randomness.

    Returns:
        An int64 array of shape ``(size,)``.

    Raises:
        SecAggTypeError: if ``sigma_sq`` is not a number or ``size`` not an int.
        ConfigError: if ``sigma_sq`` is out of range or ``size`` is negative.
    """
    s2 = _as_sigma_sq(sigma_sq)
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise SecAggTypeError(f"size must be an int, got {type(size).__name__}")
    if size < 0:
        raise ConfigError(f"size must be >= 0, got {size}")
    plan = _Plan(s2)
    out = np.empty(int(size), np.int64)
    for start in range(0, int(size), _CHUNK):
        stop = min(start + _CHUNK, int(size))
        out[start:stop] = _sample_chunk(plan, stop - start, rng)
    return out
