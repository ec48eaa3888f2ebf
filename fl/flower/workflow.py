"""``SecAggWorkflow``: federated training over any secagg protocol, in a Flower ServerApp.

The counterpart of Flower's ``SecAggPlusWorkflow``: a ServerApp keeps its strategy, its
initial model and its evaluation, and hands them to the workflow::

    from flwr.serverapp import Grid, ServerApp
    from flwr.serverapp.strategy import FedAvg
    from fl.flower.workflow import DPOptions, SecAggWorkflow

    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        strategy = FedAvg(fraction_train=1.0, fraction_evaluate=0.0)
        workflow = SecAggWorkflow("secagg+", clip=1.0, max_weight=200,
                                  dp=DPOptions(epsilon=3.0, delta=1e-5),
                                  result_dir="report")
        workflow(grid, strategy, ArrayRecord(net.state_dict()), num_rounds=5,
                 evaluate_fn=central_evaluate)

and the ClientApp adds ``mods=[secagg_mod]`` (:mod:`fl.flower.client_app`) around its
unchanged train function. Each round:

1. ``strategy.configure_train`` picks the nodes and builds the train message (the global
   model as ``"arrays"``, the strategy's config); with ``DPOptions(sampling_rate=q)`` each
   of those nodes is then kept with probability ``q`` (Poisson sampling, what the
   accountant assumes; use ``fraction_train=1.0`` with it);
2. one secure round of the protocol runs on them (:func:`fl.flower.driver.drive_round`):
   the global model travels with each node's first protocol message, the node trains, and
   its mod turns the trained model into the clipped, weighted update and masks or encrypts
   it. The round is the protocol's stages and nothing more; the server learns
   ``sum(w_i * clip(trained_i - global))`` and ``sum(w_i)``, noised when DP is on;
3. the weighted FedAvg step: ``global += server_lr * sum / total`` (under DP ``total`` is
   the fixed expected cohort x ``max_weight``, as in :mod:`fl.training.loop`: the noised total is too
   noisy to divide by);
4. evaluation: ``evaluate_fn(round, arrays)`` (centralised, like ``strategy.start``'s) and,
   if the strategy's ``fraction_evaluate`` > 0, its federated evaluation
   (``configure_evaluate`` / ``aggregate_evaluate``, plain messages to the nodes'
   ``@app.evaluate()``);
5. DP: the round is charged to the privacy ledger (:class:`secagg.dp.PrivacyLedger`, kept
   in ``ledger_path`` across runs if given) and epsilon logged; a round that would exceed
   the budget is refused before anything is released, and the run stops there.

With ``result_dir`` it writes the same report folder as ``secagg run --report``
(:func:`fl.training.report.write_report`: metrics.json/csv, PNG plots).

The workflow runs the server core (and the HE decryptor) in the ServerApp's process; the
round loop is :func:`fl.flower.driver.drive_round`, the one place to swap in another round
harness.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, MetricRecord
from flwr.serverapp import Grid

from fl.flower import codec
from fl.flower.client_app import flatten
from fl.flower.driver import RoundOutcome, drive_round, enrolled_nodes
from fl.flower.enrolment import needs_enrolment
from protocols.parties import build_server_side
from secagg.errors import BudgetExceededError, ConfigError, SecAggError
from secagg.rng import Csprng

__all__ = ["DPOptions", "SecAggWorkflow", "WorkflowResult", "parse_protocol", "unflatten"]

Log = Callable[[str], None]


def _print(text: str) -> None:
    print(f"[secagg] {text}", flush=True)


@dataclass(frozen=True)
class DPOptions:
    """Differential privacy of every released aggregate.

    Attributes:
        mode: ``"central"`` (the decoding party adds discrete Gaussian noise to the exact
            sum) or ``"distributed"`` (each client adds its share before masking; secagg
            and secagg+ only).
        epsilon: the budget at ``delta``; with ``noise_multiplier=None`` the noise is
            calibrated so that every round fits it (None: 3.0).
        delta: the delta at which epsilon is reported.
        noise_multiplier: noise std / one client's L2 sensitivity (None: calibrate).
        sampling_rate: Poisson rate at which the strategy's nodes are kept each round.
        accountant: ``"rdp"`` or ``"pld"``.
        ledger_path: a JSON file that carries the ledger across runs.
    """

    mode: str = "central"
    epsilon: float | None = None
    delta: float = 1e-5
    noise_multiplier: float | None = None
    sampling_rate: float = 1.0
    accountant: str = "rdp"
    ledger_path: str | None = None


@dataclass
class WorkflowResult:
    """What a run gave: the final model, the per-round history, the report folder."""

    arrays: ArrayRecord
    run: Any  # fl.training.config.RunResult
    outcomes: list[RoundOutcome] = field(default_factory=list)
    report_dir: str | None = None


def unflatten(vector: np.ndarray, like: ArrayRecord) -> ArrayRecord:
    """``vector`` cut into arrays of ``like``'s keys, shapes and dtypes (inverse of
    :func:`fl.flower.client_app.flatten`)."""
    out: dict[str, Array] = {}
    i = 0
    for key, arr in like.items():
        a = arr.numpy()
        out[key] = Array(np.asarray(vector[i:i + a.size]).reshape(a.shape).astype(a.dtype))
        i += a.size
    if i != len(vector):
        raise ConfigError(f"a vector of {len(vector)} values does not fit a model of {i}")
    return ArrayRecord(out)


def parse_protocol(name: str) -> tuple[Any, bool, bool]:
    """(spec, active, enrolled) of ``secagg+``, ``secagg+-active``, ``secagg+:enrolled``,
    ``secagg+:enrolled-active``, ... (``-`` and ``:`` both separate a variant)."""
    import protocols

    flags = {"active": False, "enrolled": False}
    stripped = True
    while stripped:
        stripped = False
        for flag in flags:
            for sep in ("-", ":", " --"):
                if name.endswith(sep + flag):
                    name, flags[flag], stripped = name[: -len(sep + flag)], True, True
    return protocols.get(name), flags["active"], flags["enrolled"]


class SecAggWorkflow:
    """Secure-aggregation FedAvg rounds for a Flower ServerApp (see the module docstring).

    Args:
        protocol: a name from ``protocols.names()``; ``NAME-active`` asks for the active
            variant and ``NAME:enrolled`` for the two-exchange enrolled mode (secagg,
            secagg+; both need ``registry``).
        clip: L2 clip of each client's update (the mod clips; the encoding is sized to it).
        max_weight: cap on a client's weight (its ``num-examples``).
        dp: :class:`DPOptions`, or None for no DP.
        server_lr: FedAvg server learning rate.
        frac_bits: fixed-point fraction bits of the encoding.
        stage_timeout: seconds a node has to answer each protocol message (the first one
            includes its local training); a node that does not has dropped (the round
            completes without it while enough survive).
        result_dir: where to write the report folder at the end (None: none).
        label: the dataset / task name the report shows.
        log: where round summaries go (default: printed, so ``flwr run --stream`` shows them).
        registry: the path of the ``registry.json`` that ``secagg enroll`` wrote, for the
            protocols that authenticate clients (the active variants, the enrolled mode,
            ckks, paillier). Each node then needs its own key file and the same registry in
            its node config (:mod:`fl.flower.enrolment`); client ``u`` of every round is the
            node holding ``client-u.key``, and the round's config lists every enrolled
            client (those without a node that round are absent: dropped before the first
            stage).
        enrolled: the enrolled mode (same as the ``:enrolled`` suffix): two client messages
            per round instead of four, no per-round key setup.
        planned_dropout: the fraction of a round's nodes it may lose. For the protocols
            whose decoding party releases any set of clients it is handed (ckks, paillier:
            :attr:`~protocols.base.ProtocolSpec.releases_any_survivors`) the round's
            ``min_clients`` is the planned survivors, never below 2, so an aggregator cannot
            pass off a sum over fewer clients as the round's; the masking protocols' own
            threshold bounds their release.

    Raises:
        ConfigError: an unknown protocol or DP mode, bad numbers; a protocol (or variant)
            that authenticates clients but no ``registry``; an unreadable registry.
    """

    def __init__(self, protocol: str = "secagg+", *, clip: float = 1.0,
                 max_weight: float = 1000.0, dp: DPOptions | None = None,
                 server_lr: float = 1.0, frac_bits: int = 16, stage_timeout: float = 60.0,
                 result_dir: str | None = None, label: str = "flower",
                 log: Log | None = None, registry: str | None = None,
                 enrolled: bool = False, planned_dropout: float = 0.0) -> None:
        self.spec, self.active, named_enrolled = parse_protocol(protocol)
        self.enrolled = bool(enrolled) or named_enrolled
        for name, v in (("clip", clip), ("max_weight", max_weight), ("server_lr", server_lr),
                        ("stage_timeout", stage_timeout)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (
                    math.isfinite(v) and v > 0):
                raise ConfigError(f"{name} must be a positive number, got {v!r}")
        if dp is not None:
            from fl.privacy.rounds import DP_MODES

            if dp.mode not in DP_MODES:
                raise ConfigError(f"unknown DP mode {dp.mode!r}; choose one of: "
                                  f"{', '.join(DP_MODES)}")
            if not 0.0 < dp.sampling_rate <= 1.0:
                raise ConfigError(f"sampling_rate must be in (0, 1], got {dp.sampling_rate}")
            if not 0.0 < dp.delta < 1.0:
                raise ConfigError(f"delta must be in (0, 1), got {dp.delta}")
        self.clip, self.max_weight, self.dp = float(clip), float(max_weight), dp
        self.server_lr, self.frac_bits = float(server_lr), int(frac_bits)
        self.stage_timeout = float(stage_timeout)
        if isinstance(planned_dropout, bool) or not isinstance(planned_dropout, (int, float)) \
                or not 0.0 <= planned_dropout < 1.0:
            raise ConfigError(f"planned_dropout must be in [0, 1), got {planned_dropout!r}")
        self.planned_dropout = float(planned_dropout)
        self.result_dir, self.label = result_dir, label
        self.log = log or _print
        self.registry = self._load_registry(registry)
        self._clients: dict[int, int] = {}  # node id -> enrolled client id

    def _variant_kw(self) -> dict[str, Any]:
        kw: dict[str, Any] = {}
        if self.active:
            kw["active"] = True
        if self.enrolled:
            kw["enrolled"] = True
        return kw

    def _load_registry(self, path: str | None) -> Any:
        """The registry (None without one), refusing up front a protocol that needs one
        without it: the protocol's own provisioning says whether a config needs enrolled
        clients."""
        if path is None:
            if needs_enrolment(self.spec, **self._variant_kw()):
                raise ConfigError(
                    f"{self.spec.name}{' active' if self.active else ''}"
                    f"{' enrolled' if self.enrolled else ''} authenticates clients enrolled "
                    "out of band: run 'secagg enroll --clients N --out DIR', pass "
                    "registry='DIR/registry.json' and give each node its key file "
                    "(node config secagg-key-file, secagg-registry)")
            return None
        from protocols.secagg.enrolled_keys import EnrolledRegistry

        if "registry" not in self.spec.keywords:
            raise ConfigError(f"{self.spec.name} takes no client registry; drop registry=")
        return EnrolledRegistry.load(path)

    # -- pieces ----------------------------------------------------------------------------
    def _encoding(self, max_clients: int, noise_bound: int = 0) -> Any:
        from secagg.encoding import EncodingConfig

        kw: dict[str, Any] = {"clip": self.clip, "frac_bits": self.frac_bits, "max_clients": max_clients,
              "max_weight": self.max_weight, "noise_bound": noise_bound}
        try:
            return EncodingConfig(bits=32, **kw)
        except ConfigError:
            return EncodingConfig(bits=64, **kw)

    def _ledger(self, num_rounds: int) -> tuple[Any, float | None]:
        if self.dp is None:
            return None, None
        from fl.privacy.rounds import load_ledger, round_event
        from fl.training.config import DEFAULT_EPSILON

        dp, q = self.dp, self.dp.sampling_rate
        if dp.noise_multiplier is None:
            budget = dp.epsilon if dp.epsilon is not None else DEFAULT_EPSILON
            ledger = load_ledger(dp.ledger_path, budget, dp.delta, dp.accountant)
            return ledger, ledger.noise_multiplier_for(num_rounds, q)
        ledger = load_ledger(dp.ledger_path, dp.epsilon, dp.delta, dp.accountant)
        z = float(dp.noise_multiplier)
        if ledger.epsilon_budget is not None:
            reached = ledger.epsilon_after(round_event(z, q), num_rounds)
            if reached > ledger.epsilon_budget:
                raise BudgetExceededError(
                    f"{num_rounds} round(s) at noise multiplier {z:g} reach epsilon="
                    f"{reached:.4g} > budget {ledger.epsilon_budget:g}; "
                    f"{ledger.rounds_left(round_event(z, q), num_rounds)} fit")
        return ledger, z

    def _sample(self, node_ids: list[int], rng: Csprng) -> list[int]:
        q = self.dp.sampling_rate if self.dp is not None else 1.0
        if q >= 1.0:
            return sorted(node_ids)
        return sorted(n for n in node_ids if float(rng.random(1)[0]) < q)

    # -- the run ---------------------------------------------------------------------------
    def __call__(self, grid: Grid, strategy: Any, initial_arrays: ArrayRecord,
                 num_rounds: int = 3, *, train_config: ConfigRecord | None = None,
                 evaluate_config: ConfigRecord | None = None,
                 evaluate_fn: Callable[[int, ArrayRecord], MetricRecord | None] | None = None,
                 ) -> WorkflowResult:
        """Run ``num_rounds`` rounds (see the module docstring); returns the final model,
        the history (a :class:`fl.training.config.RunResult`) and the report folder.

        Raises:
            ConfigError, BudgetExceededError: settings that cannot work, checked before the
                first round (a budget that runs out mid-run stops the run instead).
        """
        from fl.privacy.rounds import round_event, round_privacy, save_ledger
        from fl.training.config import RoundRecord, RunConfig, RunResult
        from fl.training.report import write_report

        if isinstance(num_rounds, bool) or not isinstance(num_rounds, int) or num_rounds < 1:
            raise ConfigError(f"num_rounds must be an integer >= 1, got {num_rounds!r}")
        spec = self.spec
        ledger, z = self._ledger(num_rounds)
        q = self.dp.sampling_rate if self.dp is not None else 1.0
        arrays = initial_arrays
        global_vec = flatten(initial_arrays)
        dim = global_vec.size
        arrays_key = getattr(strategy, "arrayrecord_key", "arrays")
        weight_key = getattr(strategy, "weighted_by_key", "num-examples")
        sampler = Csprng()
        if self.registry is not None:  # who is who: once, before the first round
            self._clients = enrolled_nodes(grid, list(grid.get_node_ids()),
                                           self.registry.keys, timeout=self.stage_timeout,
                                           log=self.log)
        metrics0 = evaluate_fn(0, arrays) if evaluate_fn else None
        initial_acc = float(cast(float, metrics0.get("accuracy", 0.0))) if metrics0 else 0.0
        last_loss = float(cast(float, metrics0.get("loss", 0.0))) if metrics0 else 0.0
        history: list[RoundRecord] = []
        outcomes: list[RoundOutcome] = []
        n_nodes = 0
        t_run = time.perf_counter()
        for r in range(1, num_rounds + 1):
            t0 = time.perf_counter()
            msgs = list(strategy.configure_train(r, arrays, ConfigRecord(
                dict(train_config or {})), grid))
            all_ids = list(grid.get_node_ids())
            n_nodes = max(n_nodes, len(all_ids))
            ids = self._sample([m.metadata.dst_node_id for m in msgs], sampler)
            k = len(ids)
            prev_acc = history[-1].test_accuracy if history else initial_acc
            rec = RoundRecord(r, k, 0, 0, prev_acc, last_loss, None, None, None, 0.0, 0.0,
                              0.0, 0, 0)
            need = 1 if spec.name == "plaintext" else 2
            if k < need or not msgs:
                rec.error = f"cohort of {k} is too small for {spec.name}; round skipped"
                if ledger is not None and z is not None:  # as fl.training.loop: an upper bound
                    ledger.charge(round_event(z, q))
            else:
                try:
                    arrays, global_vec = self._round(grid, r, msgs[0].content, ids, max(
                        n_nodes, k), global_vec, arrays, ledger, z, q, arrays_key, weight_key,
                        rec, outcomes, round_privacy)
                except BudgetExceededError as exc:
                    self.log(f"round {r}: privacy budget spent, stopping: {exc}")
                    rec.error = f"BudgetExceededError: {exc}"
                    history.append(rec)
                    break
            if rec.error is None:
                self._evaluate(grid, strategy, r, arrays, evaluate_config, evaluate_fn, rec)
            if ledger is not None:
                rec.epsilon = ledger.epsilon()
                if self.dp is not None and self.dp.ledger_path:
                    save_ledger(self.dp.ledger_path, ledger)
            rec.seconds = time.perf_counter() - t0
            last_loss = rec.test_loss
            history.append(rec)
            eps = "" if rec.epsilon is None else f", epsilon {rec.epsilon:.4g}"
            self.log(f"round {r}: {rec.contributors}/{k} contributed, dropped {rec.dropped}, "
                     f"test accuracy {rec.test_accuracy:.4f}{eps}, {rec.seconds:.2f}s"
                     + ("" if rec.error is None else f" ({rec.error})"))
        dp = self.dp
        run_cfg = RunConfig(
            protocol=spec.name, clients=max(n_nodes, 1), rounds=num_rounds, dataset=self.label,
            engine="flower", dp=dp is not None, dp_mode=dp.mode if dp else "central",
            epsilon=dp.epsilon if dp else None, delta=dp.delta if dp else 1e-5,
            noise_multiplier=dp.noise_multiplier if dp else None,
            accountant=dp.accountant if dp else "rdp", sampling_rate=q, clip=self.clip,
            max_weight=self.max_weight, server_lr=self.server_lr, frac_bits=self.frac_bits,
            ledger_path=dp.ledger_path if dp else None)
        run = RunResult(config=run_cfg, engine="flower", model_params=dim, noise_multiplier=z,
                        max_weight=self.max_weight, protocol_params={},
                        initial_accuracy=initial_acc, lr=0.0, history=history,
                        seconds=time.perf_counter() - t_run)
        report = None
        if self.result_dir:
            report = str(write_report(run, self.result_dir))
            self.log(f"report written to {report}")
        return WorkflowResult(arrays, run, outcomes, report)

    def _round(self, grid: Grid, r: int, content: Any, ids: list[int], max_clients: int,
               global_vec: np.ndarray, arrays: ArrayRecord, ledger: Any, z: float | None,
               q: float, arrays_key: str, weight_key: str, rec: Any,
               outcomes: list[RoundOutcome], round_privacy: Any) -> tuple[ArrayRecord,
                                                                         np.ndarray]:
        spec, dim = self.spec, global_vec.size
        nodes = self._nodes(grid, ids)
        k = len(nodes)
        n_config = k if self.registry is None else len(self.registry.keys)
        # the encoding must hold a sum over every client the config lists
        enc_clients = max(max_clients, n_config)
        encoding, kw, privacy = self._encoding(enc_clients), {}, None
        if ledger is not None and z is not None:
            mode = self.dp.mode if self.dp is not None else "central"
            privacy = round_privacy(mode, ledger, z, dim=dim, cohort=k, survivors=k,
                                    sampling_rate=q,
                                    encoding_for=lambda b: self._encoding(enc_clients, b))
            encoding, kw = privacy.encoding, privacy.config_kw
        kw.update(self._variant_kw())
        if self.registry is not None:
            kw["registry"] = self.registry
        planned = spec.planned_min_clients(k, self.planned_dropout)
        if planned is not None:
            kw["min_clients"] = max(planned, kw.get("min_clients") or 0)
        # make_config refuses, in one typed line, a keyword (DP mode) the protocol lacks.
        config = spec.make_config(n_config, dim, encoding=encoding, round_id=r, **kw)
        config, server, helpers, credentials = build_server_side(spec, config, Csprng())
        if credentials:  # _load_registry refused this up front; a config that changed since
            raise ConfigError(f"{spec.name} with this configuration needs clients enrolled out "
                              "of band; pass registry= (see secagg enroll)")
        from fl.flower.server_app import client_view

        setup = {"delta": True, "clip": self.clip, "max-weight": self.max_weight,
                 "arrays-key": arrays_key, "weight-key": weight_key}
        out = drive_round(grid, spec, config, server, helpers, nodes, round_index=r,
                          setup_config=codec.dumps(client_view(config)),
                          stage_timeout=self.stage_timeout, train_content=content,
                          setup_fields=setup, log=None)
        outcomes.append(out)
        rec.dropped = len(out.dropped)
        alive = [u for u in sorted(nodes) if u not in out.dropped]
        rec.upload_bytes_per_client = int(np.median([out.up[u] for u in alive])) if alive else 0
        rec.download_bytes_per_client = (int(np.median([out.down[u] for u in alive]))
                                         if alive else 0)
        rec.client_seconds = float(np.median([out.client_seconds[u] for u in alive])) \
            if alive else 0.0
        rec.server_seconds = out.server_seconds + out.helper_seconds
        if out.result is None:
            rec.error = out.error or "the round released nothing"
            if privacy is not None:  # charged if the central noise was drawn
                privacy.settle(spec.name, None)
            return arrays, global_vec
        res = out.result
        rec.contributors = len(res.contributors)
        total = res.total_weight
        if privacy is not None:
            privacy.settle(spec.name, res)
            total = q * max_clients * self.max_weight
        if total <= 0:
            rec.error = "the released total weight is not positive; model unchanged"
            return arrays, global_vec
        new = global_vec + self.server_lr * np.asarray(res.sum[:dim], np.float64) / total
        return unflatten(new, arrays), new

    def _nodes(self, grid: Grid, ids: list[int]) -> dict[int, int]:
        """Client id -> node id for this round's nodes: ``0..k-1`` in node order, or with a
        registry each node's enrolled id (nodes new since the last hello are asked now)."""
        if self.registry is None:
            return dict(enumerate(ids))
        new = [nid for nid in ids if nid not in self._clients]
        if new:
            self._clients.update(enrolled_nodes(grid, new, self.registry.keys,
                                                timeout=self.stage_timeout, log=self.log))
        return {self._clients[nid]: nid for nid in ids if nid in self._clients}

    def _evaluate(self, grid: Grid, strategy: Any, r: int, arrays: ArrayRecord,
                  evaluate_config: ConfigRecord | None,
                  evaluate_fn: Callable[[int, ArrayRecord], MetricRecord | None] | None,
                  rec: Any) -> None:
        metrics: Mapping[str, Any] | None = None
        if getattr(strategy, "fraction_evaluate", 0.0) > 0:
            try:
                replies = grid.send_and_receive(list(strategy.configure_evaluate(
                    r, arrays, ConfigRecord(dict(evaluate_config or {})), grid)),
                    timeout=self.stage_timeout * 2)
                metrics = strategy.aggregate_evaluate(r, replies)
            except (SecAggError, ValueError, KeyError) as exc:
                self.log(f"round {r}: federated evaluation failed: {exc}")
        if evaluate_fn is not None:
            metrics = evaluate_fn(r, arrays) or metrics
        if metrics:
            if "accuracy" in metrics:
                rec.test_accuracy = float(metrics["accuracy"])
            if "loss" in metrics:
                rec.test_loss = float(metrics["loss"])
