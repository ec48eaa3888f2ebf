"""fl.audit and ``secagg audit``: the one-run epsilon lower bound, canary clients inside the
real protocol, and the JSON contract.

The bound is checked against an independent exact computation (fractions and math.comb),
its closed form when every guess is right, and a simulation of randomized response whose
true epsilon is known. End to end, the audit must find a clear signal without DP and stay
below the accountant's epsilon with it.
"""

from __future__ import annotations

import importlib
import itertools
import json
import logging
import math
from collections.abc import Iterator, Sequence
from fractions import Fraction
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch

import fl.cli
from fl.audit import (
    AUDIT_FILES,
    AuditConfig,
    CanaryEngine,
    epsilon_lower_bound,
    max_advantage,
    p_value,
    run_audit,
    write_audit_report,
)
from fl.engines import EngineRound, RoundCost
from fl.training.payload import WIRE_NORM
from protocols.base import AggregateResult, ProtocolSpec, RoundConfig
from secagg.errors import ConfigError
from secagg.rng import Csprng

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
KEYS = ("empirical_epsilon_lower_bound", "epsilon", "delta", "canaries", "correct_guesses",
        "guesses", "advantage", "report_dir")


@pytest.fixture(autouse=True, scope="module")
def _quiet_and_single_threaded() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    logging.getLogger("absl").setLevel(logging.ERROR)
    yield
    torch.set_num_threads(threads)


# -- the bound ----------------------------------------------------------------------------


def _reference_p_value(m: int, r: int, v: int, eps: float, delta: float) -> float:
    """Theorem 3.1 of Steinke, Nasr and Jagielski (2023), computed exactly and naively."""
    q = Fraction(math.exp(eps)) / (1 + Fraction(math.exp(eps)))

    def f(x: int) -> Fraction:  # P[Binomial(r, q) >= x]
        return sum((math.comb(r, k) * q**k * (1 - q) ** (r - k) for k in range(max(x, 0), r + 1)),
                   Fraction(0))

    fv = f(v)
    alpha = max(((f(v - i) - fv) / i for i in range(1, m + 1)), default=Fraction(0))
    return float(min(Fraction(1), fv + 2 * m * Fraction(delta) * alpha))


@pytest.mark.parametrize(("m", "r", "v", "eps", "delta"), [
    (40, 20, 15, 0.5, 0.0), (40, 20, 15, 0.5, 1e-3), (50, 30, 29, 2.0, 1e-5),
    (10, 10, 6, 0.0, 0.01), (30, 12, 12, 3.0, 1e-4), (25, 8, 1, 1.0, 0.02),
])
def test_p_value_matches_an_exact_reference(m: int, r: int, v: int, eps: float,
                                            delta: float) -> None:
    assert p_value(m, r, v, eps, delta) == pytest.approx(
        _reference_p_value(m, r, v, eps, delta), rel=1e-9, abs=1e-15)


def test_pure_dp_bound_is_the_binomial_tail() -> None:
    stats = pytest.importorskip("scipy.stats")
    for r, v, eps in [(100, 70, 0.3), (200, 190, 2.5), (7, 7, 1.0), (50, 20, 0.1)]:
        q = math.exp(eps) / (1 + math.exp(eps))
        assert p_value(r, r, v, eps) == pytest.approx(float(stats.binom.sf(v - 1, r, q)),
                                                      rel=1e-9)


@pytest.mark.parametrize("r", [1, 4, 5, 10, 80, 200])
def test_all_guesses_right_has_a_closed_form(r: int) -> None:
    # q^r = 0.05 at the bound, so epsilon = logit(0.05^(1/r)), or 0 when that is negative
    # (four right guesses out of four happen by luck 1 time in 16 > 5%).
    q = 0.05 ** (1 / r)
    expected = max(0.0, math.log(q / (1 - q)))
    assert epsilon_lower_bound(r, r, r) == pytest.approx(expected, abs=1e-6)


def test_no_better_than_chance_proves_nothing() -> None:
    assert epsilon_lower_bound(100, 100, 50) == 0.0
    assert epsilon_lower_bound(100, 40, 25) == 0.0
    assert epsilon_lower_bound(100, 40, 0, delta=1e-5) == 0.0


def test_the_delta_term_only_ever_lowers_the_bound() -> None:
    for v in (70, 85, 100):
        pure = epsilon_lower_bound(1000, 100, v)
        assert epsilon_lower_bound(1000, 100, v, 1e-6) <= pure
        assert epsilon_lower_bound(1000, 100, v, 1e-3) < pure
        for eps in (0.1, 1.0, 3.0):
            assert p_value(1000, 100, v, eps, 1e-3) >= p_value(1000, 100, v, eps)


def test_p_value_grows_with_epsilon() -> None:
    grid = np.linspace(0.0, 8.0, 81)
    for m, r, v, delta in [(200, 80, 60, 1e-5), (1000, 200, 190, 1e-4), (50, 50, 50, 0.0)]:
        ps = [p_value(m, r, v, e, delta) for e in grid]
        assert all(a <= b + 1e-12 for a, b in itertools.pairwise(ps))


def test_the_bound_holds_for_randomized_response_of_known_epsilon() -> None:
    """Guesses that are right with probability e^eps/(1+e^eps) are exactly what an
    eps-DP run allows: the 95% lower bound may exceed eps in at most about 5% of trials."""
    eps0, r, trials = 1.0, 100, 300
    gen = np.random.default_rng(2023)
    right = gen.binomial(r, math.exp(eps0) / (1 + math.exp(eps0)), size=trials)
    over = sum(epsilon_lower_bound(2 * r, r, int(v)) > eps0 for v in right)
    assert over <= 27  # Binomial(300, 0.05): mean 15, three standard deviations above
    assert over >= 1  # and the bound is not vacuous: it gets near eps0 at times


def test_bad_counts_are_refused_with_the_numbers() -> None:
    with pytest.raises(ConfigError, match=r"v=5\) <= guesses \(r=4\)"):
        p_value(10, 4, 5, 1.0)
    with pytest.raises(ConfigError, match="delta must be in"):
        epsilon_lower_bound(10, 4, 3, delta=1.5)
    with pytest.raises(ConfigError, match="confidence"):
        epsilon_lower_bound(10, 4, 3, confidence=1.0)


def test_max_advantage_is_what_epsilon_allows() -> None:
    assert max_advantage(None, 1e-5) is None
    assert max_advantage(0.0, 0.0) == 0.0
    assert max_advantage(math.log(3), 0.0) == pytest.approx(0.5)
    assert max_advantage(50.0, 1e-5) == pytest.approx(1.0)


# -- the canary engine ----------------------------------------------------------------------


class _Releases:
    """A stand-in engine that releases a chosen aggregate and remembers what it was given."""

    name = "stub"

    def __init__(self, release: np.ndarray) -> None:
        self.release = release
        self.calls: list[tuple[RoundConfig, list[np.ndarray], list[float]]] = []

    def run_round(self, spec: ProtocolSpec, config: RoundConfig, inputs: Sequence[np.ndarray],
                  weights: Sequence[float], rng: Csprng) -> EngineRound:
        self.calls.append((config, list(inputs), list(weights)))
        result = AggregateResult(self.release, float(sum(weights)), tuple(range(len(inputs))))
        return EngineRound(result, None, 0, RoundCost(0, 0, 0.0, 0.0))


def test_canaries_join_the_cohort_at_full_norm_and_are_scored_on_the_release() -> None:
    import protocols

    d, m = 30, 6
    u = np.eye(m, d)  # canary j points along axis j
    included = np.array([True, False, True, True, False, False])
    release = np.zeros(d + 2)
    release[2] = 5.0  # the release points exactly at canary 2
    stub = _Releases(release)
    engine = CanaryEngine(stub, u, included, clip=0.5, weight=7.0)
    spec = protocols.get("secagg+")
    config = spec.make_config(4, d + 2, round_id=3)
    real = [np.full(d + 2, 0.01) for _ in range(4)]
    for _ in range(2):
        out = engine.run_round(spec, config, real, [1.0] * 4, Csprng.from_seed(1))
        assert out.result is not None
    cfg, inputs, weights = stub.calls[0]
    assert cfg.n_clients == 4 + 3 and cfg.round_id == 3 and cfg.session == config.session
    assert cfg.encoding.max_clients >= 7
    assert weights == [1.0] * 4 + [7.0] * 3
    for j, x in zip(np.flatnonzero(included), inputs[4:]):
        # the client path of fl.training.loop: clipped, scaled to the wire norm, metrics appended
        assert np.linalg.norm(x[:d]) == pytest.approx(WIRE_NORM)
        assert np.allclose(x[:d] / WIRE_NORM, u[j]) and np.all(x[d:] == 0)
    assert engine.releases == 2 and engine.cohorts == [7, 7]
    assert engine.scores == pytest.approx([0, 0, 2, 0, 0, 0])  # cosine, summed over rounds


def test_a_round_that_releases_nothing_scores_nothing() -> None:
    class Aborts(_Releases):
        def run_round(self, *a: Any) -> EngineRound:
            return EngineRound(None, "DropoutError: too few", 0, RoundCost(0, 0, 0.0, 0.0))

    import protocols

    engine = CanaryEngine(Aborts(np.zeros(5)), np.eye(2, 3), np.array([True, True]), 1.0, 1.0)
    spec = protocols.get("plaintext")
    engine.run_round(spec, spec.make_config(2, 5), [np.zeros(5)] * 2, [1.0, 1.0],
                     Csprng.from_seed(0))
    assert engine.releases == 0 and not engine.scores.any()


# -- end to end -----------------------------------------------------------------------------

SMALL = {"clients": 10, "rounds": 3, "canaries": 200, "epochs": 1, "seed": 11}


def test_without_dp_the_audit_finds_a_clear_signal() -> None:
    res = run_audit(AuditConfig(protocol="secagg+", dp=False, **SMALL))  # type: ignore[arg-type]
    out = res.to_json()
    assert out["epsilon"] is None and out["max_advantage"] is None
    assert res.releases == 3 and out["guesses"] == 80
    assert out["correct_guesses"] >= 76
    assert out["empirical_epsilon_lower_bound"] >= 2.0
    assert out["advantage"] >= 0.5
    # Every included canary was an ordinary client of every round's secure sum.
    included = int(res.included.sum())
    assert all(r.contributors == r.cohort + included for r in res.run.history)


def test_with_dp_the_lower_bound_stays_below_the_accounted_epsilon() -> None:
    res = run_audit(AuditConfig(protocol="secagg+", epsilon=3.0, **SMALL))  # type: ignore[arg-type]
    out = res.to_json()
    assert out["epsilon"] is not None and 0 < out["epsilon"] <= 3.0
    assert 0.0 <= out["empirical_epsilon_lower_bound"] < out["epsilon"]
    assert out["advantage"] <= out["max_advantage"]
    # DP noise, not the attack, is what removed the signal: same canaries, same bits.
    assert out["correct_guesses"] < 76


def test_settings_that_cannot_work_are_refused() -> None:
    with pytest.raises(ConfigError, match="canaries must be an integer >= 2"):
        run_audit(AuditConfig(canaries=1))
    with pytest.raises(ConfigError, match=r"guesses must be an even integer in 2\.\.10"):
        run_audit(AuditConfig(canaries=10, guesses=12))
    with pytest.raises(ConfigError, match="choose one of"):
        run_audit(AuditConfig(protocol="rot13", canaries=10))


def test_report_folder_holds_the_json_the_scores_and_a_plot(tmp_path: Path) -> None:
    res = run_audit(AuditConfig(protocol="plaintext", clients=4, rounds=1, canaries=20,
                                epochs=1, seed=1, epsilon=2.0))
    folder = write_audit_report(res, tmp_path / "audit")
    assert sorted(p.name for p in folder.iterdir()) == sorted(AUDIT_FILES)
    summary = json.loads((folder / "audit.json").read_text())
    assert summary["report_dir"] == str(folder) and all(k in summary for k in KEYS)
    rows = (folder / "canaries.csv").read_text().splitlines()
    assert rows[0] == "canary,included,score,guess" and len(rows) == 21
    guesses = [row.split(",")[3] for row in rows[1:]]
    assert guesses.count("in") == guesses.count("out") == res.guesses // 2
    png = (folder / "scores.png").read_bytes()
    assert png.startswith(PNG_MAGIC) and len(png) > 1000


# -- the command line -------------------------------------------------------------------------


@pytest.fixture()
def only_audit_command(monkeypatch: pytest.MonkeyPatch) -> None:
    def commands() -> dict[str, ModuleType]:
        eps = [ep for ep in entry_points(group="secagg.commands") if ep.name == "audit"]
        return {ep.name: importlib.import_module(ep.value) for ep in eps}

    monkeypatch.setattr(fl.cli, "_commands", commands)


CLI_SMALL = ["--protocol", "plaintext", "--clients", "4", "--rounds", "2", "--canaries", "40",
             "--epochs", "1", "--seed", "5"]


def test_registered_as_entry_point() -> None:
    eps = {ep.name: ep.value for ep in entry_points(group="secagg.commands")}
    assert eps.get("audit") == "fl.cli.audit"


@pytest.mark.usefixtures("only_audit_command")
def test_json_reports_both_epsilons_and_a_plot(capsys: pytest.CaptureFixture[str],
                                               tmp_path: Path) -> None:
    assert fl.cli.main(["audit", *CLI_SMALL, "--out", str(tmp_path / "a"), "--json"]) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out.strip().splitlines()[-1])
    assert all(k in out for k in KEYS)
    assert out["canaries"] == 40 and out["guesses"] == 16 and out["delta"] == 1e-5
    assert out["epsilon"] is not None and out["empirical_epsilon_lower_bound"] >= 0.0
    assert out["report_dir"] == str((tmp_path / "a").resolve())
    assert (Path(out["report_dir"]) / "scores.png").read_bytes().startswith(PNG_MAGIC)
    assert "empirical ε lower bound" in captured.err and "accounted ε" in captured.err


@pytest.mark.usefixtures("only_audit_command")
def test_without_dp_the_table_says_so(capsys: pytest.CaptureFixture[str],
                                      tmp_path: Path) -> None:
    argv = [*CLI_SMALL, "--no-dp", "--guesses", "10", "--out", str(tmp_path / "b")]
    assert fl.cli.main(["audit", *argv]) == 0
    table = capsys.readouterr().out
    assert "DP is off" in table and "correct guesses" in table and "/ 10" in table


@pytest.mark.usefixtures("only_audit_command")
@pytest.mark.parametrize(("argv", "needle"), [
    (["--canaries", "1"], "canaries must be an integer >= 2"),
    (["--guesses", "7"], "guesses must be an even integer"),
    (["--no-dp", "--epsilon", "2"], "need DP"),
])
def test_bad_input_is_one_line_with_exit_status_2(capsys: pytest.CaptureFixture[str],
                                                 tmp_path: Path, argv: list[str],
                                                 needle: str) -> None:
    assert fl.cli.main(["audit", *argv, "--out", str(tmp_path / "x"), "--json"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("secagg: error: ") and needle in lines[0]
    assert captured.out == "" and not (tmp_path / "x").exists()
