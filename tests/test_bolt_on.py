"""Bolt-on DP: the PSGD sensitivity bounds, the trainer that meets them, the noise scale,
the ledger, and the refusal of non-convex models."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest

import fl.cli
from fl.privacy.bolt_on import batch_layout, clip_features, plan_bolt_on, psgd_train
from fl.privacy.rounds import round_event
from fl.training.config import RunConfig
from fl.training.fedavg import cap_weights
from fl.training.loop import _privacy, plan_run, run_training
from fl.training.payload import WIRE_NORM
from secagg.dp import (
    BoltOnGaussian,
    DiscreteGaussianEvent,
    PrivacyLedger,
    convex_sensitivity,
    logistic_constants,
    strongly_convex_sensitivity,
    strongly_convex_step,
)
from secagg.errors import ConfigError


@pytest.fixture(autouse=True, scope="module")
def _restore_torch_threads() -> Iterator[None]:
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)  # `secagg run` sets one thread for its tiny models
from secagg.rng import Csprng


def test_constants_and_formulas() -> None:
    c = logistic_constants(1.0, 0.1)
    assert c.lipschitz == pytest.approx(2.0) and c.smoothness == pytest.approx(1.1)
    assert c.strong_convexity == 0.1
    # Wu et al.: convex, constant step: 2 k L eta / b
    assert convex_sensitivity(c, 0.5, passes=3, min_batch=4) == pytest.approx(2 * 3 * 2.0 * 0.5 / 4)
    with pytest.raises(ConfigError, match="step <= 2/beta"):
        convex_sensitivity(c, 2.0, passes=1, min_batch=1)
    # strongly convex: 2 L / (gamma m), whatever the passes
    assert strongly_convex_sensitivity(c, batches_per_pass=10, min_batch=5) == pytest.approx(
        2 * 2.0 / (0.1 * 50))
    assert strongly_convex_step(1, c) == pytest.approx(1 / 1.1)
    assert strongly_convex_step(100, c) == pytest.approx(1 / (0.1 * 100))
    assert batch_layout(45, 32) == (2, 22) and batch_layout(64, 32) == (2, 32)


def _neighbours(seed: int, m: int, d: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(m, d)) * 2
    y = rng.integers(0, 2, size=m)
    x2, y2 = x.copy(), y.copy()
    j = int(rng.integers(m))
    x2[j] = -x[j] * 5  # replaced by an adversarial record (clipped to the norm anyway)
    y2[j] = 1 - y[j]
    return x, y, x2, y2


@pytest.mark.parametrize("l2", [0.0, 0.3])
def test_psgd_stays_within_its_bound_on_neighbouring_data(l2: float) -> None:
    """Replace one record: the two trained models are never further apart than the bound."""
    worst = 0.0
    for seed in range(12):
        m, d, batch, epochs, norm = 30, 5, 4, 4, 1.5
        x, y, x2, y2 = _neighbours(seed, m, d)
        start = np.random.default_rng(seed + 100).normal(size=2 * (d + 1))
        setup = plan_bolt_on([m], [1.0], epochs=epochs, batch_size=batch, feature_norm=norm,
                             l2=l2, lr=0.8)
        kw = dict(epochs=epochs, batch_size=batch, constants=setup.constants,
                  feature_norm=norm, step=setup.step, seed=seed)
        a, _, _ = psgd_train(start, x, y, 2, **kw)  # type: ignore[arg-type]
        b, _, _ = psgd_train(start, x2, y2, 2, **kw)  # type: ignore[arg-type]
        gap = float(np.linalg.norm(a.astype(np.float64) - b))
        bound = setup.client_sensitivity[0]
        assert gap <= bound * (1 + 1e-5) + 1e-6
        worst = max(worst, gap / bound)
    assert worst > 0.01  # the records did matter: the check is not vacuous


def test_feature_clipping() -> None:
    x = np.array([[3.0, 4.0], [0.3, 0.4]])
    np.testing.assert_allclose(clip_features(x, 1.0), [[0.6, 0.8], [0.3, 0.4]])


def test_noise_scale_matches_the_papers_formula() -> None:
    """The round's noise, measured, against z * (weight share x 2L/(gamma m)) in the sum's units."""
    cfg = RunConfig(protocol="secagg", clients=8, rounds=2, dp_mode="bolt-on", seed=5,
                    bolt_on_l2=0.2, bolt_on_norm=1.0)
    plan = plan_run(cfg)
    assert plan.bolt_on is not None and plan.noise_multiplier is not None
    c = logistic_constants(1.0, 0.2)
    sizes = [len(s) for s in plan.shards]
    weights = cap_weights(sizes, plan.max_weight)
    expected = []
    for m, w in zip(sizes, weights):
        n_b = math.ceil(m / cfg.batch_size)
        expected.append(w * 2 * c.lipschitz / (0.2 * (m // n_b) * n_b))  # 2L/(gamma m)
    assert plan.bolt_on.weighted_sensitivity == pytest.approx(max(expected))
    dim = len(plan.model) + 2
    units = max(expected) * (WIRE_NORM / cfg.clip) * plan.encoding.scale + math.sqrt(dim + 1)
    privacy = _privacy(cfg, dim, plan.max_weight, cfg.clients,
                       PrivacyLedger(None, cfg.delta, cfg.accountant), plan.noise_multiplier,
                       plan.bolt_on)
    assert privacy.sigma == pytest.approx(plan.noise_multiplier * units, rel=1e-9)
    hook = privacy.config_kw["noise"]
    n = 20_000
    noised, event = hook.add_noise(np.zeros(n, dtype=np.int64), Csprng.from_seed(7))
    assert event == round_event(plan.noise_multiplier)
    std = float(np.std(noised))
    # sample std of 20,000 Gaussians: relative error ~ 1/sqrt(2n) = 0.5%; allow 3%
    assert abs(std / privacy.sigma - 1) < 0.03
    assert abs(float(np.mean(noised))) < 4 * privacy.sigma / math.sqrt(n)
    # the released model's noise: server_lr * clip / WIRE_NORM / (scale * T) per unit
    summary = plan.bolt_on.summary(cfg.clients * plan.max_weight, cfg.server_lr)
    assert summary["model_sensitivity"] == pytest.approx(
        max(expected) / (cfg.clients * plan.max_weight))


def test_mechanism_alone() -> None:
    g = BoltOnGaussian.from_bound(2.0, 0.5, 2.0**10, 16)
    assert g.l2_sensitivity == pytest.approx(0.5 * 1024 + 4)
    assert isinstance(g.event(), DiscreteGaussianEvent) and g.event().noise_multiplier == 2.0
    x = g.add_noise(np.zeros(10_000, dtype=np.int64), Csprng.from_seed(1))[0]
    assert abs(np.std(x) / g.sigma - 1) < 0.04


def test_a_run_charges_the_same_ledger_as_the_gaussian_it_is() -> None:
    cfg = RunConfig(protocol="secagg+", clients=10, rounds=3, dp_mode="bolt-on", seed=2,
                    epsilon=3.0)
    result = run_training(cfg)
    z = result.noise_multiplier
    assert z is not None
    ledger = PrivacyLedger(None, cfg.delta, cfg.accountant)
    for _ in range(cfg.rounds):
        ledger.charge(round_event(z))
    assert result.epsilon == pytest.approx(ledger.epsilon()) and result.epsilon <= 3.0
    assert result.failed_rounds == 0 and result.final_accuracy >= 0.8
    assert all(r.train_loss is None for r in result.history)  # metrics are not sent
    out = result.to_json()
    assert out["dp_mode"] == "bolt-on" and out["bolt_on"]["bound"] == "strongly-convex"


@pytest.mark.parametrize(("argv", "needle"), [
    (["--dataset", "digits"], "needs a convex model"),
    (["--model", "mlp"], "needs a convex model"),
    (["--bolt-on-l2", "0", "--lr", "5"], "step <= 2/beta"),
    (["--bolt-on-norm", "0"], "bolt_on_norm"),
])
def test_refusals_are_one_typed_line(capsys: pytest.CaptureFixture[str], argv: list[str],
                                     needle: str, tmp_path: object) -> None:
    code = fl.cli.main(["run", "--dp-mode", "bolt-on", *argv, "--out", f"{tmp_path}/x",
                        "--json"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and needle in err[0]


def test_the_minibatch_bound_does_not_shrink_with_the_batch() -> None:
    """Averaging over a batch of b does not divide the strongly convex bound by b again: on
    these neighbours the gap exceeds 2L/(gamma m b) (a bound some implementations use) while
    staying within 2L/(gamma m)."""
    worst = 0.0
    for seed in range(40):
        m, d, batch, epochs = 32, 3, 8, 6
        rng = np.random.default_rng(seed)
        x = rng.normal(size=(m, d))
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        y = (x[:, 0] > 0).astype(np.int64)
        x2, y2 = x.copy(), y.copy()
        j = int(rng.integers(m))
        x2[j], y2[j] = -x[j], 1 - y[j]
        s = plan_bolt_on([m], [1.0], epochs=epochs, batch_size=batch, feature_norm=1.0, l2=0.5,
                         lr=1.0)
        kw = dict(epochs=epochs, batch_size=batch, constants=s.constants, feature_norm=1.0,
                  step=s.step, seed=seed)
        a = psgd_train(np.zeros(2 * (d + 1)), x, y, 2, **kw)[0]  # type: ignore[arg-type]
        b = psgd_train(np.zeros(2 * (d + 1)), x2, y2, 2, **kw)[0]  # type: ignore[arg-type]
        gap = float(np.linalg.norm(a.astype(np.float64) - b))
        assert gap <= s.client_sensitivity[0] * (1 + 1e-5)
        worst = max(worst, gap / (s.client_sensitivity[0] / batch))
    assert worst > 1.0
