"""``secagg run --engine flower``: the whole training run on a loopback Flower deployment.

The clients train on their own SuperNodes, as in a real deployment: :func:`run_deployed`
starts a :class:`~fl.flower.deploy.LocalDeployment` on 127.0.0.1 with one SuperNode per
client (node ``i`` holds partition ``i`` of the dataset's IID split), runs the example app
(:mod:`fl.flower.example`: ``secagg_mod`` on the nodes, :class:`~fl.flower.workflow.
SecAggWorkflow` with a FedAvg strategy in the ServerApp) with the run's settings as its run
config, and reads back the report folder the ServerApp wrote. The driver process holds no
client's data, model or update: only the aggregates in the report.

What it does not take (a :class:`~secagg.errors.ConfigError` names it before anything
starts): simulated ``dropout`` (a deployment's dropouts are real ones), the ``dirichlet``
split, a fixed-size ``cohort``, and a ``seed`` (every party draws from OS entropy).

Protocols that authenticate clients (``--enrolled``, ckks, paillier) get their clients
enrolled first, as an operator would with ``secagg enroll``: a registry and one key file
per node, each node given only its own (:mod:`fl.flower.enrolment`).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from functools import partial
from pathlib import Path
from typing import Any

from fl.training.config import DEFAULT_LR, RoundRecord, RunConfig, RunObserver, RunResult
from secagg.errors import ConfigError

__all__ = ["run_config_of", "run_deployed"]


def protocol_name(cfg: RunConfig) -> str:
    """The workflow's protocol name for ``cfg`` (``secagg+:enrolled`` with ``--enrolled``)."""
    return cfg.protocol + (":enrolled" if cfg.enrolled else "")


def run_config_of(cfg: RunConfig, result_dir: str, registry: str = "") -> dict[str, Any]:
    """The example app's run config for ``cfg`` (see the module docstring).

    Raises:
        ConfigError: a setting a deployment cannot honour.
    """
    if cfg.dropout:
        raise ConfigError("--engine flower runs on real nodes: use --dropout 0 (a deployment's "
                          "dropouts are the nodes that fail)")
    if cfg.split != "iid":
        raise ConfigError("--engine flower partitions the data IID; use --split iid")
    if cfg.cohort is not None:
        raise ConfigError("--engine flower samples with --sampling-rate, not --cohort")
    if cfg.seed is not None:
        raise ConfigError("--engine flower draws every key from OS entropy; drop --seed")
    return {
        "protocol": protocol_name(cfg), "registry": registry, "num-server-rounds": cfg.rounds, "min-nodes": cfg.clients,
        "dataset": cfg.dataset, "local-epochs": cfg.epochs,
        "lr": cfg.lr if cfg.lr is not None else DEFAULT_LR.get(cfg.dataset, 0.5),
        "clip": cfg.clip, "max-weight": float(cfg.max_weight or 1000.0), "dp": cfg.dp,
        "dp-mode": cfg.dp_mode, "epsilon": float(cfg.epsilon if cfg.epsilon is not None
                                                 else 3.0),
        "delta": cfg.delta, "noise-multiplier": float(cfg.noise_multiplier or 0.0),
        "sampling-rate": cfg.sampling_rate, "result-dir": result_dir,
        "ledger-path": str(Path(cfg.ledger_path).resolve()) if cfg.ledger_path else "",
    }


def run_deployed(cfg: RunConfig, observer: RunObserver | None = None, *,
                 timeout: float = 3600.0) -> RunResult:
    """Run ``cfg`` on a loopback deployment (see the module docstring).

    Raises:
        ConfigError: settings a deployment cannot honour.
        DeploymentError: Flower failed or the run did not finish within ``timeout``.
    """
    import protocols
    from fl.flower import enrolment
    from fl.flower.deploy import LocalDeployment, example_app

    out = Path(tempfile.mkdtemp(prefix="secagg-run-"))
    try:
        run_config_of(cfg, str(out / "report"))  # refuses what a deployment cannot do
        spec = protocols.get(cfg.protocol)
        registry, node_config = "", None
        if enrolment.needs_enrolment(spec, **({"enrolled": True} if cfg.enrolled else {})):
            # Out of band, as an operator would with 'secagg enroll': each node gets only
            # its own key file (and the public registry).
            folder = out / "enrolment"
            registry = str(enrolment.enrol(folder, cfg.clients))
            node_config = partial(enrolment.node_config, folder)
        run_cfg = run_config_of(cfg, str(out / "report"), registry)
        with LocalDeployment(cfg.clients, app=example_app, node_config=node_config) as dep:
            dep.run(run_cfg, timeout=timeout)
        doc = json.loads((out / "report" / "metrics.json").read_text())
    finally:
        shutil.rmtree(out, ignore_errors=True)
    history = [RoundRecord.from_json(h) for h in doc.get("history", [])]
    result = RunResult(config=cfg, engine="flower", model_params=int(doc["model_params"]),
                       noise_multiplier=doc.get("noise_multiplier"),
                       max_weight=float(run_cfg["max-weight"]), protocol_params={},
                       initial_accuracy=float(doc["initial_accuracy"]),
                       lr=float(run_cfg["lr"]), history=history,
                       seconds=float(doc.get("seconds", 0.0)))
    if observer is not None:
        for rec in history:
            observer.round_started(rec.round, rec.cohort)
            observer.round_finished(rec)
    return result
