"""Flower's own SecAgg / SecAgg+, driven in process and timed, for side-by-side ratios.

This is a harness around Flower's public code; it copies none of it. It runs exactly what a
Flower ``ServerApp`` runs for secure aggregation::

    DefaultWorkflow(fit_workflow=SecAggPlusWorkflow(num_shares, reconstruction_threshold))
    ClientApp(client_fn, mods=[secaggplus_mod])
    # complete graph: SecAggWorkflow(reconstruction_threshold) and secagg_mod

with a loopback ``Grid`` (:func:`loopback_grid_class`) in place of the SuperLink. The grid
hands each instruction to the destination node's ``ClientApp`` in the same process (one
``Context`` per node, kept across stages, as a SuperNode keeps it), and every message crosses
the boundary as Flower's own protobuf (``flwr.common.serde``): each side gets its own copy
and the byte counts are real.
The process's ``TaskIdentity`` is set as Flower's own ``flwr.server.compat.app`` sets it for
a legacy ServerApp (and restored afterwards); Flower's log lines are captured, not printed.

Timing (same split as :func:`fl.engines.simulation.run_round`):

- **client**: per node, the time inside ``ClientApp.__call__`` minus the time inside the
  wrapped local "training" (a ``NumPyClient.fit`` that returns the prepared vector), summed
  over stages; the median over the nodes whose input is in the sum is reported.
- **server**: the time inside the fit workflow (``SecAggPlusWorkflow.__call__``, including
  its ``strategy.aggregate_fit``) minus the time inside ``grid.send_and_receive``.
  Flower's serialisation is not counted on either side (the grid does it, outside both
  timed regions), while our simulator charges each role its own encoding and decoding: the
  side-by-side ratios lean in Flower's favour by that much.
- **bytes**: the serialised size of every message a node receives / sends. Flower's download
  includes the global model that its fit instruction (``FitIns``) carries, as in any Flower
  round (d float32); its upload carries int64 masked values (8 bytes per parameter).

Configuration: Flower's defaults (``clipping_range=8``, ``quantization_range=2**22``,
``modulus_range=2**32``) except ``max_weight=1.0`` with ``num_examples=1`` per node, the
weight bound of our default encoding; the strategy is ``FedAvg`` sampling every node, with the
zero vector as initial parameters and no evaluation round.

Parameter mapping (read from flwr 1.41's ``secaggplus_workflow.py``): Flower's neighbourhood
of a node is the ``num_shares`` nodes at ring offsets ``-num_shares//2 .. num_shares//2``,
*including the node itself*, and a secret is rebuilt from ``reconstruction_threshold`` of
those shares. So ``num_shares = k + 1`` for our degree k, and the thresholds are the same
number t. Our complete graph (k = n - 1) maps to ``SecAggWorkflow`` (``num_shares = n``).

Dropouts: a node whose drop stage is i stays silent from its i-th secure-aggregation
instruction on (0 setup, 1 share keys, 2 collect masked vectors, 3 unmask), the same stage
numbering as ``protocols.get("secagg+").client_stages(config)``. Flower halts (returns without a
result) when a node drops before the masked-vector stage: nobody holds shares of its mask
seed, and the unmask stage finds too few shares. The harness reports that as an abort with
Flower's own log line as the error.
"""

from __future__ import annotations

import functools
import logging
import statistics
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["FlowerResult", "available", "flower_version", "loopback_grid_class", "run_flower"]

_BASE = 1000  # node ids: client u is node _BASE + u (Flower's SuperLink is node 1)
STAGES = ("setup", "share_keys", "collect_masked_vectors", "unmask")


def available() -> bool:
    """Whether flwr (with its SecAgg+ workflow and mod) can be imported."""
    try:
        import flwr.client.mod
        import flwr.server.workflow  # noqa: F401
    except Exception:  # noqa: BLE001 - any import failure means "not available"
        return False
    return True


def flower_version() -> str | None:
    try:
        import flwr

        return str(flwr.__version__)
    except Exception:  # noqa: BLE001
        return None


@dataclass
class FlowerResult:
    """One timed Flower round (or its abort)."""

    workflow: str
    num_shares: int
    threshold: int
    aborted: bool
    error: str | None
    client_seconds: float | None
    server_seconds: float
    server_strategy_seconds: float
    upload_bytes_per_client: int | None
    download_bytes_per_client: int | None
    max_abs_error: float | None
    survivors: int
    wall_seconds: float
    flwr_version: str | None = None
    client_seconds_all: list[float] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "workflow": self.workflow, "num_shares": self.num_shares,
            "threshold": self.threshold, "aborted": self.aborted, "error": self.error,
            "client_seconds": self.client_seconds, "server_seconds": self.server_seconds,
            "server_strategy_seconds": self.server_strategy_seconds,
            "upload_bytes_per_client": self.upload_bytes_per_client,
            "download_bytes_per_client": self.download_bytes_per_client,
            "max_abs_error": self.max_abs_error, "survivors": self.survivors,
            "wall_seconds": self.wall_seconds, "flwr_version": self.flwr_version,
        }


class _Capture(logging.Handler):
    """Keeps Flower's ERROR log lines: the workflow halts by logging, not by raising."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@functools.cache
def loopback_grid_class() -> type:
    """The ``flwr.serverapp.grid.Grid`` subclass that routes to in-process ClientApps.

    Built on first use, so importing this module does not import flwr.
    """
    from flwr.common import serde
    from flwr.proto.message_pb2 import Message as ProtoMessage
    from flwr.serverapp.grid import Grid
    from flwr.supercore.run import Run

    def _copy(msg: Any) -> tuple[Any, int]:
        blob = serde.message_to_proto(msg).SerializeToString()
        return serde.message_from_proto(ProtoMessage.FromString(blob)), len(blob)

    class LoopbackGridImpl(Grid):
        """A Grid whose nodes are ClientApps in this process (see module docstring)."""

        def __init__(self, apps: Mapping[int, Any], contexts: Mapping[int, Any],
                     drop_at: Mapping[int, int], inner: dict[int, float]) -> None:
            self._run = Run.create_empty(run_id=1)
            self.apps, self.contexts, self.drop_at, self.inner = apps, contexts, drop_at, inner
            self.delivered = {nid: 0 for nid in apps}
            self.client_time = {nid: 0.0 for nid in apps}
            self.up = {nid: 0 for nid in apps}
            self.down = {nid: 0 for nid in apps}
            self.answered = {nid: -1 for nid in apps}
            self.seconds = 0.0  # wall time spent inside send_and_receive

        def set_run(self, run: Any) -> None:
            self._run = run

        @property
        def run(self) -> Any:
            return self._run

        def create_message(self, content: Any, message_type: str, dst_node_id: int,
                           group_id: str, ttl: float | None = None) -> Any:
            from flwr.app import Message

            return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

        def get_node_ids(self) -> Iterable[int]:
            return list(self.apps)

        def push_messages(self, messages: Iterable[Any]) -> Iterable[str]:
            raise NotImplementedError("LoopbackGrid only supports send_and_receive")

        def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Any]:
            raise NotImplementedError("LoopbackGrid only supports send_and_receive")

        def send_and_receive(self, messages: Iterable[Any], *,
                             timeout: float | None = None) -> Iterable[Any]:
            from flwr.app import Error

            t_enter = time.perf_counter()
            replies = []
            for msg in messages:
                msg.metadata.__dict__["_message_id"] = uuid.uuid4().hex
                nid = msg.metadata.dst_node_id
                stage = self.delivered[nid]
                if self.drop_at.get(nid, len(STAGES) + 1) <= stage:
                    continue  # the node is gone: no reply ever comes
                self.delivered[nid] += 1
                local, size = _copy(msg)
                self.down[nid] += size
                before = self.inner.get(nid, 0.0)
                t0 = time.perf_counter()
                try:
                    reply = self.apps[nid](local, self.contexts[nid])
                except Exception as exc:  # noqa: BLE001 - a ClientApp error becomes an error reply
                    reply = local.create_error_reply(Error(code=0, reason=repr(exc)))
                self.client_time[nid] += (time.perf_counter() - t0
                                          - (self.inner.get(nid, 0.0) - before))
                if not reply.has_error():
                    self.answered[nid] = stage
                remote, size = _copy(reply)
                self.up[nid] += size
                replies.append(remote)
            self.seconds += time.perf_counter() - t_enter
            return replies

    return LoopbackGridImpl


def run_flower(inputs: Sequence[np.ndarray], *, num_shares: int, threshold: int,
               drop_at: Mapping[int, int] | None = None, complete: bool = False,
               max_weight: float = 1.0) -> FlowerResult:
    """Run one Flower SecAgg+ (or SecAgg) fit round over ``inputs`` (client u is node 1000+u).

    Args:
        num_shares: Flower's ``num_shares`` (our degree k + 1); ignored when ``complete``.
        threshold: Flower's ``reconstruction_threshold`` (our t).
        drop_at: client index -> stage index (see module docstring) from which it is silent.
        complete: use ``SecAggWorkflow`` + ``secagg_mod`` (every node shares with all).
        max_weight: Flower's ``max_weight``; each node reports ``num_examples=1``, so 1.0
            (our encoding's default) keeps Flower's weight quantisation lossless.

    Returns:
        A :class:`FlowerResult`; a halted or failed round has ``aborted=True`` and ``error``.
    """
    import flwr.common.logger  # noqa: F401 - creates the "flwr" logger
    from flwr.app import ArrayRecord, Context, RecordDict  # noqa: F401
    from flwr.client import ClientApp, NumPyClient
    from flwr.client.mod import secagg_mod, secaggplus_mod
    from flwr.common import ndarrays_to_parameters, parameters_to_ndarrays
    from flwr.common.constant import SUPERLINK_NODE_ID
    from flwr.server import LegacyContext, ServerConfig
    from flwr.server.strategy import FedAvg
    from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow, SecAggWorkflow
    from flwr.supercore.task_identity import TaskIdentity

    n, dim = len(inputs), int(inputs[0].shape[0])
    drops = {_BASE + u: s for u, s in (drop_at or {}).items()}
    inner: dict[int, float] = {}

    class _Client(NumPyClient):
        def __init__(self, vec: np.ndarray) -> None:
            self.vec = vec

        def fit(self, parameters: Any, config: Any) -> tuple[list[np.ndarray], int, dict[str, Any]]:
            return [self.vec], 1, {}

    def client_fn(context: Any) -> Any:
        return _Client(inputs[context.node_id - _BASE]).to_client()

    def timing_mod(msg: Any, ctxt: Any, call_next: Any) -> Any:
        # Innermost mod: measures the local "training" so it is not counted as SecAgg work.
        t0 = time.perf_counter()
        try:
            return call_next(msg, ctxt)
        finally:
            inner[ctxt.node_id] = inner.get(ctxt.node_id, 0.0) + time.perf_counter() - t0

    mod = secagg_mod if complete else secaggplus_mod
    app = ClientApp(client_fn=client_fn, mods=[mod, timing_mod])
    nids = list(range(_BASE, _BASE + n))
    contexts = {nid: Context(run_id=1, node_id=nid, node_config={}, state=RecordDict(),
                             run_config={}) for nid in nids}
    grid = loopback_grid_class()({nid: app for nid in nids}, contexts, drops, inner)

    strategy_time = [0.0]
    aggregated: list[Any] = []

    class _Strategy(FedAvg):
        def aggregate_fit(self, server_round: int, results: Any, failures: Any) -> Any:
            t0 = time.perf_counter()
            out = super().aggregate_fit(server_round, results, failures)
            strategy_time[0] += time.perf_counter() - t0
            aggregated.append(out[0])
            return out

    strategy = _Strategy(fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=n,
                         min_evaluate_clients=0, min_available_clients=n,
                         initial_parameters=ndarrays_to_parameters(
                             [np.zeros(dim, np.float32)]))
    sa: Any
    if complete:
        sa = SecAggWorkflow(reconstruction_threshold=threshold, max_weight=max_weight)
        shares = n
    else:
        sa = SecAggPlusWorkflow(num_shares=num_shares, reconstruction_threshold=threshold,
                                max_weight=max_weight)
        shares = num_shares
    fit_seconds = [0.0]
    grid_in_fit = [0.0]

    def fit_workflow(g: Any, ctx: Any) -> None:
        g0 = grid.seconds
        t0 = time.perf_counter()
        try:
            sa(g, ctx)
        finally:
            fit_seconds[0] += time.perf_counter() - t0
            grid_in_fit[0] += grid.seconds - g0

    context = LegacyContext(
        context=Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config={}),
        config=ServerConfig(num_rounds=1), strategy=strategy,
    )
    logger = logging.getLogger("flwr")
    capture = _Capture()
    old_level = logger.level
    old_handlers = logger.handlers[:]
    logger.handlers = [capture]  # keep Flower's console quiet; its errors become the result
    logger.setLevel(logging.ERROR)
    error: str | None = None
    saved = (TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id)
    # The identity a ServerApp process has (as flwr.server.compat.app sets it).
    TaskIdentity.task_id, TaskIdentity.run_id = 1, grid.run.run_id
    TaskIdentity.node_id = SUPERLINK_NODE_ID
    w0 = time.perf_counter()
    try:
        DefaultWorkflow(fit_workflow=fit_workflow)(grid, context)
    except Exception as exc:  # noqa: BLE001 - Flower's failure is a result here
        error = f"{type(exc).__name__}: {exc}"
    finally:
        logger.handlers = old_handlers
        logger.setLevel(old_level)
        TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id = saved
    wall = time.perf_counter() - w0
    result = aggregated[0] if aggregated else None
    contributors = [nid for nid in nids if grid.answered[nid] >= 2]
    if result is None and error is None:
        error = "; ".join(dict.fromkeys(capture.lines)) or "workflow halted without a result"
    max_err: float | None = None
    if result is not None:
        mean = parameters_to_ndarrays(result)[0].astype(np.float64)
        want = np.zeros(dim, np.float64)
        for nid in contributors:
            want += np.asarray(inputs[nid - _BASE], np.float64)
        # Flower releases the weighted mean; scale to the sum to compare with ours.
        max_err = float(np.max(np.abs(mean * len(contributors) - want)))
    ids = contributors or [nid for nid in nids if grid.delivered[nid]]
    times = [grid.client_time[nid] for nid in ids]
    return FlowerResult(
        workflow=type(sa).__name__, num_shares=shares, threshold=threshold,
        aborted=result is None, error=error if result is None else None,
        client_seconds=statistics.median(times) if times else None,
        server_seconds=fit_seconds[0] - grid_in_fit[0],
        server_strategy_seconds=strategy_time[0],
        upload_bytes_per_client=int(statistics.median(grid.up[i] for i in ids)) if ids else None,
        download_bytes_per_client=(int(statistics.median(grid.down[i] for i in ids))
                                   if ids else None),
        max_abs_error=max_err, survivors=len(contributors) if result is not None else 0,
        wall_seconds=wall, flwr_version=flower_version(), client_seconds_all=times,
    )
