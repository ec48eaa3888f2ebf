"""From guesses to an epsilon lower bound: the one-run auditing theorem.

Steinke, Nasr and Jagielski, "Privacy Auditing with One (1) Training Run" (NeurIPS 2023),
Theorem 3.1. ``m`` canaries are each included independently with probability 1/2; after
one run an auditor guesses "in" or "out" for ``r`` of them and abstains on the rest, and
``v`` guesses are right. If the run is (epsilon, delta)-DP with respect to every single
canary, then for every ``v``::

    P[correct >= v] <= f(v) + 2 m delta max_{i=1..v} (f(v - i) - f(v)) / i,
    f(v) = P[Binomial(r, e^eps / (e^eps + 1)) >= v].

With ``delta = 0`` this is the plain binomial tail: the guesses are no better than ``r``
independent randomized-response answers. The right side is the p-value of the hypothesis
"the run is (eps, delta)-DP"; :func:`epsilon_lower_bound` returns the largest ``eps`` it
rejects at the given confidence. (eps, delta)-DP implies (eps', delta)-DP for every
``eps' > eps``, so rejecting ``eps`` rejects every smaller value too.

Everything here is exact arithmetic on the binomial law in log space (``math.lgamma``); no
scipy. The guesses must be fixed by a rule chosen before the scores are seen (top-k and
bottom-k with a fixed k); choosing k after looking would need a correction.
"""

from __future__ import annotations

import math

import numpy as np

from secagg.errors import ConfigError

__all__ = ["binomial_tail", "epsilon_lower_bound", "max_advantage", "p_value"]


def _check_counts(m: int, r: int, v: int) -> None:
    for name, value in (("m", m), ("r", r), ("v", v)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ConfigError(f"{name} must be an integer, got {value!r}")
    if not 0 <= v <= r <= m:
        raise ConfigError(f"need 0 <= correct (v={v}) <= guesses (r={r}) <= canaries (m={m})")


def _check_delta(delta: float) -> float:
    d = float(delta)
    if not (math.isfinite(d) and 0.0 <= d < 1.0):
        raise ConfigError(f"delta must be in [0, 1), got {delta!r}")
    return d


def binomial_tail(r: int, epsilon: float) -> np.ndarray:
    """``tail[j] = P[Binomial(r, e^eps / (e^eps + 1)) >= j]`` for ``j = 0 .. r + 1``.

    Raises:
        ConfigError: a negative or non-finite ``epsilon``.
    """
    eps = float(epsilon)
    if not (math.isfinite(eps) and eps >= 0):
        raise ConfigError(f"epsilon must be a finite number >= 0, got {epsilon!r}")
    log_q = -math.log1p(math.exp(-eps))  # log(e^eps / (1 + e^eps)), stable for large eps
    log_p = -eps - math.log1p(math.exp(-eps))  # log(1 / (1 + e^eps))
    k = np.arange(r + 1, dtype=np.float64)
    lg = np.array([math.lgamma(x + 1.0) for x in range(r + 1)])
    log_pmf = lg[-1] - lg - lg[::-1] + k * log_q + (r - k) * log_p
    pmf = np.exp(log_pmf - log_pmf.max())
    pmf /= pmf.sum()
    tail = np.zeros(r + 2)
    tail[: r + 1] = np.cumsum(pmf[::-1])[::-1]
    return np.minimum(tail, 1.0)


def p_value(m: int, r: int, v: int, epsilon: float, delta: float = 0.0) -> float:
    """The probability bound of Theorem 3.1: at most this likely, under (eps, delta)-DP,
    that ``r`` guesses about ``m`` canaries get ``v`` or more right.

    Raises:
        ConfigError: counts out of order, or epsilon or delta out of range.
    """
    _check_counts(m, r, v)
    d = _check_delta(delta)
    if v == 0:
        return 1.0
    tail = binomial_tail(r, epsilon)
    f_v = float(tail[v])
    if d == 0.0:
        return f_v
    i = np.arange(1, v + 1)
    alpha = float(np.max((tail[v - i] - f_v) / i))
    return min(1.0, f_v + 2.0 * m * d * alpha)


def epsilon_lower_bound(m: int, r: int, v: int, delta: float = 0.0,
                        confidence: float = 0.95) -> float:
    """The largest epsilon that ``v`` correct out of ``r`` guesses about ``m`` canaries
    reject at ``confidence``: the run is not (epsilon, delta)-DP for any smaller epsilon,
    unless an event of probability at most ``1 - confidence`` happened. 0.0 when nothing
    is rejected.

    Raises:
        ConfigError: counts out of order, or delta or confidence out of range.
    """
    _check_counts(m, r, v)
    d = _check_delta(delta)
    c = float(confidence)
    if not 0.0 < c < 1.0:
        raise ConfigError(f"confidence must be in (0, 1), e.g. 0.95, got {confidence!r}")
    level = 1.0 - c
    if p_value(m, r, v, 0.0, d) > level:
        return 0.0
    lo, hi = 0.0, 1.0  # p(lo) <= level < p(hi)
    while p_value(m, r, v, hi, d) <= level:
        lo, hi = hi, hi * 2.0
        if hi > 1e4:  # the tail is 1 long before this; guards a bad input
            return lo
    while hi - lo > 1e-9 * max(1.0, hi):
        mid = 0.5 * (lo + hi)
        if p_value(m, r, v, mid, d) <= level:
            lo = mid
        else:
            hi = mid
    return lo


def max_advantage(epsilon: float | None, delta: float) -> float | None:
    """The largest membership advantage (TPR - FPR) any attack can have on a balanced
    guess against an (epsilon, delta)-DP run: ``(e^eps - 1 + 2 delta) / (e^eps + 1)``.
    ``None`` when there is no epsilon (DP off)."""
    if epsilon is None:
        return None
    e = math.exp(min(float(epsilon), 700.0))
    return min(1.0, (e - 1.0 + 2.0 * float(delta)) / (e + 1.0))
