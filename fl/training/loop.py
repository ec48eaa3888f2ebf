"""Federated training end to end: the loop behind ``secagg run``.

Each round (:func:`run_training`):

1. choose the cohort: every client, a Poisson sample at ``sampling_rate``, or a fixed-size
   sample of ``cohort`` clients;
2. every cohort member trains the global model on its own shard and gets ``delta``;
3. it builds its vector with :func:`fl.training.payload.client_vector`: ``delta`` clipped to L2
   norm ``clip`` at the wire norm, then its two bounded training metrics (see below); its
   weight is its example count capped at ``max_weight``;
4. with DP, the round's :class:`fl.privacy.rounds.RoundPrivacy` is checked against the ledger first;
   the engine (:mod:`fl.engines`) runs one round of the chosen protocol on those vectors:
   the decoding party learns only ``sum(w * vector)`` and ``sum(w)``, with DP noise in
   them when DP is on (central or distributed), and reports the noise's DP event in its
   result; :meth:`fl.privacy.rounds.RoundPrivacy.settle` then charges the ledger, the one place a
   run spends budget;
5. the server reads the released sum back (:func:`fl.training.payload.read_sum`) and applies it as
   a weighted FedAvg step, scaled back to model units (divided by the decoded
   total weight; under DP by the fixed ``expected cohort * max_weight``, since the noised
   total is too noisy to divide by and the fixed one reveals nothing of who contributed)
   and evaluates the new model on the held-out test set.

Client metrics ride in the same secure sum as two extra coordinates (:mod:`fl.training.payload`
holds the layout): ``METRIC_SCALE * min(loss, LOSS_CAP) / LOSS_CAP`` and ``METRIC_SCALE *
accuracy`` (loss and accuracy over the client's last local epoch). The update is clipped to
``clip`` and scaled to norm at most :data:`WIRE_NORM`; the metric part has norm at most
``METRIC_SCALE * sqrt(2)``; so the encoding's clip, ``PAYLOAD_NORM = sqrt(WIRE_NORM^2 + 2 *
METRIC_SCALE^2)``, never cuts anything. The server
learns the weighted mean metrics and nothing per client, and under DP the metrics are covered
by the same noise and the same DP event as the update: one release per round, no extra
epsilon. The honest price: the sensitivity (weight coordinate included) is 6% larger than
without metrics, and each decoded train metric carries noise of standard deviation about
``z * 4.4 / cohort`` (:attr:`RoundRecord.train_noise_std`), so with tens of clients the DP
train metrics are rough; they are clamped to their valid ranges (post-processing). The
held-out test accuracy is measured by the server on its own test set from the released
model, so it costs no privacy.

Two options change what the clients train on and how (:func:`plan_run` sets them up): with
``k_anonymity`` each client first generalises its own records (:mod:`fl.training.anonymity`); with
``dp_mode="bolt-on"`` each trains logistic regression by exact permutation SGD
(:func:`fl.privacy.bolt_on.psgd_train`), sends zeros for its metrics, and the decoding party's
noise is calibrated to the Bolt-on sensitivity (:mod:`fl.privacy.bolt_on`).

Everything that can be wrong with the settings is checked by :func:`plan_run` before any
training, and raised as :class:`~secagg.errors.ConfigError` (or
:class:`~secagg.errors.BudgetExceededError`) with the valid choices or numbers.

Nothing here keeps a client's update beyond the round that uses it, and a
:class:`RunResult` holds only aggregates: principle 3 holds for :mod:`fl.training.report` too.
"""

from __future__ import annotations

import dataclasses
import math
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

import protocols
from fl.engines import Engine, engine_names, make_engine
from fl.privacy.bolt_on import (
    BoltOnSetup,
    bolt_on_privacy,
    clip_features,
    plan_bolt_on,
    psgd_train,
    require_convex,
)
from fl.privacy.rounds import (
    DP_MODES,
    RoundPrivacy,
    load_ledger,
    round_privacy,
    save_ledger,
)
from fl.training import payload
from fl.training.anonymity import anonymise_shards
from fl.training.config import (
    DEFAULT_EPSILON,
    DEFAULT_LR,
    SPLITS,
    RoundRecord,
    RunConfig,
    RunObserver,
    RunResult,
    SilentObserver,
)
from fl.training.data import DATASETS, Dataset, Shard, load_dataset
from fl.training.payload import PAYLOAD_NORM
from protocols.base import ProtocolSpec, RoundConfig
from secagg.dp import ACCOUNTANTS, PrivacyLedger, round_event
from secagg.encoding import EncodingConfig
from secagg.errors import BudgetExceededError, ConfigError
from secagg.rng import Csprng

if TYPE_CHECKING:
    from fl.training.model import ModelVector

# The model modules are imported where the run needs them (torch only for an mlp or cnn): every
# check of the settings that needs no model answers before the model is built.

__all__ = ["RunPlan", "plan_run", "run_training"]


@dataclass
class RunPlan:
    """A validated run, ready to execute: what :func:`plan_run` builds."""

    config: RunConfig
    spec: ProtocolSpec
    dataset: Dataset
    shards: list[Shard]
    model: ModelVector
    encoding: EncodingConfig
    engine: Engine
    ledger: PrivacyLedger | None
    noise_multiplier: float | None
    max_weight: float
    protocol_params: dict[str, int]
    base_seed: int
    lr: float
    anonymity: dict[str, Any] | None = None
    bolt_on: BoltOnSetup | None = None


# -- validation -------------------------------------------------------------------------------


def _positive(name: str, value: object, *, integer: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok and integer:
        ok = isinstance(value, int)
    if not ok or not math.isfinite(float(value)) or float(value) <= 0:  # type: ignore[arg-type]
        kind = "an integer >= 1" if integer else "a positive number"
        raise ConfigError(f"{name} must be {kind}, got {value!r}")


def _check_settings(cfg: RunConfig) -> None:
    spec = protocols.get(cfg.protocol)  # ConfigError naming the protocols
    if cfg.enrolled and "enrolled" not in spec.keywords:
        with_mode = sorted(n for n in protocols.names() if "enrolled" in protocols.get(n).keywords)
        raise ConfigError(f"--enrolled needs a protocol with an enrolled mode "
                          f"({', '.join(with_mode)}), got {cfg.protocol}")
    if cfg.dataset not in DATASETS:
        raise ConfigError(f"unknown dataset {cfg.dataset!r}; choose one of: {', '.join(DATASETS)}")
    if cfg.split not in SPLITS:
        raise ConfigError(f"unknown split {cfg.split!r}; choose one of: {', '.join(SPLITS)}")
    if cfg.engine not in engine_names():
        raise ConfigError(f"unknown engine {cfg.engine!r}; choose one of: "
                          f"{', '.join(engine_names())}")
    for name in ("clients", "rounds", "epochs", "batch_size"):
        _positive(name, getattr(cfg, name), integer=True)
    for name in ("clip", "server_lr", "alpha"):
        _positive(name, getattr(cfg, name))
    if cfg.lr is not None:
        _positive("lr", cfg.lr)
    if not (isinstance(cfg.dropout, (int, float)) and 0.0 <= cfg.dropout < 1.0):
        raise ConfigError(f"dropout must be a fraction in [0, 1), e.g. 0.1, got {cfg.dropout!r}")
    if not (isinstance(cfg.sampling_rate, (int, float)) and 0.0 < cfg.sampling_rate <= 1.0):
        raise ConfigError(f"sampling_rate must be in (0, 1], got {cfg.sampling_rate!r}")
    if cfg.cohort is not None:
        if cfg.sampling_rate != 1.0:
            raise ConfigError("choose Poisson sampling (sampling_rate) or a fixed cohort, not both")
        if isinstance(cfg.cohort, bool) or not isinstance(cfg.cohort, int) or not (
            1 <= cfg.cohort <= cfg.clients
        ):
            raise ConfigError(f"cohort must be an integer in 1..{cfg.clients} (clients), "
                              f"got {cfg.cohort!r}")
    if cfg.max_weight is not None:
        _positive("max_weight", cfg.max_weight)
    if cfg.dp:
        if not (isinstance(cfg.delta, (int, float)) and 0.0 < cfg.delta < 1.0):
            raise ConfigError(f"delta must be in (0, 1), e.g. 1e-5, got {cfg.delta!r}")
        if cfg.epsilon is not None:
            _positive("epsilon", cfg.epsilon)
        if cfg.noise_multiplier is not None:
            _positive("noise_multiplier", cfg.noise_multiplier)
        if cfg.dp_mode not in DP_MODES:
            raise ConfigError(f"unknown DP mode {cfg.dp_mode!r}; choose one of: "
                              f"{', '.join(DP_MODES)}")
        if cfg.accountant not in ACCOUNTANTS:
            raise ConfigError(f"unknown accountant {cfg.accountant!r}; choose one of: "
                              f"{', '.join(ACCOUNTANTS)}")
    elif cfg.epsilon is not None or cfg.noise_multiplier is not None:
        raise ConfigError("epsilon and noise_multiplier need DP; drop --no-dp or drop them")
    _check_extras(cfg)


def _check_extras(cfg: RunConfig) -> None:
    """The model kind, k-anonymity and Bolt-on settings."""
    if cfg.model is not None:
        from fl.training.model import MODEL_KINDS

        if cfg.model not in MODEL_KINDS:
            raise ConfigError(f"unknown model {cfg.model!r}; choose one of: "
                              f"{', '.join(MODEL_KINDS)}")
    if cfg.k_anonymity is not None:
        _positive("k_anonymity", cfg.k_anonymity, integer=True)
    elif cfg.quasi_identifiers is not None:
        raise ConfigError("quasi_identifiers need k-anonymity; add --k-anonymity K")
    if cfg.dp and cfg.dp_mode == "bolt-on":
        _positive("bolt_on_norm", cfg.bolt_on_norm)
        if not (isinstance(cfg.bolt_on_l2, (int, float)) and math.isfinite(cfg.bolt_on_l2)
                and cfg.bolt_on_l2 >= 0):
            raise ConfigError(f"bolt_on_l2 must be a number >= 0 (0: convex bound), got "
                              f"{cfg.bolt_on_l2!r}")


def _round_config(spec: ProtocolSpec, k: int, dim: int, enc: EncodingConfig, dropout: float,
                  **kw: Any) -> RoundConfig:
    # A protocol whose decoding party releases any set of survivors (HE's decryptor) is told
    # how many the round planned for, so an aggregator cannot pass off a smaller sum as the
    # round's (SECURITY.md, HE).
    planned = spec.planned_min_clients(k, dropout)
    if planned is not None:
        kw = {**kw, "min_clients": max(planned, kw.get("min_clients") or 0)}
    return spec.make_config(k, dim, encoding=enc, dropout_tolerance=max(0.1, dropout), **kw)


def _check_cohort(spec: ProtocolSpec, k: int, dim: int, enc: EncodingConfig, dropout: float,
                  what: str) -> dict[str, int]:
    """Refuse a cohort too small for the protocol's threshold; returns its parameters."""
    need_min = spec.min_cohort
    if k < need_min:
        raise ConfigError(
            f"{spec.name} needs a cohort of at least {need_min} clients (a sum over one client "
            f"is that client's update), but {what} is {k}; use more --clients"
        )
    config = _round_config(spec, k, dim, enc, dropout)
    params = spec.graph_params(config).as_dict()
    need = max(params.get("threshold", 1), config.min_clients)
    dropped = round(dropout * k)
    if k - dropped < need:
        raise ConfigError(
            f"{spec.name} with a cohort of {k} clients needs at least {need} survivors "
            f"(threshold), but dropout {dropout:g} drops {dropped} and leaves {k - dropped}; "
            f"use dropout <= {(k - need) / k:.3g} or more clients"
        )
    return params


def _encoding(cfg: RunConfig, max_weight: float, noise_bound: int = 0) -> EncodingConfig:
    """32-bit ring when the sum fits in it, else 64-bit (whose error names what fits)."""
    try:
        return EncodingConfig(clip=PAYLOAD_NORM, frac_bits=cfg.frac_bits, bits=32,
                              max_clients=cfg.clients, max_weight=max_weight,
                              noise_bound=noise_bound)
    except ConfigError:
        return EncodingConfig(clip=PAYLOAD_NORM, frac_bits=cfg.frac_bits, bits=64,
                              max_clients=cfg.clients, max_weight=max_weight,
                              noise_bound=noise_bound)


def _privacy(cfg: RunConfig, dim: int, max_weight: float, cohort: int, ledger: PrivacyLedger,
             z: float, bolt: BoltOnSetup | None = None) -> RoundPrivacy:
    """One round's DP, for a cohort of ``cohort`` of whom the planned share survives."""
    if bolt is not None:  # output perturbation with the Bolt-on bound (fl.privacy.bolt_on)
        enc = _encoding(cfg, max_weight)
        return bolt_on_privacy(ledger, z, bolt.units(enc, dim, cfg.clip), enc,
                               cfg.sampling_rate)
    return round_privacy(
        cfg.dp_mode, ledger, z, dim=dim, cohort=cohort,
        survivors=cohort - round(cfg.dropout * cohort), sampling_rate=cfg.sampling_rate,
        encoding_for=lambda bound: _encoding(cfg, max_weight, bound),
    )


def _supports(spec: ProtocolSpec, privacy: RoundPrivacy) -> bool:
    return privacy.mode != "distributed" or spec.supports_distributed_dp


def plan_run(cfg: RunConfig, *, engine: Engine | None = None) -> RunPlan:
    """Validate ``cfg`` and build everything the run needs, before any training.

    Args:
        engine: an engine object to use instead of ``make_engine(cfg.engine, ...)``.

    Raises:
        ConfigError: any setting that cannot work (names the valid choices or numbers).
        BudgetExceededError: the budget is already spent, or the planned rounds would
            exceed it (names how many fit and which noise multiplier would).
    """
    _check_settings(cfg)
    spec = protocols.get(cfg.protocol)
    base_seed = cfg.seed if cfg.seed is not None else secrets.randbits(63)
    ds = load_dataset(cfg.dataset)
    if cfg.split == "iid":
        shards = ds.split_iid(cfg.clients, seed=base_seed)
    else:
        shards = ds.split_dirichlet(cfg.clients, cfg.alpha, seed=base_seed)
    max_weight = float(cfg.max_weight if cfg.max_weight is not None
                       else max(1, ds.n_train // cfg.clients))
    enc = _encoding(cfg, max_weight)
    if cfg.cohort is not None:
        k, what = cfg.cohort, "--cohort"
    elif cfg.sampling_rate == 1.0:
        k, what = cfg.clients, "--clients"
    else:
        k = max(1, round(cfg.sampling_rate * cfg.clients))
        what = "the expected cohort (sampling rate x clients)"
    # What needs no model is checked before the model (and, for a net, torch) comes in:
    # the cohort against the protocol's threshold (which does not depend on the vector's
    # length; checked again below with the real one), then the privacy budget.
    _check_cohort(spec, k, payload.vector_dim(1), enc, cfg.dropout, what)
    ledger: PrivacyLedger | None = None
    z: float | None = None
    if cfg.dp:
        q = cfg.sampling_rate
        if cfg.noise_multiplier is None:
            budget = cfg.epsilon if cfg.epsilon is not None else DEFAULT_EPSILON
            ledger = load_ledger(cfg.ledger_path, budget, cfg.delta, cfg.accountant)
            z = ledger.noise_multiplier_for(cfg.rounds, q)
        else:
            ledger = load_ledger(cfg.ledger_path, cfg.epsilon, cfg.delta, cfg.accountant)
            z = float(cfg.noise_multiplier)
            _check_budget(ledger, z, q, cfg.rounds)
    from fl.training.model import ModelVector, make_model

    model = make_model(ds, kind=cfg.model, seed=base_seed % 2**31)
    anonymity: dict[str, Any] | None = None
    if cfg.k_anonymity is not None:  # each client, on its own records, before training
        shards, anonymity = anonymise_shards(ds, shards, cfg.k_anonymity, cfg.quasi_identifiers)
    bolt: BoltOnSetup | None = None
    if cfg.dp and cfg.dp_mode == "bolt-on":
        require_convex(model, ds.name)
        bolt = plan_bolt_on([len(s) for s in shards],  # weights as cap_weights gives them
                            [min(float(len(s)), max_weight) for s in shards],
                            epochs=cfg.epochs, batch_size=cfg.batch_size,
                            feature_norm=cfg.bolt_on_norm, l2=cfg.bolt_on_l2,
                            lr=cfg.lr if cfg.lr is not None else DEFAULT_LR.get(cfg.dataset, 0.5))
        ds = dataclasses.replace(ds, x_test=clip_features(ds.x_test, cfg.bolt_on_norm)
                                 .astype(np.float32))
    mv = ModelVector(model)
    dim = payload.vector_dim(len(mv))
    params = _check_cohort(spec, k, dim, enc, cfg.dropout, what)
    if z is not None:  # a dry run of one round's DP: the mechanism's, headroom's, protocol's
        scratch = PrivacyLedger(None, cfg.delta, cfg.accountant)  # type: ignore[arg-type]
        dry = _privacy(cfg, dim, max_weight, k, scratch, z, bolt)
        if not _supports(spec, dry):
            able = [name for name in protocols.names() if _supports(protocols.get(name), dry)]
            raise ConfigError(f"{cfg.dp_mode} DP is not available with {spec.name}; use it "
                              f"with one of: {', '.join(able) or 'none'}")
        _round_config(spec, k, dim, dry.encoding, cfg.dropout, **dry.config_kw)
    lr = cfg.lr if cfg.lr is not None else DEFAULT_LR.get(cfg.dataset, 0.5)
    if engine is None:  # last: nothing after this can fail and leave it open
        engine = make_engine(cfg.engine, dropout=cfg.dropout)
    return RunPlan(cfg, spec, ds, shards, mv, enc, engine, ledger, z, max_weight, params,
                   base_seed, lr, anonymity=anonymity, bolt_on=bolt)


def _check_budget(ledger: PrivacyLedger, z: float, q: float, rounds: int) -> None:
    budget = ledger.epsilon_budget
    if budget is None:
        return
    event = round_event(z, q)
    reached = ledger.epsilon_after(event, rounds)
    if reached <= budget:
        return
    fit = ledger.rounds_left(event, rounds)
    need = ledger.noise_multiplier_for(rounds, q)
    raise BudgetExceededError(
        f"{rounds} round(s) at noise multiplier {z:g} would reach epsilon={reached:.4g} > "
        f"budget {budget:g} at delta={ledger.delta:g}; {fit} round(s) fit, or use a noise "
        f"multiplier >= {need:.4g} (or omit it to calibrate)"
    )


# -- the loop ---------------------------------------------------------------------------------


def _cohort(plan: RunPlan, gen: np.random.Generator) -> list[int]:
    from fl.training.fedavg import sample_clients

    cfg = plan.config
    if cfg.cohort is not None:
        return sample_clients(cfg.clients, "fixed", cfg.cohort, gen)
    if cfg.sampling_rate == 1.0:
        return list(range(cfg.clients))
    return sample_clients(cfg.clients, "poisson", cfg.sampling_rate, gen)


def _expected_cohort(cfg: RunConfig) -> float:
    """The cohort size a round is planned for: the fixed sample, or q * clients."""
    return float(cfg.cohort) if cfg.cohort is not None else cfg.sampling_rate * cfg.clients


def run_training(
    cfg: RunConfig | RunPlan,
    *,
    engine: Engine | None = None,
    observer: RunObserver | None = None,
) -> RunResult:
    """Train with federated averaging over secure aggregation, as the module docstring says.

    Args:
        cfg: the settings, or a plan already made by :func:`plan_run`.
        engine: an engine object to use instead of the one named in the settings.
        observer: progress callbacks.

    Returns:
        A :class:`RunResult` with one :class:`RoundRecord` per round.

    Raises:
        ConfigError, BudgetExceededError: see :func:`plan_run`.
    """
    plan = cfg if isinstance(cfg, RunPlan) else plan_run(cfg, engine=engine)
    if getattr(plan.engine, "trains_on_nodes", False):  # --engine flower: a real deployment
        from fl.flower.training import run_deployed

        return run_deployed(plan.config, observer)
    try:
        return _train(plan, observer or SilentObserver())
    finally:
        close = getattr(plan.engine, "close", None)
        if callable(close):
            close()


def _train(plan: RunPlan, obs: RunObserver) -> RunResult:
    from fl.training.fedavg import evaluate

    cfg, spec, mv = plan.config, plan.spec, plan.model
    d = len(mv)
    rng = Csprng.from_seed(plan.base_seed) if cfg.seed is not None else Csprng()
    sampler = np.random.default_rng([plan.base_seed, 1] if cfg.seed is not None else None)
    global_vec = mv.to_vector().copy()
    initial = evaluate(mv, plan.dataset.test)
    result = RunResult(
        config=cfg, engine=getattr(plan.engine, "name", type(plan.engine).__name__),
        model_params=d, noise_multiplier=plan.noise_multiplier, max_weight=plan.max_weight,
        protocol_params=plan.protocol_params, initial_accuracy=initial["accuracy"], lr=plan.lr,
        anonymity=plan.anonymity,
        bolt_on=None if plan.bolt_on is None else plan.bolt_on.summary(
            _expected_cohort(cfg) * plan.max_weight, cfg.server_lr),
    )
    last_loss = initial["loss"]
    q = cfg.sampling_rate
    t_run = time.perf_counter()
    try:
        for r in range(1, cfg.rounds + 1):
            t0 = time.perf_counter()
            ids = _cohort(plan, sampler)
            k = len(ids)
            obs.round_started(r, k)
            record = RoundRecord(r, k, 0, 0, result.final_accuracy, last_loss,
                                 None, None, None, 0.0, 0.0, 0.0, 0, 0)
            if k < spec.min_cohort:
                record.error = f"cohort of {k} is too small for {spec.name}; round skipped"
                if plan.ledger is not None and plan.noise_multiplier is not None:
                    # Nothing is released, but whether a round is skipped depends on who was
                    # sampled; counting it as a full round keeps the accounting an upper bound.
                    RoundPrivacy.skipped(plan.ledger, plan.noise_multiplier, q,
                                         plan.encoding).settle(spec.name, None)
            else:
                _one_round(plan, r, ids, global_vec, rng, obs, record)
            if plan.ledger is not None:
                record.epsilon = plan.ledger.epsilon()
                if cfg.ledger_path is not None:  # at once: a killed run has still spent it
                    save_ledger(cfg.ledger_path, plan.ledger)
            record.seconds = time.perf_counter() - t0
            last_loss = record.test_loss
            result.history.append(record)
            obs.round_finished(record)
    finally:  # also after an error: whatever was charged stays spent
        if plan.ledger is not None and cfg.ledger_path is not None:
            save_ledger(cfg.ledger_path, plan.ledger)
    result.seconds = time.perf_counter() - t_run
    return result


def _one_round(plan: RunPlan, r: int, ids: list[int], global_vec: np.ndarray, rng: Csprng,
               obs: RunObserver, record: RoundRecord) -> None:
    from fl.training.fedavg import cap_weights, evaluate, fedavg_step, local_train

    cfg, mv = plan.config, plan.model
    d = len(mv)
    inputs: list[np.ndarray] = []
    counts: list[int] = []
    for i in ids:
        seed = int(np.random.SeedSequence([plan.base_seed, r, i]).generate_state(1)[0])
        if plan.bolt_on is not None:  # exact permutation SGD; metrics are not covered
            b = plan.bolt_on
            delta, n_i, metrics = psgd_train(
                global_vec, plan.shards[i].x, plan.shards[i].y, plan.dataset.n_classes,
                epochs=cfg.epochs, batch_size=cfg.batch_size, constants=b.constants,
                feature_norm=b.feature_norm, step=b.step, seed=seed)
            inputs.append(payload.client_vector(delta, None, cfg.clip))
        else:
            delta, n_i, metrics = local_train(mv, plan.shards[i], cfg.epochs, plan.lr,
                                              cfg.batch_size, seed, weights=global_vec)
            inputs.append(payload.client_vector(delta, metrics, cfg.clip))
        counts.append(n_i)
        obs.client_trained()
    weights = [float(w) for w in cap_weights(counts, plan.max_weight)]
    privacy: RoundPrivacy | None = None
    encoding, kw = plan.encoding, {}
    if plan.ledger is not None and plan.noise_multiplier is not None:
        # Checks the round against the budget before anything is released; settled below.
        privacy = _privacy(cfg, payload.vector_dim(d), plan.max_weight, len(ids), plan.ledger,
                           plan.noise_multiplier, plan.bolt_on)
        encoding, kw = privacy.encoding, privacy.config_kw
    if cfg.enrolled:
        kw = {**kw, "enrolled": True}
    config = _round_config(plan.spec, len(ids), payload.vector_dim(d), encoding, cfg.dropout,
                           round_id=r, **kw)
    out = plan.engine.run_round(plan.spec, config, inputs, weights, rng.spawn(f"round/{r}"))
    del inputs  # the driver's copies of the clients' vectors end with the round
    record.dropped = out.dropped
    record.client_seconds = out.cost.client_seconds
    record.server_seconds = out.cost.server_seconds
    record.upload_bytes_per_client = out.cost.upload_bytes_per_client
    record.download_bytes_per_client = out.cost.download_bytes_per_client
    if privacy is not None:  # the one place a round's budget is spent (fl.privacy.rounds)
        privacy.settle(plan.spec.name, out.result)
    if out.result is None:
        record.error = out.error or "the round released nothing"
        return
    res = out.result
    record.contributors = len(res.contributors)
    total = res.total_weight
    if privacy is not None:
        # The noised total weight is as noisy as any coordinate, and it is small: dividing
        # by it can blow a step up. Under DP the step divides by a fixed denominator, the
        # expected cohort times max_weight (McMahan et al. 2018): it depends on the plan
        # only, so the released model does not carry how many clients contributed.
        total = _expected_cohort(cfg) * plan.max_weight
    released = payload.read_sum(res.sum, total, d)
    fedavg_step(global_vec, released.update, total,
                cfg.server_lr * payload.model_scale(cfg.clip), out=global_vec)
    record.train_loss, record.train_accuracy = released.train_loss, released.train_accuracy
    if privacy is not None:
        sigma = privacy.sigma / encoding.scale  # per coordinate of the sum
        record.train_noise_std = payload.metric_noise_std(sigma, total)
    if plan.bolt_on is not None:  # the clients sent no metrics
        record.train_loss = record.train_accuracy = record.train_noise_std = None
    mv.from_vector(global_vec)
    test = evaluate(mv, plan.dataset.test)
    record.test_accuracy, record.test_loss = test["accuracy"], test["loss"]
