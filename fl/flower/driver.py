"""The server side of secure aggregation over Flower: map clients to nodes, drive one round.

This is the Flower twin of :func:`fl.engines.simulation.run_round`. It holds no crypto: it moves
:mod:`secagg.wire` frames between the sans-IO roles and Flower messages.

- Client ``u`` of the cohort lives on one SuperNode (:func:`assign_clients`). Every protocol
  message for ``u`` goes to that node; all the frames the server has for ``u`` at a time
  travel in one Flower message, and a client never has more than one message in flight, so
  it sees its frames in the order the server produced them.
- The server core, and the helper roles of the HE protocols (the decryptor at address
  ``DECRYPTOR``), run here, in the ServerApp's process, as separate objects; messages between
  them are delivered in process. (A deployment that must keep the decryptor's secret key off
  the aggregator's host runs the ServerApp of the decryptor elsewhere; this adapter does not
  do that split.)
- Each message to a client has a deadline, ``stage_timeout`` seconds after it was sent. A
  client whose reply is an error (its ClientApp raised, its node left, the message expired)
  or has not come by the deadline has **dropped**: it gets nothing more this round, and
  when nothing is left in flight the driver tells the core the stage is over with
  ``server.close_round()``, exactly where the simulator does.
- A reply is accepted only from the node the client lives on, and only with frames whose
  ``sender`` is that client: Flower authenticates nodes, so a node cannot speak for another
  client. A malformed frame, or one the server core refuses, counts as that client dropping.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from flwr.app import Message, RecordDict
from flwr.serverapp import Grid

from fl.flower import records
from protocols.base import SERVER, AggregateResult, Party, ProtocolSpec, ServerCore, stages_of
from protocols.base import Message as ProtocolMessage
from secagg import wire
from secagg.errors import (
    ConfigError,
    DecodeError,
    DropoutError,
    LateMessageError,
    ProtocolError,
    SecAggError,
)

__all__ = ["RoundOutcome", "assign_clients", "drive_round", "enrolled_nodes", "hello",
           "wait_for_nodes"]

Log = Callable[[str], None]


@dataclass
class RoundOutcome:
    """What one round over Flower released and cost.

    Attributes:
        result: the released aggregate, or None if the round aborted.
        error: why it aborted (``"DropoutError: ..."``), or None.
        dropped: client id -> why it counts as dropped (``"timeout"``, ``"error: ..."``).
        up, down: wire bytes each client sent and received.
        client_seconds: each client's protocol compute, as its replies reported it.
        server_seconds, helper_seconds: compute of the server core and of the helpers.
        wall_seconds: the round from first send to result.
        messages: Flower messages sent to clients.
        absent: client ids of the config without a node this round (not sampled, or not
            connected); they never got a message and count as dropped before the first
            stage, for the protocol. Not in ``dropped``.
    """

    result: AggregateResult | None
    error: str | None
    dropped: dict[int, str]
    up: list[int]
    down: list[int]
    client_seconds: list[float]
    server_seconds: float
    helper_seconds: float
    wall_seconds: float
    messages: int = 0
    absent: tuple[int, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)


def wait_for_nodes(grid: Grid, n: int, timeout: float, *, poll: float = 0.5,
                   log: Log | None = None) -> list[int]:
    """The connected node ids, once at least ``n`` are connected.

    Raises:
        ConfigError: fewer than ``n`` nodes connected within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    said = -1
    while True:
        ids = sorted(grid.get_node_ids())
        if len(ids) >= n:
            return ids
        if log and len(ids) != said:
            log(f"waiting for SuperNodes: {len(ids)} of {n} connected")
            said = len(ids)
        if time.monotonic() > deadline:
            raise ConfigError(f"only {len(ids)} SuperNodes connected within {timeout:g}s; "
                              f"the round needs {n} (one per client)")
        time.sleep(poll)


def _collect(grid: Grid, pending: dict[str, Any], timeout: float,
             poll: float) -> dict[str, Message]:
    deadline = time.monotonic() + timeout
    got: dict[str, Message] = {}
    while pending.keys() - got.keys() and time.monotonic() < deadline:
        for rep in grid.pull_messages(list(pending.keys() - got.keys())):
            got[rep.metadata.reply_to_message_id] = rep
        if pending.keys() - got.keys():
            time.sleep(poll)
    return got


def hello(grid: Grid, node_ids: list[int], timeout: float, *,
          poll: float = 0.1) -> dict[int, Any]:
    """Node id -> the ``"secagg"`` record of its answer to a hello (its ClientApp's
    :func:`~fl.flower.client_app.secagg_mod` answers with its ``partition-id`` and the
    ``enrolled-id`` of its key file), for the nodes that answered within ``timeout``."""
    msgs = [Message(records.make_content({"op": records.OP_HELLO, "round": -1}),
                    dst_node_id=nid, message_type=records.MESSAGE_TYPE,
                    ttl=timeout + 60.0) for nid in node_ids]
    pending = dict(zip(grid.push_messages(msgs), node_ids))
    got = _collect(grid, pending, timeout, poll)
    out: dict[int, Any] = {}
    for mid, rep in got.items():
        if not rep.has_error() and records.is_secagg(rep.content):
            out[pending[mid]] = rep.content.config_records[records.CONFIG_RECORD]
    return out


def _int_field(rec: Any, key: str) -> int:
    try:
        return records.get_int(rec, key, -1)
    except DecodeError:
        return -1


def assign_clients(grid: Grid, n: int, *, node_wait: float = 120.0, hello_timeout: float = 60.0,
                   poll: float = 0.1, log: Log | None = None) -> dict[int, int]:
    """Client id -> node id for a cohort of ``n``.

    Every connected node is asked (a "hello" message through its ClientApp) for the
    ``partition-id`` of its node config. If the answers name each of ``0 .. n-1`` exactly
    once, client ``u`` is the node with ``partition-id = u``; otherwise the first ``n`` nodes
    that answered, by node id.

    Raises:
        ConfigError: fewer than ``n`` nodes connected, or answered the hello in time.
    """
    node_ids = wait_for_nodes(grid, n, node_wait, log=log)
    answers = hello(grid, node_ids, hello_timeout, poll=poll)
    pids = {nid: _int_field(rec, "partition-id") for nid, rec in answers.items()}
    if len(pids) < n:
        raise ConfigError(
            f"only {len(pids)} of {len(node_ids)} SuperNodes answered the secagg hello within "
            f"{hello_timeout:g}s; the round needs {n}. Do their ClientApps use secagg_mod?"
        )
    by_pid: dict[int, list[int]] = {}
    for nid, pid in pids.items():
        by_pid.setdefault(pid, []).append(nid)
    if all(len(by_pid.get(u, [])) == 1 for u in range(n)):
        return {u: by_pid[u][0] for u in range(n)}
    return dict(enumerate(sorted(pids)[:n]))


def enrolled_nodes(grid: Grid, node_ids: list[int], registered: Any, *,
                   timeout: float = 60.0, poll: float = 0.1,
                   log: Log | None = None) -> dict[int, int]:
    """Node id -> enrolled client id, for the nodes of ``node_ids`` whose hello names a
    client of ``registered`` (a set of ids, e.g. a registry's ``keys``).

    A node's claim is only a routing hint: the round authenticates it (only the holder of
    ``client-u.key`` can take part as ``u``). Two nodes claiming one id: the first by node
    id is used and the other logged. Nodes that do not answer, or have no key file, are
    left out (and logged).
    """
    answers = hello(grid, sorted(node_ids), timeout, poll=poll)
    out: dict[int, int] = {}
    taken: dict[int, int] = {}
    for nid in sorted(node_ids):
        u = _int_field(answers[nid], "enrolled-id") if nid in answers else -1
        if u < 0 or u not in registered:
            if log:
                log(f"node {nid} " + ("did not answer the hello" if nid not in answers else
                                      f"has no enrolled key file of this registry ({u})"))
            continue
        if u in taken:
            if log:
                log(f"nodes {taken[u]} and {nid} both claim client {u}; using {taken[u]}")
            continue
        taken[u] = nid
        out[nid] = u
    return out


def drive_round(
    grid: Grid,
    spec: ProtocolSpec,
    config: Any,
    server: ServerCore,
    helpers: Mapping[int, Party],
    nodes: Mapping[int, int],
    *,
    round_index: int,
    setup_config: bytes,
    stage_timeout: float = 60.0,
    train_content: RecordDict | None = None,
    setup_fields: Mapping[str, Any] | None = None,
    poll: float = 0.05,
    log: Log | None = None,
) -> RoundOutcome:
    """Run one round of ``spec`` with the cohort's clients on the SuperNodes ``nodes``.

    Args:
        config: the round configuration the server core was built with.
        nodes: client id -> node id (see :func:`assign_clients`). A client id of the config
            without a node is *absent*: it is sent nothing, so the protocol sees it drop
            before its first stage (clients enrolled in a registry larger than the round's
            cohort; see :attr:`RoundOutcome.absent`).
        round_index: this round's index in the run; clients refuse frames of another round.
        setup_config: ``config`` as the clients get it (:func:`fl.flower.codec.dumps`, with
            anything that must stay on the server, such as a noise hook, taken out).
        stage_timeout: seconds a client has to answer each message before it is dropped.
        train_content: records added to each client's first message of the round, for the
            ClientApp's train function (e.g. the global model and the strategy's config).
        setup_fields: more fields of the first message's ``"secagg"`` record (what
            :func:`fl.flower.client_app.secagg_mod` makes of the train function's reply:
            ``delta``, ``clip``, ``max-weight``, ``arrays-key``, ``weight-key``).

    Returns:
        A :class:`RoundOutcome`; a round that aborts (too many dropouts, a refusal by the
        decoding party) is reported with ``result=None`` and ``error``, not raised.

    Raises:
        ConfigError: ``nodes`` names a client outside the config, or the core addresses a
            party nobody plays.
    """
    n = config.n_clients
    stray = sorted(u for u in nodes if not 0 <= u < n)
    if stray:
        raise ConfigError(f"nodes are given for clients {stray[:5]}, outside the config's "
                          f"0..{n - 1}")
    absent = frozenset(range(n)) - frozenset(nodes)
    up, down, secs = [0] * n, [0] * n, [0.0] * n
    timing = {"server": 0.0, "helpers": 0.0}
    dropped: dict[int, str] = {}
    queued: dict[int, list[bytes]] = {}
    in_flight: dict[str, tuple[int, float]] = {}
    started: set[int] = set()
    sent = 0
    t_start = time.monotonic()

    def timed(kind: str, fn: Callable[[], list[ProtocolMessage]]) -> list[ProtocolMessage]:
        t0 = time.perf_counter()
        try:
            return fn()
        finally:
            timing[kind] += time.perf_counter() - t0

    def route(outbox: deque[ProtocolMessage]) -> None:
        while outbox:
            msg = outbox.popleft()
            frame = wire.encode(msg)
            r = msg.recipient
            if r >= 0:
                if r >= n:
                    raise ConfigError(f"the protocol addressed client {r}; "
                                      f"the cohort is 0..{n - 1}")
                if r not in dropped and r not in absent:  # a dropped client gets nothing more
                    queued.setdefault(r, []).append(frame)
                    down[r] += len(frame)
                continue
            party_msg: ProtocolMessage = wire.decode(frame)
            if r == SERVER:
                try:
                    outbox.extend(timed("server", partial(server.receive, party_msg)))
                except LateMessageError:
                    pass
            elif r in helpers:
                outbox.extend(timed("helpers", partial(helpers[r].receive, party_msg)))
            else:
                raise ConfigError(f"the protocol addressed party {r}, which nobody plays here")

    def from_client(u: int, frames: list[bytes], outbox: deque[ProtocolMessage]) -> None:
        # Errors caused by what u sent drop u; what the server does next is routed after.
        for frame in frames:
            up[u] += len(frame)
            try:
                msg: ProtocolMessage = wire.decode(frame)
                r = msg.recipient
                if msg.sender != u:
                    raise ProtocolError(f"client {u}'s node sent a frame from {msg.sender}")
                if r >= n or (r < 0 and r != SERVER and r not in helpers):
                    raise ProtocolError(f"client {u} addressed party {r}, which nobody plays")
                if r >= 0:
                    outbox.append(msg)  # client to client: forwarded like any other frame
                    continue
                party = server if r == SERVER else helpers[r]
                out = timed("server" if r == SERVER else "helpers", partial(party.receive, msg))
            except LateMessageError:
                continue
            except DropoutError:
                raise
            except (DecodeError, ProtocolError) as exc:
                dropped[u] = f"refused: {type(exc).__name__}: {exc}"
                queued.pop(u, None)
                return
            outbox.extend(out)

    def send() -> None:
        nonlocal sent
        busy = {u for (u, _) in in_flight.values()}
        batch, who = [], []
        for u in sorted(queued):
            if u in busy or u in dropped:
                continue
            frames = queued.pop(u)
            fields: dict[str, object] = {"op": records.OP_ROUND, "round": round_index}
            if u not in started:
                fields.update({"protocol": spec.name, "client-id": u, "config": setup_config})
                fields["round-ttl"] = stage_timeout * (len(stages_of(spec, config)) + 3)
                fields.update(setup_fields or {})
            content = records.make_content(fields, frames)
            if u not in started and train_content is not None:
                for name, rec in train_content.items():
                    content[name] = rec
            started.add(u)
            batch.append(Message(content, dst_node_id=nodes[u], message_type=records.MESSAGE_TYPE,
                                 group_id=str(round_index), ttl=stage_timeout + 60.0))
            who.append(u)
        if batch:
            now = time.monotonic()
            for mid, u in zip(grid.push_messages(batch), who):
                in_flight[mid] = (u, now + stage_timeout)
            sent += len(batch)

    error: str | None = None
    try:
        route(deque(timed("server", server.start)))
        while True:
            send()
            if server.finished:  # replies still in flight cannot change the result
                break
            if not in_flight and not queued:
                if log:
                    log("deadline: closing the stage")
                out = timed("server", server.close_round)
                if not out and not server.finished:
                    raise ConfigError("the server neither finished nor asked for anything more")
                route(deque(out))
                continue
            got_any = False
            for rep in grid.pull_messages(list(in_flight)):
                entry = in_flight.pop(rep.metadata.reply_to_message_id, None)
                if entry is None:
                    continue
                got_any = True
                u = entry[0]
                outbox: deque[ProtocolMessage] = deque()
                if rep.has_error():
                    dropped[u] = f"error: {rep.error.reason}"
                    queued.pop(u, None)
                elif rep.metadata.src_node_id != nodes[u] or not records.is_secagg(rep.content):
                    dropped[u] = "reply from the wrong node or without secagg records"
                    queued.pop(u, None)
                else:
                    rec = rep.content.config_records[records.CONFIG_RECORD]
                    try:
                        secs[u] += records.get_float(rec, "seconds", 0.0)
                        frames = records.frames_of(rep.content)
                    except DecodeError as exc:
                        dropped[u] = f"refused: {exc}"
                        queued.pop(u, None)
                        continue
                    from_client(u, frames, outbox)
                route(outbox)
            now = time.monotonic()
            for mid, (u, deadline) in list(in_flight.items()):
                if now > deadline:
                    del in_flight[mid]
                    dropped[u] = f"timeout: no reply within {stage_timeout:g}s"
                    queued.pop(u, None)
            if not got_any and in_flight:
                time.sleep(poll)
    except SecAggError as exc:
        error = f"{type(exc).__name__}: {exc}"
    result = server.result() if server.finished else None
    return RoundOutcome(result, error, dropped, up, down, secs, timing["server"],
                        timing["helpers"], time.monotonic() - t_start, sent,
                        tuple(sorted(absent)))
