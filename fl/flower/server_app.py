"""The ServerApp: drives the server core of any protocol over Flower's Message API.

``app`` is a Flower ``ServerApp`` with a ``main(grid, context)``. What it runs comes from the
run config (:mod:`fl.flower.settings`):

- **Deployment mode** (the default): ``rounds`` aggregation rounds of ``protocol`` over
  ``num-clients`` SuperNodes (all connected ones when 0), each client contributing what its
  ClientApp's train function returns (the bundled ClientApp: a synthetic vector derived from
  its node config). Each round gets a fresh configuration (``make_config(n, dim,
  round_id=r)``), a fresh server core and fresh helpers; the result is logged and, with
  ``result-dir``, written to ``result-dir/round-R/`` (``result.json``, ``sum.npy``,
  ``int-sum.npy``, and the configuration the clients received).
- **Engine mode** (run config ``job-dir``, set only by the loopback engine): it serves the
  rounds the engine writes into the job folder, one after another, until the engine writes
  ``stop`` (see :mod:`fl.flower.jobs`).

Either way each round is :func:`fl.flower.driver.drive_round`: the same routing, deadlines and
dropout rules. The HE protocols' decryptor runs here too, as a separate object
(``spec.helpers``); see the driver's docstring for what that means for its secret key.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

import protocols
from fl.flower import codec, jobs, settings
from fl.flower.driver import RoundOutcome, assign_clients, drive_round, wait_for_nodes
from protocols.base import ProtocolSpec
from protocols.parties import build_server_side
from secagg.errors import ConfigError, SecAggError
from secagg.rng import Csprng

__all__ = ["app", "client_view", "main", "outcome_doc", "run_rounds", "serve_jobs", "serve_round"]

app = ServerApp()


def _log(text: str) -> None:
    print(f"[secagg] {text}", flush=True)


def client_view(config: Any) -> Any:
    """``config`` as clients get it: without a central noise hook (only the decoding party
    draws the central noise; clients have no use for its mechanism or its generator)."""
    if getattr(config, "noise", None) is not None:
        return dataclasses.replace(config, noise=None)
    return config


def outcome_doc(outcome: RoundOutcome, nodes: dict[int, int]) -> tuple[dict[str, Any],
                                                                       dict[str, np.ndarray]]:
    """A round's outcome as JSON and arrays (the layout of ``result.json``)."""
    res = outcome.result
    arrays: dict[str, np.ndarray] = {}
    if res is not None:
        arrays["sum"] = np.asarray(res.sum, np.float64)
        if res.int_sum is not None:
            arrays["int-sum"] = np.asarray(res.int_sum, np.int64)
    doc = {
        "error": outcome.error,
        "contributors": list(res.contributors) if res else [],
        jobs.DP_EVENT: jobs.encode_event(res.dp_event) if res else None,
        "total_weight": float(res.total_weight) if res else None,
        "dropped": {str(u): why for u, why in sorted(outcome.dropped.items())},
        "up": outcome.up, "down": outcome.down, "client_seconds": outcome.client_seconds,
        "server_seconds": outcome.server_seconds, "helper_seconds": outcome.helper_seconds,
        "wall_seconds": outcome.wall_seconds, "messages": outcome.messages,
        "nodes": {str(u): nid for u, nid in nodes.items()},
        "arrays": sorted(arrays),
    }
    return doc, arrays


def _summary(r: int, outcome: RoundOutcome) -> str:
    if outcome.result is None:
        return f"round {r}: no aggregate ({outcome.error}); dropped {sorted(outcome.dropped)}"
    res = outcome.result
    head = ", ".join(f"{v:.4g}" for v in res.sum[:4])
    return (f"round {r}: {len(res.contributors)} contributors, dropped {sorted(outcome.dropped)}, "
            f"total weight {res.total_weight:g}, sum[:4] = [{head}], "
            f"{outcome.wall_seconds:.1f}s")


def _one_round(grid: Grid, spec: ProtocolSpec, config: Any, nodes: dict[int, int], r: int,
               server: Any, helpers: dict[int, Any], stage_timeout: float) -> RoundOutcome:
    return drive_round(grid, spec, config, server, helpers, nodes, round_index=r,
                       setup_config=codec.dumps(client_view(config)),
                       stage_timeout=stage_timeout, log=_log)


def run_rounds(grid: Grid, run_config: dict[str, Any]) -> list[RoundOutcome]:
    """Deployment mode (see the module docstring).

    Raises:
        ConfigError: an unknown protocol, bad numbers, too few SuperNodes.
    """
    spec = protocols.get(str(settings.get(run_config, "protocol")))
    seed = settings.parse_seed(settings.get(run_config, "seed"))
    dim, rounds = int(settings.get(run_config, "dim")), int(settings.get(run_config, "rounds"))
    timeout = float(settings.get(run_config, "stage-timeout"))
    node_wait = float(settings.get(run_config, "node-wait"))
    n = int(settings.get(run_config, "num-clients"))
    if n <= 0:
        n = len(wait_for_nodes(grid, 1, node_wait, log=_log))
    nodes = assign_clients(grid, n, node_wait=node_wait, hello_timeout=timeout, log=_log)
    _log(f"{spec.name}: {n} clients on nodes {nodes}, dim {dim}, {rounds} rounds"
         + ("" if seed is None else f", seed {seed} (reproducible: not for production)"))
    result_dir = str(settings.get(run_config, "result-dir"))
    outcomes = []
    for r in range(rounds):
        root = Csprng() if seed is None else settings.round_root(seed, r)
        kw: dict[str, Any] = {"round_id": r}
        if seed is not None:
            kw["session"] = root.spawn("session").bytes(16)
        config = spec.make_config(n, dim, **kw)
        config, server, helpers, credentials = build_server_side(spec, config, root)
        if credentials and seed is None:  # seeded loopback nodes re-derive theirs
            raise ConfigError(f"{spec.name} with this configuration needs clients enrolled out "
                              "of band; deployment mode does not hand out client keys")
        outcome = _one_round(grid, spec, config, nodes, r, server, helpers, timeout)
        _log(_summary(r, outcome))
        if result_dir:
            rdir = Path(result_dir) / f"round-{r}"
            rdir.mkdir(parents=True, exist_ok=True)
            doc, arrays = outcome_doc(outcome, nodes)
            doc["config"] = codec.to_jsonable(client_view(config))
            jobs.write_result(rdir, doc, arrays)
        outcomes.append(outcome)
    return outcomes


def serve_round(grid: Grid, rdir: Path, k: int, nodes: dict[int, int],
                node_wait: float = 120.0) -> dict[int, int]:
    """Engine mode: run the round in ``rdir`` and write its result; returns the client to
    node map (re-made when the cohort outgrows it).

    A round that cannot run (too few nodes, a bad job) gets a result with ``error`` set, so
    the engine never waits in vain.
    """
    try:
        job = jobs.read_server_job(rdir)
        spec = protocols.get(job.protocol)
        n = job.config.n_clients
        if job.nodes and set(job.nodes.values()) <= set(grid.get_node_ids()):
            nodes = {**nodes, **job.nodes}
        if any(u not in nodes for u in range(n)):
            nodes = assign_clients(grid, n, node_wait=node_wait,
                                   hello_timeout=job.stage_timeout, log=_log)
        cohort = {u: nodes[u] for u in range(n)}
        # the generators the engine derived for them (its party_rng tree)
        server = spec.server(job.config, Csprng(job.server_key))
        helpers = spec.helpers(job.config, Csprng(job.helpers_key))
        outcome = _one_round(grid, spec, job.config, cohort, k, server, helpers,
                             job.stage_timeout)
        _log(_summary(k, outcome))
        doc, arrays = outcome_doc(outcome, cohort)
    except (SecAggError, OSError) as exc:
        _log(f"round {k} failed: {type(exc).__name__}: {exc}")
        doc, arrays = {"error": f"{type(exc).__name__}: {exc}", "arrays": []}, {}
    jobs.write_result(rdir, doc, arrays)
    return nodes


def serve_jobs(grid: Grid, run_config: dict[str, Any]) -> int:
    """Engine mode: serve the rounds in ``job-dir`` in order until ``stop``, or until
    ``idle-timeout`` seconds pass without a new one; returns how many it served."""
    job_dir = Path(str(settings.get(run_config, "job-dir")))
    idle = float(settings.get(run_config, "idle-timeout"))
    node_wait = float(settings.get(run_config, "node-wait"))
    nodes: dict[int, int] = {}
    k = 0
    last = time.monotonic()
    while not (job_dir / jobs.STOP).exists():
        rdir = jobs.round_dir(job_dir, k)
        if not (rdir / jobs.READY).exists():
            if time.monotonic() - last > idle:
                _log(f"no job for {idle:g}s: stopping")
                break
            time.sleep(0.02)
            continue
        nodes = serve_round(grid, rdir, k, nodes, node_wait)
        k += 1
        last = time.monotonic()
    return k


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Flower's entry point: engine mode if the run config has a ``job-dir``, else
    deployment mode."""
    if str(settings.get(context.run_config, "job-dir")):
        serve_jobs(grid, dict(context.run_config))
    else:
        run_rounds(grid, dict(context.run_config))
