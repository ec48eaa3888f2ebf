"""``FlowerEngine``: the :mod:`fl.engines` engine that runs each round over a real Flower
deployment.

``secagg run --engine flower`` uses it. On the first round it starts a
:class:`~fl.flower.deploy.LocalDeployment` on 127.0.0.1 (one SuperLink, one SuperNode per
client of the largest cohort so far; node ``i`` has ``partition-id=i``) and one long-lived
``flwr run`` of the bundled ServerApp/ClientApp in engine mode. Each :meth:`run_round` then
writes the round into the run's job folder (:mod:`fl.flower.jobs`), waits for the ServerApp's
result and returns it; :meth:`close` ends the run and stops every process.

**Same numbers as the simulator.** Given the same arguments, ``run_round`` releases exactly
what :class:`fl.engines.SimulationEngine` releases (same contributors, same integer sum, also
with central or distributed DP noise in it, and the same DP event): it derives every party's
generator from ``rng`` the way the simulator does (``rng.spawn("round")``, then
:func:`protocols.parties.party_rng` for the server, the helpers, each client and the
enrolment; dropouts from ``rng.spawn("dropouts")``) and hands each ClientApp only its own generator key,
input, weight and credentials. A dropped client is real on the Flower side: from its drop
stage on, its ClientApp raises, Flower returns an error reply, and the ServerApp counts it as
dropped. Central DP travels as its mechanism (:mod:`fl.flower.jobs`): the decoding party in the
ServerApp draws the noise, and the event of what it released comes back with the result.

.. warning:: this engine is a single-machine tool: the training loop that calls it holds every
   client's input, so the clients' generator keys and inputs sit in a private (0700) temporary
   folder while a round runs, and are deleted after it. A multi-machine deployment does not use
   this engine; see :mod:`fl.flower`.
"""

from __future__ import annotations

import logging
import shutil
import statistics
import subprocess
import time
from collections.abc import Mapping, Sequence
from typing import Any, Self

import numpy as np

from fl.engines import EngineRound, RoundCost
from fl.engines.simulation import plan_dropouts
from fl.flower import jobs
from fl.flower.deploy import DeploymentError, LocalDeployment
from protocols.base import AggregateResult, ProtocolSpec, RoundConfig, stages_of
from protocols.parties import party_rng
from secagg.errors import ConfigError
from secagg.rng import Csprng

__all__ = ["FlowerEngine", "LoopbackSession"]

_LOG = logging.getLogger("fl.flower")


def _key_of(rng: Csprng) -> bytes:
    # The engine gives each Flower process the very generator the simulator would use (see
    # the module docstring); the key goes only to that party's own 0600 job file here.
    return rng.export_key()


class LoopbackSession:
    """A :class:`LocalDeployment` plus the long-lived engine-mode ``flwr run`` on it."""

    def __init__(self, num_nodes: int, stage_timeout: float, startup_timeout: float,
                 keep_logs: bool) -> None:
        self.deployment = LocalDeployment(num_nodes, startup_timeout=startup_timeout,
                                          keep=keep_logs, log=_LOG.info)
        self.deployment.start()
        try:
            self.job_dir = self.deployment.workdir / "jobs"
            self.job_dir.mkdir(mode=0o700)
            self.run = self.deployment.start_run({
                "job-dir": str(self.job_dir), "stage-timeout": stage_timeout,
                "node-wait": startup_timeout, "idle-timeout": 3600.0})
        except BaseException:
            self.deployment.stop()
            raise

    @property
    def node_ids(self) -> dict[int, int]:
        """Partition id -> node id of every SuperNode."""
        return self.deployment.node_ids

    def ensure_nodes(self, n: int) -> None:
        """At least ``n`` SuperNodes."""
        if n > self.deployment.num_nodes:
            self.deployment.add_nodes(n - self.deployment.num_nodes)

    def alive(self) -> bool:
        """Whether the run is still going."""
        return self.run.poll() is None

    def diagnostics(self) -> str:
        """The tail of the run's log."""
        return self.deployment.run_log_tail(40)

    def close(self) -> None:
        """Ask the ServerApp to return, wait for the run (bounded), stop every process."""
        try:
            if self.run.poll() is None:
                jobs.write_atomic(self.job_dir / jobs.STOP, b"")
                try:
                    self.run.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    self.deployment.stop_run(self.run)
        finally:
            self.deployment.stop()


class FlowerEngine:
    """Runs each secure-aggregation round over a real Flower deployment on 127.0.0.1.

    Args:
        dropout: fraction of each cohort that drops, at stages planned as the simulator
            plans them, in ``[0, 1)``.
        stage_timeout: seconds each client has to answer each message.
        min_nodes: SuperNodes to start with (more are added when a cohort needs them).
        startup_timeout: seconds for the SuperLink and SuperNodes to come up.
        keep_logs: keep the deployment's folder (logs) after :meth:`close`.
        session_factory: ``(num_nodes, stage_timeout, startup_timeout, keep_logs) ->``
            session; the default, :class:`LoopbackSession`, is the real deployment (tests
            substitute an in-process one).
        trains_on_nodes: tell :func:`fl.training.loop.run_training` to run the whole training on a
            deployment instead (:mod:`fl.flower.training`; what ``secagg run --engine
            flower`` gets). ``run_round`` is unchanged either way.

    Raises:
        ConfigError: bad arguments.
    """

    name = "flower"

    def __init__(self, *, dropout: float = 0.0, stage_timeout: float = 60.0,
                 min_nodes: int = 1, startup_timeout: float = 120.0,
                 keep_logs: bool = False, session_factory: Any = LoopbackSession,
                 trains_on_nodes: bool = False) -> None:
        if not (isinstance(dropout, (int, float)) and 0.0 <= float(dropout) < 1.0):
            raise ConfigError(f"dropout must be a fraction in [0, 1), got {dropout!r}")
        if stage_timeout <= 0:
            raise ConfigError(f"stage_timeout must be > 0 seconds, got {stage_timeout}")
        self.dropout = float(dropout)
        self.stage_timeout = float(stage_timeout)
        self.min_nodes = int(min_nodes)
        self.startup_timeout = float(startup_timeout)
        self.keep_logs = keep_logs
        self._factory = session_factory
        self.trains_on_nodes = bool(trains_on_nodes)
        self.session: Any = None
        self._k = 0

    def _ensure(self, n: int) -> Any:
        if self.session is None:
            self.session = self._factory(max(n, self.min_nodes), self.stage_timeout,
                                         self.startup_timeout, self.keep_logs)
            self._k = 0
        else:
            self.session.ensure_nodes(n)
        return self.session

    def close(self) -> None:
        """End the run and stop every Flower process (bounded waits). Safe to call twice."""
        session, self.session = self.session, None
        if session is not None:
            session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- one round ---------------------------------------------------------------------
    def run_round(self, spec: ProtocolSpec, config: RoundConfig, inputs: Sequence[np.ndarray],
                  weights: Sequence[float], rng: Csprng,
                  drop_at: Mapping[int, int] | None = None) -> EngineRound:
        """See :meth:`fl.engines.Engine.run_round`.

        Args:
            drop_at: client -> stage index from which it drops (instead of the planned
                ``dropout``), as in :func:`fl.engines.simulation.run_round`.

        Raises:
            ConfigError: inputs or weights that do not match the cohort; a central noise hook
                that cannot travel to the ServerApp (:func:`fl.flower.jobs.shippable_noise`).
            DeploymentError: Flower failed (a process died, a run did not answer in time).
        """
        n = config.n_clients
        if len(inputs) != n or len(weights) != n:
            raise ConfigError(f"got {len(inputs)} inputs and {len(weights)} weights for "
                              f"{n} clients")
        if drop_at is None:
            drop_at = plan_dropouts(n, self.dropout, stages_of(spec, config),
                                    rng.spawn("dropouts"))
        noise = jobs.shippable_noise(config.noise)  # refused before anything starts
        root = rng.spawn("round")
        config, credentials = spec.provision(config, party_rng(root, "enrolment"))
        session = self._ensure(n)
        rdir = jobs.round_dir(session.job_dir, self._k)
        rdir.mkdir(mode=0o700)
        try:
            nodes = {u: session.node_ids[u] for u in range(n) if u in session.node_ids}
            jobs.write_server_job(rdir, jobs.ServerJob(
                spec.name, config, _key_of(party_rng(root, "server")), _key_of(party_rng(root, "helpers")),
                self.stage_timeout, noise, nodes))
            for u in range(n):
                jobs.write_client_job(rdir, u, jobs.ClientJob(
                    inputs[u], float(weights[u]), _key_of(party_rng(root, u)),
                    credentials.get(u, {}), drop_at.get(u)))
            jobs.write_atomic(rdir / jobs.READY, b"")
            doc, arrays = self._wait(session, rdir, len(stages_of(spec, config)))
        finally:
            shutil.rmtree(rdir, ignore_errors=True)
            self._k += 1
        return _engine_round(doc, arrays)

    def _wait(self, session: Any, rdir: Any,
              stages: int) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        limit = self.startup_timeout + self.stage_timeout * (stages + 3) + 60.0
        deadline = time.monotonic() + limit
        while True:
            got = jobs.read_result(rdir)
            if got is not None:
                return got
            if not session.alive():
                raise DeploymentError("the Flower run ended unexpectedly; its log ends with:\n"
                                      + session.diagnostics())
            if time.monotonic() > deadline:
                raise DeploymentError(f"no result from the ServerApp within {limit:g}s; the "
                                      "run's log ends with:\n" + session.diagnostics())
            time.sleep(0.02)


def _engine_round(doc: dict[str, Any], arrays: dict[str, np.ndarray]) -> EngineRound:
    error = doc.get("error")
    contributors = tuple(int(u) for u in doc.get("contributors", []))
    result = None
    if "sum" in arrays:
        # the event of the noise the decoding party released (central or distributed DP)
        event = jobs.decode_event(doc.get(jobs.DP_EVENT))
        result = AggregateResult(arrays["sum"], float(doc["total_weight"]), contributors,
                                 arrays.get("int-sum"), event)
        error = None
    ids = list(contributors) or list(range(len(doc.get("up", []))))

    def median(key: str) -> float:
        values = doc.get(key) or []
        picked = [values[u] for u in ids if u < len(values)]
        return float(statistics.median(picked)) if picked else 0.0

    cost = RoundCost(
        upload_bytes_per_client=int(median("up")),
        download_bytes_per_client=int(median("down")),
        client_seconds=median("client_seconds"),
        server_seconds=(float(doc.get("server_seconds", 0.0))
                        + float(doc.get("helper_seconds", 0.0))),
        server_peak_bytes=0,
    )
    return EngineRound(result, error, len(doc.get("dropped", {})), cost)
