"""fl.training.loop, fl.engines, fl.privacy.rounds and fl.training.report: federated training
over secure aggregation."""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from fl.engines import Engine, EngineRound, SimulationEngine, engine_names, make_engine
from fl.privacy.rounds import CentralDPHook, load_ledger, round_event, round_privacy, save_ledger
from fl.training.config import RunConfig, RunResult
from fl.training.loop import plan_run, run_training
from fl.training.report import REPORT_FILES, write_report
from protocols.base import AggregateResult, ProtocolSpec, RoundConfig
from secagg.dp import PoissonSampledEvent, PrivacyLedger
from secagg.encoding import EncodingConfig
from secagg.errors import AlreadyFinalized, BudgetExceededError, ConfigError
from secagg.rng import Csprng

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True, scope="module")
def _quiet_and_single_threaded() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is faster and steadier
    logging.getLogger("absl").setLevel(logging.ERROR)
    yield
    torch.set_num_threads(threads)


def _small(**kw: object) -> RunConfig:
    base: dict[str, object] = {"clients": 10, "rounds": 3, "seed": 7}
    base.update(kw)
    return RunConfig(**base)  # type: ignore[arg-type]


class RecordingEngine:
    """The simulation engine, remembering every client vector it was given (for tests)."""

    name = "recording"

    def __init__(self) -> None:
        self.inner = SimulationEngine()
        self.inputs: list[np.ndarray] = []
        self.closed = False

    def run_round(self, spec: ProtocolSpec, config: RoundConfig, inputs: Sequence[np.ndarray],
                  weights: Sequence[float], rng: Csprng) -> EngineRound:
        self.inputs.extend(np.array(x, copy=True) for x in inputs)
        return self.inner.run_round(spec, config, inputs, weights, rng)

    def close(self) -> None:
        self.closed = True


# -- training ---------------------------------------------------------------------------------


def test_secagg_plus_with_dp_learns_and_reports_epsilon() -> None:
    res = run_training(_small(epsilon=5.0))
    assert len(res.history) == 3 and res.failed_rounds == 0
    assert res.final_accuracy >= 0.85
    eps = [r.epsilon for r in res.history]
    assert all(e is not None for e in eps)
    assert 0 < eps[0] < eps[1] < eps[2] <= 5.0  # type: ignore[operator]
    assert res.epsilon == eps[-1]
    assert res.noise_multiplier is not None and res.noise_multiplier > 0
    for r in res.history:
        assert r.contributors == r.cohort == 10 and r.dropped == 0
        assert r.train_noise_std is not None and r.train_noise_std > 0
        assert 0.0 <= r.train_accuracy <= 1.0  # type: ignore[operator]


def test_plaintext_without_dp_learns_and_has_no_epsilon() -> None:
    res = run_training(_small(protocol="plaintext", dp=False))
    assert res.final_accuracy >= 0.9
    assert res.epsilon is None and res.noise_multiplier is None
    out = res.to_json()
    assert out["epsilon"] is None and out["delta"] is None
    assert all(r.epsilon is None and r.train_noise_std is None for r in res.history)
    # Without noise the secure sum decodes the clients' metrics almost exactly.
    assert res.history[-1].train_accuracy is not None and res.history[-1].train_accuracy > 0.8


def test_masking_gives_the_same_training_as_plaintext_without_dp() -> None:
    plain = run_training(_small(protocol="plaintext", dp=False, rounds=2))
    masked = run_training(_small(protocol="secagg", dp=False, rounds=2))
    for a, b in zip(plain.history, masked.history):
        assert a.test_loss == pytest.approx(b.test_loss, abs=1e-3)
        assert a.train_loss == pytest.approx(b.train_loss, abs=1e-3)


def test_dropouts_are_survived_and_counted() -> None:
    res = run_training(_small(protocol="secagg", dropout=0.2, rounds=2, dp=False))
    for r in res.history:
        # A client that drops after sending its masked input still counts in the sum.
        assert r.error is None and r.dropped == 2 and 8 <= r.contributors <= 10
    assert res.final_accuracy >= 0.85


def test_poisson_sampling_is_accounted_as_sampled() -> None:
    plan = plan_run(_small(clients=20, sampling_rate=0.5, noise_multiplier=2.0, rounds=2,
                           protocol="plaintext"))
    res = run_training(plan)
    assert plan.ledger is not None
    assert all(isinstance(e, PoissonSampledEvent) and e.sampling_rate == 0.5
               for e in plan.ledger.events)
    assert len(plan.ledger.events) == 2
    unsampled = PrivacyLedger(None, 1e-5)
    for _ in range(2):
        unsampled.charge(round_event(2.0, 1.0))
    assert res.epsilon is not None and res.epsilon < unsampled.epsilon()


@pytest.mark.parametrize("protocol", ["plaintext", "secagg", "secagg+", "ckks", "paillier"])
def test_every_protocol_trains_with_central_dp(protocol: str) -> None:
    import protocols

    if protocol not in protocols.names():
        pytest.skip(f"{protocol} is not available here")
    res = run_training(_small(protocol=protocol, clients=4, rounds=1, epsilon=8.0))
    assert res.failed_rounds == 0 and res.final_accuracy >= 0.8
    assert res.epsilon is not None and 0 < res.epsilon <= 8.0


def test_distributed_dp_charges_the_noise_that_survived() -> None:
    plan = plan_run(_small(protocol="secagg+", dp_mode="distributed", dropout=0.1,
                           epsilon=5.0))
    res = run_training(plan)
    assert res.failed_rounds == 0 and res.final_accuracy >= 0.85
    assert plan.ledger is not None and plan.noise_multiplier is not None
    assert len(plan.ledger.events) == 3
    # The server refuses to release fewer than the planned 9 of 10, so every charged event
    # has at least the planned noise; a round where the late dropper still counted has more.
    for record, event in zip(res.history, plan.ledger.events):
        assert record.contributors >= 9
        assert event.noise_multiplier >= plan.noise_multiplier * (1 - 1e-9)  # type: ignore[union-attr]
    assert res.epsilon is not None and res.epsilon <= 5.0
    assert res.to_json()["dp_mode"] == "distributed"


def test_distributed_dp_needs_a_masking_protocol() -> None:
    with pytest.raises(ConfigError, match=r"distributed DP is not available with plaintext; "
                       r"use it with one of: secagg, secagg\+"):
        plan_run(_small(protocol="plaintext", dp_mode="distributed"))


def test_a_given_engine_object_is_used_and_closed() -> None:
    engine = RecordingEngine()
    assert isinstance(engine, Engine) and isinstance(SimulationEngine(), Engine)
    res = run_training(_small(rounds=1, dp=False), engine=engine)
    assert res.engine == "recording" and engine.closed
    assert len(engine.inputs) == 10


# -- privacy budget ---------------------------------------------------------------------------


def test_a_plan_over_budget_is_refused_before_training() -> None:
    with pytest.raises(BudgetExceededError, match=r"round\(s\) fit.*noise multiplier >="):
        plan_run(_small(noise_multiplier=0.5, epsilon=1.0, rounds=3))


def test_the_round_is_checked_before_release_and_charged_after_from_its_event() -> None:
    enc = EncodingConfig(clip=1.0, max_clients=4)

    def central(ledger: PrivacyLedger, z: float) -> Any:
        return round_privacy("central", ledger, z, dim=3, cohort=4, survivors=4,
                             sampling_rate=1.0, encoding_for=lambda bound: enc)

    ledger = PrivacyLedger(1.0, 1e-5)
    with pytest.raises(BudgetExceededError):
        central(ledger, 0.5)  # refused before the round: nothing to noise, nothing released
    assert ledger.rounds == 0  # nothing charged, nothing released
    generous_ledger = PrivacyLedger(10.0, 1e-5)
    privacy = central(generous_ledger, 5.0)
    generous = privacy.config_kw["noise"]
    assert isinstance(generous, CentralDPHook) and generous_ledger.rounds == 0  # checked only
    zeros = np.zeros(4, np.int64)
    noised, event = generous.add_noise(zeros, Csprng.from_seed(1))
    assert noised.shape == zeros.shape and event == round_event(5.0)
    assert generous_ledger.rounds == 0  # the hook never sees a ledger
    released = AggregateResult(noised[:-1].astype(np.float64), 1.0, (0, 1, 2, 3), noised, event)
    eps = privacy.settle("plaintext", released)
    assert generous_ledger.rounds == 1 and eps == generous_ledger.epsilon()
    assert generous_ledger.events == (round_event(5.0),)
    with pytest.raises(AlreadyFinalized):
        generous.add_noise(zeros, Csprng.from_seed(2))
    # A protocol that releases without the noise's event cannot run with DP.
    unnoised = AggregateResult(np.zeros(3), 1.0, (0, 1, 2, 3), zeros, None)
    with pytest.raises(ConfigError, match="without reporting the central DP noise hook"):
        central(PrivacyLedger(10.0, 1e-5), 5.0).settle("plaintext", unnoised)
    # No result: charged only if the noise was drawn (a noised sum may have left).
    silent_ledger = PrivacyLedger(10.0, 1e-5)
    silent = central(silent_ledger, 5.0)
    assert silent.settle("plaintext", None) == 0.0 and silent_ledger.rounds == 0
    drawn = central(silent_ledger, 5.0)
    drawn.config_kw["noise"].add_noise(zeros, Csprng.from_seed(3))
    assert drawn.settle("plaintext", None) > 0.0 and silent_ledger.rounds == 1


def test_a_ledger_file_carries_the_budget_across_runs(tmp_path: Path) -> None:
    path = tmp_path / "ledger.json"
    first = run_training(_small(protocol="plaintext", rounds=2, epsilon=4.0,
                                ledger_path=str(path)))
    kept = json.loads(path.read_text())
    assert len(kept["rounds"]) == 2 and kept["epsilon"] == pytest.approx(first.epsilon)
    with pytest.raises(BudgetExceededError, match="already spent"):
        plan_run(_small(protocol="plaintext", epsilon=first.epsilon, ledger_path=str(path)))
    ledger = load_ledger(path, 8.0, 1e-5)
    assert ledger.rounds == 2
    z = ledger.noise_multiplier_for(3)
    assert ledger.epsilon_after(round_event(z), 3) <= 8.0
    save_ledger(path, ledger)
    with pytest.raises(ConfigError, match="delta=1e-05"):
        load_ledger(path, 8.0, 1e-6)


# -- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "pattern"),
    [
        ({"dataset": "mnist"}, r"unknown dataset 'mnist'; choose one of: breast_cancer, digits"),
        ({"protocol": "rot13"}, r"unknown protocol 'rot13'; choose one of: .*secagg\+"),
        ({"engine": "pigeon"}, r"unknown engine 'pigeon'; choose one of: .*simulation"),
        ({"split": "alphabetical"}, r"choose one of: iid, dirichlet"),
        ({"clients": 1}, r"cohort of at least 2 clients"),
        ({"clients": 10, "dropout": 0.6, "protocol": "secagg"},
         r"needs at least 6 survivors.*leaves 4; use dropout <= 0\.4"),
        ({"dropout": 1.0}, r"dropout must be a fraction in \[0, 1\)"),
        ({"clients": 500}, r"allow 1 to 113 clients"),
        ({"dp": False, "epsilon": 1.0}, r"need DP"),
        ({"delta": 2.0}, r"delta must be in \(0, 1\)"),
        ({"cohort": 30}, r"cohort must be an integer in 1\.\.10"),
        ({"accountant": "moments"}, r"choose one of: rdp, pld"),
        ({"dp_mode": "local"}, r"choose one of: central, distributed"),
    ],
)
def test_bad_settings_name_what_would_work(settings: dict[str, object], pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern) as info:
        plan_run(_small(**settings))
    assert "\n" not in str(info.value)


def test_an_engine_whose_module_is_missing_is_refused_naming_the_available_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import fl.engines.registry

    monkeypatch.setitem(fl.engines.registry._PLUGINS, "ghost", "fl.no_such_engine_module")
    # a module that imports but registers nothing
    monkeypatch.setitem(fl.engines.registry._PLUGINS, "mute", "fl.training.data")
    assert {"flower", "ghost", "simulation"} <= set(engine_names())
    with pytest.raises(ConfigError, match=r"engine 'ghost' is not available: its module "
                       r"fl\.no_such_engine_module is not part.*available engines: .*simulation"):
        make_engine("ghost", dropout=0.0)
    with pytest.raises(ConfigError,
                       match=r"engine 'mute' is not available: fl\.training\.data did not"):
        make_engine("mute", dropout=0.0)


def test_the_flower_engine_is_found_by_name_when_installed() -> None:
    try:
        engine = make_engine("flower", dropout=0.0)
    except ConfigError as exc:  # without flwr: refused, naming what is available
        assert "simulation" in str(exc) and "\n" not in str(exc)
    else:
        assert isinstance(engine, Engine) and engine.name == "flower"


# -- the report folder ------------------------------------------------------------------------


def _run_with_report(tmp_path: Path) -> tuple[RunResult, RecordingEngine, Path]:
    engine = RecordingEngine()
    res = run_training(_small(rounds=2), engine=engine)
    return res, engine, write_report(res, tmp_path / "report")


def test_report_folder_holds_metrics_and_valid_plots(tmp_path: Path) -> None:
    res, _, folder = _run_with_report(tmp_path)
    assert sorted(p.name for p in folder.iterdir()) == sorted(REPORT_FILES)
    summary = json.loads((folder / "metrics.json").read_text())
    assert summary["report_dir"] == str(folder)
    assert summary["final_accuracy"] == res.final_accuracy
    assert [h["round"] for h in summary["history"]] == [1, 2]
    with (folder / "metrics.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["round"]) for r in rows] == [1, 2]
    assert float(rows[-1]["epsilon"]) == pytest.approx(res.epsilon)
    for name in REPORT_FILES:
        if name.endswith(".png"):
            data = (folder / name).read_bytes()
            assert data.startswith(PNG_MAGIC) and len(data) > 1000


def test_report_folder_never_holds_a_client_update(tmp_path: Path) -> None:
    """Principle 3: only aggregates leave the round, in any encoding we might use."""
    _, engine, folder = _run_with_report(tmp_path)
    blobs = [p.read_bytes() for p in folder.iterdir()]
    assert len(engine.inputs) == 20
    for x in engine.inputs:
        model_part = x[:-2]
        for raw in (model_part.astype(np.float64).tobytes(), model_part.astype(np.float32).tobytes(),
                    json.dumps(model_part.tolist())[1:-1].encode()):
            assert all(raw[:64] not in blob for blob in blobs)
    summary = json.loads((folder / "metrics.json").read_text())

    def longest_list(v: object) -> int:
        if isinstance(v, dict):
            return max((longest_list(x) for x in v.values()), default=0)
        if isinstance(v, list):
            return max([len(v), *(longest_list(x) for x in v)])
        return 0

    assert longest_list(summary) == 2  # the per-round history; no vector anywhere
