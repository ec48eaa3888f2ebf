"""Canary clients inside a real training run, and the attack that scores them.

:func:`run_audit` plans an ordinary run (:func:`fl.training.loop.plan_run`: the real protocol, DP
settings, ledger and training loop) and swaps its engine for a :class:`CanaryEngine`. The training
loop is untouched: each round it hands the engine the real cohort's vectors, and the engine adds
every included canary to that cohort as one more client of the same secure sum, then runs the round
on the engine it wraps. A canary's update is ``clip * u_j`` for a fixed unit vector ``u_j`` drawn
once, built by the clients' own :func:`fl.training.payload.client_vector` (clip, scale to the wire
norm, two metric coordinates, zero here) with the largest weight a client may have; the protocol
encodes, masks (or encrypts) and, under DP, noises it like any other.

The adversary sees every released aggregate, nothing else: per round it adds
``cos(released update part, u_j)`` to canary ``j``'s score. It knows the directions but not
which canaries were included. It does not use who contributed: a masking server learns that by
design, and the epsilon does not cover it (:mod:`fl.privacy.rounds`). The number of contributors is
public too (under DP the FedAvg step divides by it); it tells how many canaries are in, not which.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fl.audit.bound import epsilon_lower_bound, max_advantage
from fl.engines import Engine, EngineRound
from fl.training.config import DEFAULT_EPSILON, RunConfig, RunObserver, RunResult
from fl.training.loop import RunPlan, plan_run, run_training
from fl.training.payload import client_vector, vector_dim
from protocols.base import ProtocolSpec, RoundConfig
from secagg.encoding import EncodingConfig
from secagg.errors import ConfigError
from secagg.rng import Csprng

__all__ = [
    "AuditConfig", "AuditPlan", "AuditResult", "CanaryEngine", "plan_audit", "run_audit",
]


@dataclass(frozen=True)
class AuditConfig:
    """Settings of ``secagg audit``; the defaults finish in about a minute on two cores.

    Attributes:
        protocol, clients, rounds, dataset, dp, epsilon, delta, noise_multiplier, epochs: as in
            :class:`fl.training.config.RunConfig` (``clients`` real clients, every one in every
            round; central DP only).
        canaries: ``m``, the canary clients; each is included with probability 1/2.
        guesses: ``r``, how many canaries the attack guesses about: the top ``r/2``
            scores "in", the bottom ``r/2`` "out". ``None``: ``2 * max(1, floor(m / 5))``.
        confidence: of the epsilon lower bound.
        seed: seeds the run (see :class:`fl.training.config.RunConfig`), the canary directions and
            the secret bits. ``None``: OS entropy.
    """

    protocol: str = "secagg+"
    clients: int = 20
    rounds: int = 5
    dataset: str = "digits"
    dp: bool = True
    epsilon: float | None = None
    delta: float = 1e-5
    noise_multiplier: float | None = None
    epochs: int = 5
    canaries: int = 500
    guesses: int | None = None
    confidence: float = 0.95
    seed: int | None = None

    def run_config(self) -> RunConfig:
        """The training run the canaries join."""
        return RunConfig(protocol=self.protocol, clients=self.clients, rounds=self.rounds,
                         dataset=self.dataset, dp=self.dp, epsilon=self.epsilon,
                         delta=self.delta, noise_multiplier=self.noise_multiplier,
                         epochs=self.epochs, seed=self.seed)

    def guess_count(self) -> int:
        """``r``: :attr:`guesses`, or its default."""
        return self.guesses if self.guesses is not None else 2 * max(1, self.canaries // 5)


def _check(cfg: AuditConfig) -> None:
    m = cfg.canaries
    if isinstance(m, bool) or not isinstance(m, int) or m < 2:
        raise ConfigError(f"canaries must be an integer >= 2, got {m!r}")
    r = cfg.guess_count()
    if isinstance(r, bool) or not isinstance(r, int) or not (2 <= r <= m) or r % 2:
        raise ConfigError(f"guesses must be an even integer in 2..{m} (canaries), got {r!r}")
    if not 0.0 < cfg.confidence < 1.0:
        raise ConfigError(f"confidence must be in (0, 1), e.g. 0.95, got {cfg.confidence!r}")


def _widened(enc: EncodingConfig, n: int) -> EncodingConfig:
    """The round's encoding, with room for ``n`` clients (64-bit ring if 32 is too small).

    Only ``max_clients`` and ``bits`` change; the clip, weight cap and fixed point, hence
    one client's sensitivity and the DP noise, stay the same.
    """
    if n <= enc.max_clients:
        return enc
    try:
        return dataclasses.replace(enc, max_clients=n)
    except ConfigError:
        return dataclasses.replace(enc, max_clients=n, bits=64)


class CanaryEngine:
    """An engine that adds the included canaries to every round's cohort and scores every
    canary against every released aggregate.

    Args:
        inner: the engine that runs the rounds (the plan's own).
        directions: ``(m, d)`` unit vectors, one per canary, ``d`` the model's size.
        included: ``(m,)`` bools, the secret bits.
        clip: the run's L2 clip; a canary's update is ``clip * direction``.
        weight: a canary's weight (the run's largest, ``max_weight``).
    """

    def __init__(self, inner: Engine, directions: np.ndarray, included: np.ndarray,
                 clip: float, weight: float) -> None:
        self.inner = inner
        self.name = f"{getattr(inner, 'name', type(inner).__name__)}+canaries"
        self.directions = directions
        self.included = np.asarray(included, bool)
        self.weight = float(weight)
        self.scores = np.zeros(len(directions))
        self.releases = 0
        self.cohorts: list[int] = []
        d = directions.shape[1]
        # A canary has no data: no metrics (zeros in their coordinates).
        self._vectors = [client_vector(clip * directions[j], None, clip)
                         for j in np.flatnonzero(self.included)]
        if any(v.shape != (vector_dim(d),) for v in self._vectors):  # pragma: no cover - defensive
            raise ConfigError("canary vectors do not match the model's size")

    def run_round(self, spec: ProtocolSpec, config: RoundConfig, inputs: Sequence[np.ndarray],
                  weights: Sequence[float], rng: Csprng) -> EngineRound:
        """Run the round with the canaries added, then score the released aggregate."""
        n = len(inputs) + len(self._vectors)
        kw: dict[str, Any] = {"encoding": _widened(config.encoding, n),
                              "round_id": config.round_id, "session": config.session}
        if config.noise is not None:
            kw["noise"] = config.noise
        if config.client_noise is not None:
            raise ConfigError("the audit supports central DP only")
        widened = spec.make_config(n, config.dim, **kw)
        self.cohorts.append(n)
        out = self.inner.run_round(spec, widened, [*inputs, *self._vectors],
                                   [*weights, *([self.weight] * len(self._vectors))], rng)
        if out.result is not None:
            released = np.asarray(out.result.sum[: self.directions.shape[1]], np.float64)
            norm = float(np.linalg.norm(released))
            if norm > 0:
                self.scores += self.directions @ (released / norm)
            self.releases += 1
        return out

    def close(self) -> None:
        """Close the wrapped engine."""
        close = getattr(self.inner, "close", None)
        if callable(close):
            close()


@dataclass
class AuditResult:
    """What the audit found, next to what the accountant claims."""

    config: AuditConfig
    run: RunResult
    scores: np.ndarray
    included: np.ndarray
    guessed_in: np.ndarray
    guessed_out: np.ndarray
    correct: int
    empirical_epsilon: float
    advantage: float
    tpr: float
    fpr: float
    releases: int
    mean_cohort: float
    seconds: float

    @property
    def guesses(self) -> int:
        """``r``: guesses made (the rest abstained)."""
        return int(len(self.guessed_in) + len(self.guessed_out))

    def to_json(self, report_dir: str | None = None) -> dict[str, Any]:
        """The ``secagg audit --json`` object."""
        cfg, run = self.config, self.run
        eps = run.epsilon
        return {
            "protocol": cfg.protocol, "dataset": cfg.dataset,
            "model_params": run.model_params, "clients": cfg.clients,
            "rounds": len(run.history), "released_rounds": self.releases,
            "canaries": cfg.canaries, "canaries_included": int(self.included.sum()),
            "mean_cohort": self.mean_cohort, "canary_weight": run.max_weight,
            "score": "sum over rounds of cos(released aggregate, canary direction)",
            "guesses": self.guesses, "correct_guesses": self.correct,
            "guess_accuracy": self.correct / self.guesses,
            "advantage": self.advantage, "tpr": self.tpr, "fpr": self.fpr,
            "confidence": cfg.confidence,
            "empirical_epsilon_lower_bound": self.empirical_epsilon,
            "dp": cfg.dp, "epsilon": eps, "delta": cfg.delta,
            "epsilon_budget": ((cfg.epsilon if cfg.epsilon is not None or cfg.noise_multiplier
                                is not None else DEFAULT_EPSILON) if cfg.dp else None),
            "noise_multiplier": run.noise_multiplier,
            "max_advantage": max_advantage(eps, cfg.delta),
            "final_accuracy": run.final_accuracy, "initial_accuracy": run.initial_accuracy,
            "seed": cfg.seed, "seconds": self.seconds, "report_dir": report_dir,
        }


def _canaries(m: int, d: int, seed: int | None) -> tuple[np.ndarray, np.ndarray]:
    """``m`` random unit directions in R^d and ``m`` fair secret bits."""
    gen = np.random.default_rng(None if seed is None else [seed, 0xCA4A7])
    u = gen.standard_normal((m, d))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    return u, gen.random(m) < 0.5


def _judge(scores: np.ndarray, r: int) -> tuple[np.ndarray, np.ndarray]:
    """Top ``r/2`` scores guessed in, bottom ``r/2`` out (ties broken by index)."""
    order = np.argsort(scores, kind="stable")
    k = r // 2
    return order[len(order) - k:], order[:k]


@dataclass
class AuditPlan:
    """A validated audit, ready to run: what :func:`plan_audit` builds."""

    config: AuditConfig
    run: RunPlan
    engine: CanaryEngine


def plan_audit(cfg: AuditConfig, *, engine: Engine | None = None) -> AuditPlan:
    """Validate ``cfg``, plan the run and draw the canaries, before any training.

    Args:
        engine: the engine to wrap instead of the one the settings name.

    Raises:
        ConfigError: settings that cannot work (also those :func:`fl.training.loop.plan_run`
            refuses).
        BudgetExceededError: see :func:`fl.training.loop.plan_run`.
    """
    _check(cfg)
    run_cfg = cfg.run_config()
    plan = plan_run(run_cfg, engine=engine)
    directions, included = _canaries(cfg.canaries, len(plan.model), cfg.seed)
    canary_engine = CanaryEngine(plan.engine, directions, included, run_cfg.clip,
                                 plan.max_weight)
    plan.engine = canary_engine
    return AuditPlan(cfg, plan, canary_engine)


def run_audit(cfg: AuditConfig | AuditPlan, *, observer: RunObserver | None = None,
              engine: Engine | None = None) -> AuditResult:
    """Train with canaries, score them, and bound epsilon from below.

    Args:
        cfg: the settings, or a plan already made by :func:`plan_audit`.
        observer: progress callbacks of the training loop (:class:`fl.training.config.RunObserver`).
        engine: the engine to wrap instead of the one the settings name.

    Raises:
        ConfigError, BudgetExceededError: see :func:`plan_audit`.
    """
    plan = cfg if isinstance(cfg, AuditPlan) else plan_audit(cfg, engine=engine)
    cfg, canary_engine = plan.config, plan.engine
    included = canary_engine.included
    t0 = time.perf_counter()
    run = run_training(plan.run, observer=observer)
    seconds = time.perf_counter() - t0
    scores = canary_engine.scores
    guessed_in, guessed_out = _judge(scores, cfg.guess_count())
    correct = int(included[guessed_in].sum() + (~included[guessed_out]).sum())
    eps_lb = epsilon_lower_bound(cfg.canaries, cfg.guess_count(), correct, cfg.delta,
                                 cfg.confidence)
    above = scores > np.median(scores)
    tpr = float(above[included].mean()) if included.any() else 0.0
    fpr = float(above[~included].mean()) if (~included).any() else 0.0
    cohorts = canary_engine.cohorts
    return AuditResult(
        config=cfg, run=run, scores=scores, included=included, guessed_in=guessed_in,
        guessed_out=guessed_out, correct=correct, empirical_epsilon=eps_lb,
        advantage=tpr - fpr, tpr=tpr, fpr=fpr, releases=canary_engine.releases,
        mean_cohort=float(np.mean(cohorts)) if cohorts else 0.0, seconds=seconds,
    )

