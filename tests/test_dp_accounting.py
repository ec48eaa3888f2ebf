"""Accounting: reference values from dp-accounting and independent formulas, the inverse,
the ledger's refusal of a round over budget, and adaptive clipping's arithmetic."""

from __future__ import annotations

import math

import dp_accounting as dpa
import numpy as np
import pytest
from dp_accounting import pld, rdp

from secagg.dp import (
    Accountant,
    AdaptiveClipper,
    ComposedEvent,
    DiscreteGaussianEvent,
    DistributedDiscreteGaussian,
    PoissonSampledEvent,
    PrivacyLedger,
    SelfComposedEvent,
    compute_epsilon,
    noise_multiplier_for,
    to_dp_accounting,
    update_noise_multiplier,
)
from secagg.errors import BudgetExceededError, ConfigError

DELTA = 1e-5


def sampled(z: float, q: float) -> PoissonSampledEvent:
    return PoissonSampledEvent(q, DiscreteGaussianEvent(z))


def reference(event: object, rounds: int, accountant: str, delta: float = DELTA) -> float:
    """dp-accounting used directly, without secagg in between."""
    acc = rdp.RdpAccountant() if accountant == "rdp" else pld.PLDAccountant()
    acc.compose(dpa.SelfComposedDpEvent(event, rounds))
    return float(acc.get_epsilon(delta))


# -- independent formulas ---------------------------------------------------------------------


def rdp_sampled_gaussian_integer_order(q: float, z: float, alpha: int) -> float:
    """Mironov, Talwar, Zhang 2019, integer alpha: log A_alpha / (alpha - 1)."""
    terms = [
        math.lgamma(alpha + 1) - math.lgamma(k + 1) - math.lgamma(alpha - k + 1)
        + (alpha - k) * math.log1p(-q) + k * math.log(q) + (k * k - k) / (2 * z * z)
        for k in range(alpha + 1)
    ]
    top = max(terms)
    return (top + math.log(sum(math.exp(t - top) for t in terms))) / (alpha - 1)


def independent_rdp_epsilon(q: float, z: float, rounds: int, delta: float) -> float:
    """Integer orders 2..256 and the conversion of Canonne, Kamath, Steinke 2020."""
    return min(
        rounds * rdp_sampled_gaussian_integer_order(q, z, a)
        + math.log1p(-1 / a) - (math.log(delta) + math.log(a)) / (a - 1)
        for a in range(2, 257)
    )


def gaussian_delta(mu: float, eps: float) -> float:
    """Tight delta(eps) of mu-GDP (Balle and Wang 2018; Dong, Roth, Su 2022)."""
    phi = lambda x: 0.5 * math.erfc(-x / math.sqrt(2))
    return phi(-eps / mu + mu / 2) - math.exp(eps) * phi(-eps / mu - mu / 2)


def one_round_sampled_delta(q: float, z: float, eps: float) -> float:
    """delta(eps) of one Poisson-sampled Gaussian, add-or-remove, by numerical integration."""
    x = np.linspace(-40 * z, 40 * z + 1, 2_000_001)
    dx = x[1] - x[0]
    n0 = np.exp(-(x**2) / (2 * z * z))
    n1 = np.exp(-((x - 1) ** 2) / (2 * z * z))
    mix = (1 - q) * n0 + q * n1
    norm = z * math.sqrt(2 * math.pi)
    remove = np.maximum(mix - math.exp(eps) * n0, 0).sum() * dx / norm
    add = np.maximum(n0 - math.exp(eps) * mix, 0).sum() * dx / norm
    return float(max(remove, add))


# -- compute_epsilon ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "accountant,z,q,rounds",
    [("rdp", 1.0, 0.01, 1000), ("rdp", 0.8, 0.05, 200), ("rdp", 1.5, 0.3, 20),
     ("pld", 1.0, 0.01, 1000), ("pld", 2.0, 0.02, 10)],
)
def test_matches_dp_accounting_reference(
    accountant: Accountant, z: float, q: float, rounds: int
) -> None:
    ours = compute_epsilon(z, q, rounds, DELTA, accountant)
    ref = reference(dpa.PoissonSampledDpEvent(q, dpa.GaussianDpEvent(z)), rounds, accountant)
    assert ours == pytest.approx(ref, rel=1e-9)


def test_issue_check_values_against_independent_computations() -> None:
    # The value `secagg privacy --noise-multiplier 1 --sampling-rate 0.01 --rounds 1000
    # --delta 1e-5` prints, checked without dp-accounting.
    ours = compute_epsilon(1.0, 0.01, 1000, DELTA, "rdp")
    assert ours == pytest.approx(independent_rdp_epsilon(0.01, 1.0, 1000, DELTA), rel=0.02)
    assert 1.9 < ours < 2.3
    one = compute_epsilon(1.0, 0.1, 1, DELTA, "pld")
    assert one_round_sampled_delta(0.1, 1.0, one) == pytest.approx(DELTA, rel=0.02)
    assert compute_epsilon(1.0, 0.01, 1000, DELTA, "pld") < ours  # PLD is the tighter one


@pytest.mark.parametrize("accountant", ["rdp", "pld"])
def test_unsampled_rounds_merge_exactly(accountant: Accountant) -> None:
    z, rounds = 5.0, 10
    ours = compute_epsilon(z, 1.0, rounds, DELTA, accountant)
    ref = reference(dpa.GaussianDpEvent(z), rounds, accountant)
    if accountant == "rdp":
        assert ours == pytest.approx(ref, rel=1e-9)
    else:  # analytic Gaussian: exact, and the PLD accountant's answer is a close upper bound
        assert ref * 0.99 < ours <= ref * (1 + 1e-9)
        assert gaussian_delta(math.sqrt(rounds) / z, ours) == pytest.approx(DELTA, rel=1e-6)


@pytest.mark.parametrize(
    "accountant,q,rounds,target,tol",
    [("rdp", 0.01, 1000, 2.0, 1e-3), ("rdp", 1.0, 3, 1.0, 1e-3),
     ("pld", 0.02, 10, 0.15, 0.1), ("pld", 1.0, 50, 4.0, 1e-3)],
)
def test_inverse_round_trips(
    accountant: Accountant, q: float, rounds: int, target: float, tol: float
) -> None:
    z = noise_multiplier_for(target, DELTA, q, rounds, accountant, rel_tol=tol)
    assert compute_epsilon(z, q, rounds, DELTA, accountant) <= target
    slightly_less = z / (1 + 2 * tol)
    assert compute_epsilon(slightly_less, q, rounds, DELTA, accountant) > target


def test_inverse_of_the_issue_check() -> None:
    eps = compute_epsilon(1.0, 0.01, 1000, DELTA, "rdp")
    assert noise_multiplier_for(eps, DELTA, 0.01, 1000, "rdp") == pytest.approx(1.0, rel=2e-3)


@pytest.mark.parametrize(
    "kwargs",
    [{"delta": 0.0}, {"delta": 1.0}, {"delta": float("nan")}, {"sampling_rate": 0.0},
     {"sampling_rate": 1.5}, {"rounds": 0}, {"noise_multiplier": 0.0},
     {"noise_multiplier": -1.0}, {"accountant": "moments"}],
)
def test_compute_epsilon_validates(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {
        "noise_multiplier": 1.0,
        "sampling_rate": 0.01,
        "rounds": 10,
        "delta": DELTA,
        "accountant": "rdp",
    }
    args.update(kwargs)
    with pytest.raises(ConfigError) as info:
        compute_epsilon(**args)  # type: ignore[arg-type]
    assert isinstance(info.value, ValueError)
    assert str(next(iter(kwargs.values()))) in str(info.value) or "accountant" in str(info.value)


def test_validation_types_and_inverse_ranges() -> None:
    with pytest.raises(TypeError):
        compute_epsilon(1.0, 0.01, 2.5, DELTA)  # type: ignore[arg-type]
    for bad in (0.0, -1.0, float("inf")):
        with pytest.raises(ConfigError):
            noise_multiplier_for(bad, DELTA, 0.01, 10)
    with pytest.raises(ConfigError, match="out of reach"):
        noise_multiplier_for(1e-9, DELTA, 1.0, 10**6)


def test_one_calibration_search_counts_what_the_ledger_has_spent() -> None:
    """``noise_multiplier_for`` is the ledger's search run on an empty ledger; on a ledger
    that has spent some of its budget the same search needs more noise, just enough."""
    from secagg.dp import round_event
    from secagg.errors import BudgetExceededError

    fresh = PrivacyLedger(2.0, DELTA, "rdp")
    assert fresh.noise_multiplier_for(20, 0.01) == noise_multiplier_for(2.0, DELTA, 0.01, 20)
    assert fresh.noise_multiplier_for(5) == noise_multiplier_for(2.0, DELTA, 1.0, 5)
    spent = PrivacyLedger(2.0, DELTA, "rdp")
    for _ in range(3):
        spent.charge(round_event(8.0))
    z = spent.noise_multiplier_for(5)
    assert z > fresh.noise_multiplier_for(5)
    assert spent.epsilon_after(round_event(z), 5) <= 2.0
    assert spent.epsilon_after(round_event(z / 1.002), 5) > 2.0
    assert spent.rounds == 3  # a search charges nothing
    with pytest.raises(BudgetExceededError, match="already spent"):
        _spent_ledger(spent).noise_multiplier_for(1)
    with pytest.raises(ConfigError, match="no noise multiplier to calibrate"):
        PrivacyLedger(None, DELTA).noise_multiplier_for(10)
    with pytest.raises(ConfigError, match=r"out of reach \(already spent"):
        spent.noise_multiplier_for(10**13)


def _spent_ledger(like: PrivacyLedger) -> PrivacyLedger:
    """A ledger whose budget is exactly what ``like`` has spent."""
    out = PrivacyLedger(like.epsilon(), like.delta, like.accountant)
    for event in like.events:
        out.charge(event)
    return out


# -- events -----------------------------------------------------------------------------------


def test_events_convert_to_dp_accounting() -> None:
    g = dpa.GaussianDpEvent(2.0)
    assert to_dp_accounting(DiscreteGaussianEvent(2.0)) == g
    assert to_dp_accounting(sampled(2.0, 0.1)) == dpa.PoissonSampledDpEvent(0.1, g)
    assert to_dp_accounting(sampled(2.0, 1.0)) == g
    assert to_dp_accounting(SelfComposedEvent(DiscreteGaussianEvent(2.0), 3)) == (
        dpa.SelfComposedDpEvent(g, 3)
    )
    assert to_dp_accounting(ComposedEvent((DiscreteGaussianEvent(2.0),))) == (
        dpa.ComposedDpEvent([g])
    )
    with pytest.raises(ConfigError):
        DiscreteGaussianEvent(0.0)
    with pytest.raises(ConfigError):
        PoissonSampledEvent(0.0, DiscreteGaussianEvent(1.0))
    with pytest.raises(TypeError):
        PoissonSampledEvent(0.5, "gaussian")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        SelfComposedEvent(DiscreteGaussianEvent(1.0), 0)
    # Report-only fields do not change what is accounted.
    assert DiscreteGaussianEvent(2.0, sigma=10.0, l2_sensitivity=5.0) == DiscreteGaussianEvent(2.0)


# -- ledger ---------------------------------------------------------------------------------------


def test_ledger_history_matches_compute_epsilon() -> None:
    ledger = PrivacyLedger(None, DELTA, "rdp")
    event = sampled(1.0, 0.05)
    for k in range(1, 6):
        assert ledger.charge(event) == pytest.approx(compute_epsilon(1.0, 0.05, k, DELTA), rel=1e-9)
    assert ledger.rounds == 5 and len(ledger.history) == 5
    assert list(ledger.history) == sorted(ledger.history)
    assert ledger.epsilon() == ledger.history[-1]
    assert ledger.events == (event,) * 5


def test_ledger_pld_incremental_matches_reference() -> None:
    ledger = PrivacyLedger(None, DELTA, "pld")
    event = sampled(1.0, 0.01)
    for _ in range(2):
        ledger.charge(event)
    ref = reference(dpa.PoissonSampledDpEvent(0.01, dpa.GaussianDpEvent(1.0)), 2, "pld")
    assert ledger.epsilon() == pytest.approx(ref, rel=1e-3)


def test_ledger_refuses_the_round_that_would_exceed_and_is_unchanged() -> None:
    event = sampled(1.0, 0.05)
    after3 = compute_epsilon(1.0, 0.05, 3, DELTA)
    after4 = compute_epsilon(1.0, 0.05, 4, DELTA)
    budget = (after3 + after4) / 2
    ledger = PrivacyLedger(budget, DELTA, "rdp")
    for _ in range(3):
        assert ledger.check(event) <= budget
        ledger.charge(event)
    before = (ledger.rounds, ledger.history, ledger.events, ledger.epsilon())
    with pytest.raises(BudgetExceededError) as info:
        ledger.charge(event)
    message = str(info.value)
    assert f"epsilon={budget:g}" in message
    assert f"{after4:.4g}" in message
    assert "0 more round(s)" in message
    assert (ledger.rounds, ledger.history, ledger.events, ledger.epsilon()) == before
    with pytest.raises(BudgetExceededError):
        ledger.check(event)
    assert (ledger.rounds, ledger.history, ledger.events, ledger.epsilon()) == before
    # A cheaper round still fits, and is accounted on top of the unchanged state.
    cheap = sampled(50.0, 0.05)
    assert ledger.charge(cheap) <= budget
    assert ledger.rounds == 4


def test_ledger_check_names_how_many_rounds_fit() -> None:
    event = sampled(2.0, 0.1)
    ledger = PrivacyLedger(1.0, DELTA, "rdp")
    brute = 0
    while compute_epsilon(2.0, 0.1, brute + 1, DELTA) <= 1.0:
        brute += 1
    assert 1 < brute < 500
    assert ledger.rounds_left(event, limit=500) == brute
    assert ledger.rounds_left(event, limit=brute) == brute
    with pytest.raises(BudgetExceededError, match=f"; {brute} more round"):
        ledger.check(event, rounds=500)
    assert ledger.check(event, rounds=brute) <= 1.0
    assert ledger.rounds == 0
    assert PrivacyLedger(None, DELTA).rounds_left(event, limit=7) == 7


def test_ledger_composes_mixed_and_distributed_events() -> None:
    mech = DistributedDiscreteGaussian(1.0, 500.0, n_clients=10)
    events = [mech.event_for(10), mech.event_for(7), sampled(2.0, 0.1), mech.event_for(9)]
    for accountant in ("rdp", "pld"):
        ledger = PrivacyLedger(None, DELTA, accountant)  # type: ignore[arg-type]
        for e in events:
            ledger.charge(e)
        ref_events = [to_dp_accounting(e) for e in events]
        acc = rdp.RdpAccountant() if accountant == "rdp" else pld.PLDAccountant()
        acc.compose(dpa.ComposedDpEvent(ref_events))
        tol = 1e-9 if accountant == "rdp" else 1e-2
        assert ledger.epsilon() == pytest.approx(acc.get_epsilon(DELTA), rel=tol)
    # Fewer survivors: less noise, more epsilon.
    few, all_ = PrivacyLedger(None, DELTA), PrivacyLedger(None, DELTA)
    assert few.charge(mech.event_for(5)) > all_.charge(mech.event_for(10))


def test_ledger_validates() -> None:
    for budget in (0.0, -1.0, float("nan")):
        with pytest.raises(ConfigError):
            PrivacyLedger(budget, DELTA)
    with pytest.raises(ConfigError):
        PrivacyLedger(1.0, 0.0)
    with pytest.raises(ConfigError):
        PrivacyLedger(1.0, DELTA, "gdp")  # type: ignore[arg-type]
    ledger = PrivacyLedger(1.0, DELTA)
    with pytest.raises(TypeError):
        ledger.charge(dpa.GaussianDpEvent(1.0))  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        ledger.check(DiscreteGaussianEvent(5.0), rounds=0)
    assert ledger.epsilon() == 0.0 and ledger.history == ()


# -- adaptive clipping --------------------------------------------------------------------------


def test_adaptive_clip_update_is_geometric() -> None:
    clipper = AdaptiveClipper(initial_clip=1.0, target_quantile=0.5, learning_rate=0.2)
    assert clipper.client_bit(1.0) == 1 and clipper.client_bit(1.0001) == 0
    assert clipper.update(0.9) == pytest.approx(math.exp(-0.2 * 0.4))
    assert clipper.clip == pytest.approx(math.exp(-0.08))
    assert clipper.update(0.5) == pytest.approx(math.exp(-0.08))  # at the target: no move


def test_adaptive_clip_tracks_the_quantile() -> None:
    norms = np.linspace(0.0, 10.0, 1001)  # the 0.3 quantile is 3.0
    clipper = AdaptiveClipper(initial_clip=0.1, target_quantile=0.3, learning_rate=0.2)
    for _ in range(400):
        fraction = sum(clipper.client_bit(float(n)) for n in norms) / norms.size
        clipper.update(fraction)
    assert clipper.clip == pytest.approx(3.0, rel=0.05)


def test_adaptive_clip_validates() -> None:
    for args in [(0.0, 0.5, 0.2), (1.0, 1.5, 0.2), (1.0, 0.5, 0.0), (float("nan"), 0.5, 0.2)]:
        with pytest.raises(ConfigError):
            AdaptiveClipper(*args)
    clipper = AdaptiveClipper(1.0, 0.5, 0.2)
    with pytest.raises(ConfigError):
        clipper.client_bit(-1.0)
    with pytest.raises(ConfigError):
        clipper.update(float("inf"))
    assert clipper.clip == 1.0


def test_update_noise_multiplier_composes_back_to_total() -> None:
    z_update = update_noise_multiplier(1.0, 10.0)
    assert (z_update**-2 + 10.0**-2) ** -0.5 == pytest.approx(1.0)
    both = ComposedEvent((DiscreteGaussianEvent(z_update), DiscreteGaussianEvent(10.0)))
    assert PrivacyLedger(None, DELTA).charge(both) == pytest.approx(
        compute_epsilon(1.0, 1.0, 1, DELTA), rel=1e-9
    )
    # Under Poisson sampling the two releases share one sample: still the total multiplier.
    sampled_both = PoissonSampledEvent(0.05, both)
    assert PrivacyLedger(None, DELTA).charge(sampled_both) == pytest.approx(
        compute_epsilon(1.0, 0.05, 1, DELTA), rel=1e-9
    )
    with pytest.raises(ConfigError, match="nested"):
        PrivacyLedger(None, DELTA).charge(PoissonSampledEvent(0.5, sampled_both))
    with pytest.raises(ConfigError, match="must exceed"):
        update_noise_multiplier(1.0, 1.0)


# -- start-up: scipy.signal loads on first use --------------------------------------------
_PROBE = """
import sys
{before}
from secagg.dp import compute_epsilon
rdp = compute_epsilon(1.3, 0.2, rounds=50, delta=1e-5, accountant="rdp")
loaded = type(sys.modules["scipy.signal"]).__name__
pld = compute_epsilon(1.3, 0.2, rounds=50, delta=1e-5, accountant="pld")
print(repr(rdp), loaded, repr(pld), type(sys.modules["scipy.signal"]).__name__)
"""


def _probe(before: str) -> list[str]:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _PROBE.format(before=before)],
                         capture_output=True, text=True, check=True).stdout
    return out.split()


def test_scipy_signal_waits_for_the_pld_accountant_and_the_epsilons_do_not_change() -> None:
    deferred = _probe("")
    eager = _probe("import scipy.signal")  # loaded before dp_accounting: nothing deferred
    assert deferred[1] == "_OnFirstUse"  # the RDP accountant never needed it
    assert eager[1] == "module"
    assert deferred[3] == eager[3] == "module"  # PLD loaded it, in place
    assert deferred[0] == eager[0] and deferred[2] == eager[2]


def test_a_deferred_module_that_fails_to_load_is_not_left_half_imported(tmp_path,
                                                                         monkeypatch) -> None:
    import sys

    from secagg.dp.events import _defer

    (tmp_path / "broken_on_use.py").write_text("raise RuntimeError('boom')\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    _defer("broken_on_use")
    module = sys.modules["broken_on_use"]
    with pytest.raises(RuntimeError, match="boom"):
        module.anything  # noqa: B018 - the lookup is what runs the module
    assert "broken_on_use" not in sys.modules


def test_a_deferred_module_without_a_loader_raises_a_typed_error() -> None:
    import importlib.machinery

    from secagg.dp.events import _OnFirstUse

    module = _OnFirstUse("no_loader_here")
    module.__spec__ = importlib.machinery.ModuleSpec("no_loader_here", None)
    with pytest.raises(ConfigError, match="no_loader_here"):
        module.anything  # noqa: B018 - the lookup is what runs the module
