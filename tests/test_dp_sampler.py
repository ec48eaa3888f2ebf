"""Statistical tests of the discrete Gaussian samplers and the noise mechanisms built on them.

Every test uses a fixed seed, so each outcome is deterministic; the thresholds (about 4.5
standard errors, or the chi-square quantile at the same level) are what a correct sampler
passes with probability above 0.99999 for a fresh seed, while a wrong variance, a biased
Bernoulli or a missing tail fails them by a wide margin at these sample sizes.
"""

from __future__ import annotations

import math
import pathlib
import re
from fractions import Fraction

import numpy as np
import pytest

import secagg.dp.discrete_gaussian as dg
from secagg.dp import (
    CentralDiscreteGaussian,
    DiscreteGaussianEvent,
    DistributedDiscreteGaussian,
    bernoulli_exp,
    l2_sensitivity_units,
    sample_discrete_gaussian,
    sample_discrete_gaussian_scalar,
)
from secagg.errors import ConfigError
from secagg.rng import Csprng

Z = 4.5  # standard errors allowed


# -- reference distribution and statistics ---------------------------------------------------


def exact_pmf(sigma_sq: Fraction | int) -> tuple[np.ndarray, np.ndarray]:
    """Support [-K, K] (K = 14 sigma + 2, missing mass < 1e-40) and probabilities."""
    s2 = float(sigma_sq)
    k = int(14 * math.sqrt(s2)) + 2
    values = np.arange(-k, k + 1)
    logw = -(values.astype(np.float64) ** 2) / (2.0 * s2)
    w = np.exp(logw - logw.max())
    return values, w / w.sum()


def chi2_critical(df: int, z: float = Z) -> float:
    """Wilson-Hilferty upper quantile of chi-square with ``df`` degrees of freedom."""
    a = 2.0 / (9.0 * df)
    return df * (1.0 - a + z * math.sqrt(a)) ** 3


def bins_for(sigma_sq: Fraction | int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Cells: single values with expected count >= 25, tails merged. Returns edges, probs."""
    values, p = exact_pmf(sigma_sq)
    centre = np.flatnonzero(p * n >= 25)
    lo, hi = int(values[centre[0]]), int(values[centre[-1]])
    inner = np.arange(lo, hi + 1)
    probs = np.concatenate(([p[values < lo].sum()], p[(values >= lo) & (values <= hi)],
                            [p[values > hi].sum()]))
    return inner, probs


def cell_counts(samples: np.ndarray, inner: np.ndarray) -> np.ndarray:
    lo, hi = inner[0], inner[-1]
    clipped = np.clip(samples, lo - 1, hi + 1) - (lo - 1)
    return np.bincount(clipped, minlength=inner.size + 2).astype(np.float64)


def assert_matches_pmf(samples: np.ndarray, sigma_sq: Fraction | int) -> None:
    n = samples.size
    inner, probs = bins_for(sigma_sq, n)
    observed = cell_counts(samples, inner)
    expected = probs * n
    keep = expected > 0
    stat = float(((observed[keep] - expected[keep]) ** 2 / expected[keep]).sum())
    df = int(keep.sum()) - 1
    assert stat < chi2_critical(df), f"chi2={stat:.1f} with df={df}"


def assert_moments_and_tails(samples: np.ndarray, sigma_sq: Fraction | int) -> None:
    values, p = exact_pmf(sigma_sq)
    n = samples.size
    x = samples.astype(np.float64)
    var = float((p * values.astype(np.float64) ** 2).sum())
    m4 = float((p * values.astype(np.float64) ** 4).sum())
    assert abs(x.mean()) < Z * math.sqrt(var / n)
    assert abs((x * x).mean() - var) < Z * math.sqrt((m4 - var * var) / n)
    sigma = math.sqrt(float(sigma_sq))
    for k in (1.0, 2.0, 3.0, 3.5):
        tail = float(p[np.abs(values) > k * sigma].sum())
        freq = float(np.mean(np.abs(x) > k * sigma))
        assert abs(freq - tail) < Z * math.sqrt(tail * (1 - tail) / n) + 1.0 / n, (k, freq, tail)


# -- Bernoulli(exp(-gamma)) -------------------------------------------------------------------


@pytest.mark.parametrize("gamma", [Fraction(1, 3), Fraction(1), Fraction(5, 2), Fraction(7, 10**6)])
def test_bernoulli_exp_frequency(gamma: Fraction) -> None:
    rng = Csprng.from_seed(b"bern" + str(gamma).encode())
    n = 20_000
    hits = sum(bernoulli_exp(gamma, rng) for _ in range(n))
    p = math.exp(-float(gamma))
    assert abs(hits / n - p) < Z * math.sqrt(p * (1 - p) / n) + 1.0 / n


def test_bernoulli_exp_edge_cases() -> None:
    rng = Csprng.from_seed(1)
    assert all(bernoulli_exp(0, rng) for _ in range(200))
    assert not any(bernoulli_exp(10**6, rng) for _ in range(200))  # exp(-1e6): never
    with pytest.raises(ConfigError):
        bernoulli_exp(Fraction(-1, 2), rng)


def test_bernoulli_exp_vectorized_frequency() -> None:
    rng = Csprng.from_seed(2)
    n = 200_000
    num = np.full(n, 3, np.int64)
    freq = dg._bernoulli_exp_le1_vec(num, 7, rng).mean()
    p = math.exp(-3 / 7)
    assert abs(freq - p) < Z * math.sqrt(p * (1 - p) / n)


# -- the samplers against the exact pmf -------------------------------------------------------


def test_scalar_sampler_matches_pmf() -> None:
    rng = Csprng.from_seed(3)
    s2 = Fraction(5, 2)
    samples = np.array([sample_discrete_gaussian_scalar(s2, rng) for _ in range(20_000)])
    assert_matches_pmf(samples, s2)
    assert_moments_and_tails(samples, s2)


@pytest.mark.parametrize(
    "sigma_sq",
    [Fraction(1, 4), 2, Fraction(7, 3), Fraction(1.3) ** 2, Fraction(25)],
    ids=["quarter", "two", "7/3", "1.3^2-from-float", "25"],
)
def test_vectorized_sampler_matches_pmf(sigma_sq: Fraction | int) -> None:
    rng = Csprng.from_seed(b"vec" + str(sigma_sq).encode())
    samples = sample_discrete_gaussian(sigma_sq, 200_000, rng)
    assert samples.dtype == np.int64 and samples.shape == (200_000,)
    assert_matches_pmf(samples, sigma_sq)
    assert_moments_and_tails(samples, sigma_sq)


@pytest.mark.parametrize("sigma", [1100.0, 0.77e5])
def test_vectorized_sampler_large_sigma(sigma: float) -> None:
    # sigma_sq from a float: numerator and denominator far beyond int64.
    s2 = Fraction(sigma) ** 2
    samples = sample_discrete_gaussian(s2, 300_000, Csprng.from_seed(int(sigma)))
    assert_moments_and_tails(samples, s2)
    # Coarse cells of width sigma / 4 against the pmf as well.
    values, p = exact_pmf(s2)
    edges = np.arange(-4.0, 4.01, 0.25) * sigma
    expected = np.histogram(values, bins=edges, weights=p)[0] * samples.size
    observed = np.histogram(samples, bins=edges)[0]
    stat = float(((observed - expected) ** 2 / expected).sum())
    assert stat < chi2_critical(edges.size - 2)


def test_vectorized_sampler_extreme_sigma() -> None:
    s2 = dg.MAX_SIGMA_SQ  # sigma = 2^40
    samples = sample_discrete_gaussian(s2, 50_000, Csprng.from_seed(5))
    x = samples.astype(np.float64) / 2.0**40
    n = x.size
    assert abs(x.mean()) < Z / math.sqrt(n)
    assert abs((x * x).mean() - 1.0) < Z * math.sqrt(2.0 / n)
    assert np.abs(x).max() < 7.0


def test_vectorized_and_scalar_agree() -> None:
    s2 = Fraction(19, 2)
    rng = Csprng.from_seed(7)
    scalar = np.array([sample_discrete_gaussian_scalar(s2, rng) for _ in range(12_000)])
    vector = sample_discrete_gaussian(s2, 120_000, Csprng.from_seed(8))
    inner = np.arange(-8, 9)
    a, b = cell_counts(scalar, inner), cell_counts(vector, inner)
    na, nb = a.sum(), b.sum()
    keep = (a + b) > 0
    ka, kb = math.sqrt(nb / na), math.sqrt(na / nb)
    stat = float((((ka * a - kb * b) ** 2) / (a + b))[keep].sum())
    assert stat < chi2_critical(int(keep.sum()) - 1)


# -- the exact fallbacks of the vectorized acceptance step ------------------------------------


def _spy(monkeypatch: pytest.MonkeyPatch, name: str) -> list[int]:
    calls = [0]
    real = getattr(dg, name)

    def wrapper(*args: object, **kwargs: object) -> object:
        calls[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(dg, name, wrapper)
    return calls


def test_fallback_every_comparison_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    """With an enormous float-filter width, every Bernoulli(frac/k) runs the exact path."""
    monkeypatch.setattr(dg, "_SLACK_UNITS", 2.0**60)
    calls = _spy(monkeypatch, "_resolve_exact")
    s2 = Fraction(7, 3)
    samples = sample_discrete_gaussian(s2, 15_000, Csprng.from_seed(9))
    assert calls[0] > 15_000
    assert_matches_pmf(samples, s2)


def test_fallback_every_lane_scalar(monkeypatch: pytest.MonkeyPatch) -> None:
    """With an error bound above 1, no floor is trusted: every lane runs bernoulli_exp."""
    monkeypatch.setattr(dg, "_ERR_SCALE", 1.0)
    calls = _spy(monkeypatch, "bernoulli_exp")
    s2 = Fraction(1.3) ** 2
    samples = sample_discrete_gaussian(s2, 15_000, Csprng.from_seed(10))
    assert calls[0] >= 15_000
    assert_matches_pmf(samples, s2)


def test_fallback_large_k(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lanes whose k * den would overflow finish in exact Python (forced by a tiny cap)."""
    monkeypatch.setattr(dg, "_MAX_ABS", 2)
    calls = _spy(monkeypatch, "_bernoulli_exp_le1")
    n = 100_000
    freq = dg._bernoulli_exp_le1_vec(np.ones(n, np.int64), 1, Csprng.from_seed(11)).mean()
    p = math.exp(-1.0)
    assert calls[0] > 0
    assert abs(freq - p) < Z * math.sqrt(p * (1 - p) / n)


# -- API contract -----------------------------------------------------------------------------


def test_deterministic_under_seed() -> None:
    a = sample_discrete_gaussian(Fraction(1000), 1000, Csprng.from_seed(12))
    b = sample_discrete_gaussian(Fraction(1000), 1000, Csprng.from_seed(12))
    c = sample_discrete_gaussian(Fraction(1000), 1000, Csprng.from_seed(13))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert sample_discrete_gaussian(4, 0, Csprng.from_seed(1)).shape == (0,)


@pytest.mark.parametrize(
    "sigma_sq", [0, -1, Fraction(1, 2**41), 2**81, float("nan"), float("inf")]
)
def test_rejects_sigma_out_of_range(sigma_sq: object) -> None:
    rng = Csprng.from_seed(1)
    with pytest.raises(ConfigError):
        sample_discrete_gaussian(sigma_sq, 10, rng)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        sample_discrete_gaussian_scalar(sigma_sq, rng)  # type: ignore[arg-type]


def test_rejects_bad_types_and_sizes() -> None:
    rng = Csprng.from_seed(1)
    for bad in ("4", True, None):
        with pytest.raises(TypeError):
            sample_discrete_gaussian(bad, 10, rng)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        sample_discrete_gaussian(4, 2.5, rng)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        sample_discrete_gaussian(4, -1, rng)


def test_no_insecure_randomness_in_dp_code() -> None:
    root = pathlib.Path(__file__).resolve().parents[1] / "secagg" / "dp"
    pattern = re.compile(r"numpy\.random|np\.random|^\s*(import|from)\s+random\b", re.MULTILINE)
    offenders = [p.name for p in root.glob("*.py") if pattern.search(p.read_text())]
    assert offenders == []


# -- mechanisms -------------------------------------------------------------------------------


def test_central_adds_exact_noise_once_and_reports_it() -> None:
    mech = CentralDiscreteGaussian(noise_multiplier=1.1, l2_sensitivity=1000.5)
    assert mech.sigma_sq == (Fraction(1.1) * Fraction(1000.5)) ** 2
    agg = np.arange(-60_000, 60_000, dtype=np.int64).reshape(2, -1)
    before = agg.copy()
    noisy, event = mech.add_noise(agg, Csprng.from_seed(20))
    assert np.array_equal(agg, before)  # input untouched
    assert noisy.dtype == np.int64 and noisy.shape == agg.shape
    assert event == DiscreteGaussianEvent(1.1)
    assert event.sigma == pytest.approx(1.1 * 1000.5) and event.l2_sensitivity == 1000.5
    assert_moments_and_tails((noisy - agg).ravel(), mech.sigma_sq)


def test_central_rejects_bad_input() -> None:
    mech = CentralDiscreteGaussian(1.0, 100.0)
    rng = Csprng.from_seed(21)
    with pytest.raises(TypeError):
        mech.add_noise([1, 2, 3], rng)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        mech.add_noise(np.zeros(3), rng)
    with pytest.raises(ConfigError, match="overflow"):
        mech.add_noise(np.full(4000, 2**63 - 1, np.int64), rng)
    for z, delta in [(0.0, 1.0), (1.0, -1.0), (float("nan"), 1.0), (1.0, 2.0**41)]:
        with pytest.raises(ConfigError):
            CentralDiscreteGaussian(z, delta)


def test_central_tail_bound_holds() -> None:
    mech = CentralDiscreteGaussian(0.8, 5000.0)
    dim = 50_000
    bound = mech.tail_bound(dim, 1e-6)
    noise, _ = mech.add_noise(np.zeros(dim, np.int64), Csprng.from_seed(22))
    assert np.abs(noise).max() <= bound
    assert bound < 8 * mech.sigma  # and it is not vacuous


def test_distributed_noise_sums_to_target() -> None:
    n, dim = 8, 40_000
    mech = DistributedDiscreteGaussian(noise_multiplier=1.2, l2_sensitivity=300.0, n_clients=n)
    assert mech.client_sigma_sq * n == mech.sigma_sq
    rng = Csprng.from_seed(23)
    parts = [mech.client_noise(dim, rng.spawn(f"client-{i}")) for i in range(n)]
    assert_moments_and_tails(parts[0], mech.client_sigma_sq)
    total = np.sum(parts, axis=0).astype(np.float64)
    target = float(mech.sigma_sq)
    assert abs(total.var() / target - 1.0) < Z * math.sqrt(2.0 / dim)
    assert np.abs(total).max() <= mech.tail_bound(dim, n, 1e-6)


def test_distributed_event_tracks_survivors() -> None:
    mech = DistributedDiscreteGaussian(1.0, 1000.0, n_clients=100)
    assert mech.event_for(100).noise_multiplier == pytest.approx(1.0, rel=1e-12)
    assert mech.event_for(25).noise_multiplier == pytest.approx(0.5, rel=1e-12)
    assert mech.event_for(25).sigma == pytest.approx(500.0)
    # With a large per-client sigma the Kairouz et al. tau term vanishes ...
    assert mech.event_for(64, dim=10**6).noise_multiplier == mech.event_for(64).noise_multiplier
    # ... and with a small one it lowers the effective noise multiplier.
    small = DistributedDiscreteGaussian(1.0, 6.0, n_clients=100)  # sigma_c = 0.6
    assert small.event_for(100, dim=10**6).noise_multiplier < small.event_for(100).noise_multiplier
    for bad in (0, 101):
        with pytest.raises(ConfigError):
            mech.event_for(bad)
    assert mech.tail_bound(1000, 100, 1e-9) > mech.tail_bound(1000, 10, 1e-9)


def test_distributed_rejects_tiny_client_noise() -> None:
    with pytest.raises(ConfigError, match="l2_sensitivity to >= 5"):
        DistributedDiscreteGaussian(1.0, 4.0, n_clients=100)  # sigma_c = 0.4
    with pytest.raises(ConfigError):
        DistributedDiscreteGaussian(1.0, 100.0, n_clients=0)


def test_l2_sensitivity_units_covers_rounding_and_weights() -> None:
    assert l2_sensitivity_units(1.0, 16, 10_000) == 2.0**16 + 100.0
    assert l2_sensitivity_units(0.5, 10, 0, max_weight=8.0) == 8.0 * 0.5 * 2.0**10
    with_weight = l2_sensitivity_units(1.0, 8, 100, max_weight=4.0, weight_frac_bits=8)
    assert with_weight == pytest.approx(math.hypot(4.0 * 2.0**8 + 10.0, 4.0 * 2.0**8 + 1.0))
    # An encoded, stochastically rounded, clipped update never exceeds it.
    rng = Csprng.from_seed(30)
    x = rng.random(100) - 0.5
    x *= 1.0 / np.linalg.norm(x)
    scaled = x * 2.0**8
    floor = np.floor(scaled)
    encoded = floor + (rng.random(100) < scaled - floor)
    assert np.linalg.norm(encoded) <= l2_sensitivity_units(1.0, 8, 100)
    with pytest.raises(ConfigError):
        l2_sensitivity_units(0.0, 8, 10)
    with pytest.raises(ConfigError):
        l2_sensitivity_units(1.0, -1, 10)
