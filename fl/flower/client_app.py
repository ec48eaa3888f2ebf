"""The client side over Flower: :func:`secagg_mod`, a ClientApp mod that hosts a client core.

Use it around any ClientApp whose ``@app.train()`` function returns the client's update::

    app = ClientApp(mods=[secagg_mod])

    @app.train()
    def train(msg, context):
        update = ...                                 # 1-D float vector of the round's dim
        return Message(RecordDict({"update": ArrayRecord([update]),
                                   "metrics": MetricRecord({"weight": n_examples})}),
                       reply_to=msg)

The mod lets every message without the ``"secagg"`` record through untouched. For secure
aggregation traffic (layout: :mod:`fl.flower.records`) it:

1. answers the ServerApp's *hello* with the node's ``partition-id`` (node config);
2. on the first message of a round (the one with the setup) builds the protocol's client
   core from the config the server sent, calls the wrapped train function **once** to get
   the update (first ArrayRecord of the reply, flattened; weight from a ``"weight"`` or
   ``"num-examples"`` entry of its metric/config records, else 1.0), and keeps it;
3. feeds each incoming wire frame to the core and replies with the core's outgoing frames.
   The raw update never leaves the node; only the core's frames do.

**State between messages.** Flower runs the ClientApp in a fresh process for every message and
keeps only the node's ``Context.state`` (a RecordDict, on the SuperNode) between them. A
core is a Python object, so the mod keeps what determines it instead: the round's 32-byte
generator key, the update and weight, and the frames received so far. Each message rebuilds
the core (``spec.client(config, id, Csprng(key))``, ``set_input``) and replays the earlier
frames; the cores are deterministic given their generator, so this is the same core. It
costs recomputing earlier stages (for SecAgg about twice the masking work over a round),
which ``seconds`` in the replies does not count. When the core is DONE the state is wiped.

Where the generator comes from: ``os.urandom``, always, unless the node was started with node
config ``secagg-loopback=true`` (what :mod:`fl.flower.deploy` does for its single-machine
test deployments). Such a node also honours run config ``seed``
(:func:`fl.flower.settings.round_root`) and the loopback engine's ``job-dir`` (the engine's
generator tree, and the input the engine computed). Any other node refuses a run that asks
for either: whoever knows a client's seed knows its masks.

Node config keys the mod reads: ``partition-id`` (which client of the cohort this node is,
when the ids ``0..n-1`` are all present), ``secagg-protocol`` (if set, the node refuses any
other protocol: pin it, because the client accepts the configuration its server sends),
``secagg-loopback`` (see above).
Simulated dropouts (the engine's ``drop_at``): from that stage on the mod raises, so Flower
returns an error reply and the ServerApp counts the client as dropped, as for a real crash.

.. warning:: ``Context.state`` holds the round's generator key and the update until the round
   ends: it is the client's own secret material, on its own node. It is never sent.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

import numpy as np
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MetricRecord,
    RecordDict,
)
from flwr.clientapp import ClientApp
from flwr.clientapp.typing import ClientAppCallable

import protocols
from fl.flower import codec, jobs, records, settings
from protocols.base import ClientCore, RoundConfig
from secagg import wire
from secagg.errors import ConfigError, ProtocolError, SecAggError, UsageError
from secagg.rng import Csprng

__all__ = ["SimulatedDropout", "app", "provide_input", "secagg_mod"]

STATE = "secagg.state"
INPUT = "secagg.input"
LOG = "secagg.log"
LOOPBACK = "secagg-loopback"
_DONE_STATES = ("DONE",)


class SimulatedDropout(SecAggError):
    """Raised on purpose by the mod to simulate a client that leaves at a given stage."""


def _reply(msg: Message, fields: dict[str, Any], frames: list[bytes]) -> Message:
    return Message(records.make_content(fields, frames), reply_to=msg)


def _hello(msg: Message, context: Context) -> Message:
    pid = context.node_config.get("partition-id", -1)
    return _reply(msg, {"op": records.OP_HELLO, "round": -1, "partition-id": int(pid),
                        "protocols": list(protocols.names())}, [])


def _input_of(reply: Message, dim: int) -> tuple[np.ndarray, float]:
    if reply.has_error():
        raise UsageError(f"the train function failed: {reply.error.reason}")
    content = reply.content
    if not content.array_records:
        raise UsageError("the train function's reply has no ArrayRecord with the update")
    rec = content.array_records[INPUT] if INPUT in content.array_records else next(
        iter(content.array_records.values()))
    parts = [np.asarray(a.numpy(), np.float64).reshape(-1) for a in rec.values()]
    update = np.concatenate(parts) if parts else np.zeros(0)
    if update.size != dim:
        raise UsageError(f"the train function returned {update.size} values; the round "
                         f"aggregates vectors of {dim}")
    weight = 1.0
    for group in (content.metric_records, content.config_records):
        for r in group.values():
            for key in ("weight", "num-examples"):
                if key in r:
                    return update, records.get_float(r, key, 1.0)
    return update, weight


def _loopback(context: Context) -> bool:
    """Whether this node may take its randomness (and, for the engine, its input) from the
    run: only nodes started with node config ``secagg-loopback=true``."""
    return bool(context.node_config.get(LOOPBACK, False))


def _job_dir(context: Context) -> str:
    job_dir = str(settings.get(context.run_config, "job-dir"))
    if job_dir and not _loopback(context):
        raise ConfigError(f"the run names a job folder but this node is not a loopback test "
                          f"node (node config {LOOPBACK}=true); refusing")
    return job_dir


def _seed(context: Context) -> int | None:
    seed = settings.parse_seed(settings.get(context.run_config, "seed"))
    if seed is not None and not _loopback(context):
        raise ConfigError(f"the run asks for seeded randomness but this node is not a loopback "
                          f"test node (node config {LOOPBACK}=true); refusing: a seed known to "
                          "the server would reveal every mask")
    return seed


def _secrets(context: Context, rnd: int, u: int) -> dict[str, Any]:
    """The state fields that fix this round's randomness and extra core arguments."""
    job_dir = _job_dir(context)
    if job_dir:
        job = jobs.read_client_job(jobs.round_dir(job_dir, rnd), u)
        return {"key": job.key, "credentials": codec.dumps(dict(job.credentials)),
                "drop-at": -1 if job.drop_at is None else job.drop_at}
    if _seed(context) is not None:
        return {"key": b"", "credentials": codec.dumps({}), "drop-at": -1}  # re-derived
    return {"key": os.urandom(Csprng.KEY_SIZE), "credentials": codec.dumps({}), "drop-at": -1}


def _seeded_credentials(protocol: str, config: Any, seed: int, rnd: int,
                        u: int) -> dict[str, Any]:
    """Seeded (loopback test) runs: this client's part of the enrolment the ServerApp derived
    from the same seed (``spec.provision`` under ``round_root(seed, r).spawn("enrolment")``)."""
    if getattr(config, "registry", None) is None:
        return {}
    spec, unenrolled = protocols.get(protocol), dataclasses.replace(config, registry=None)
    _, creds = spec.provision(unenrolled, settings.round_root(seed, rnd).spawn("enrolment"))
    return dict(creds.get(u, {}))


def _rng(context: Context, state: ConfigRecord) -> Csprng:
    key = records.get_bytes(state, "key")
    if key:
        return Csprng(key)
    seed = _seed(context)
    if seed is None:
        raise UsageError("this round was seeded but the run config has no seed any more")
    u = records.get_int(state, "client-id")
    return settings.round_root(seed, records.get_int(state, "round")).spawn(f"client/{u}")


def _setup(msg: Message, context: Context, call_next: ClientAppCallable,
           rec: ConfigRecord, rnd: int) -> ConfigRecord:
    protocol = records.get_str(rec, "protocol")
    pinned = context.node_config.get("secagg-protocol")
    if pinned and pinned != protocol:
        raise ConfigError(f"this node is pinned to protocol {pinned!r}; the server asked for "
                          f"{protocol!r}")
    config = codec.loads(records.get_bytes(rec, "config"), RoundConfig)
    protocols.get(protocol)
    u = records.get_int(rec, "client-id")
    if not 0 <= u < config.n_clients:
        raise ProtocolError(f"client id {u} is outside the cohort 0..{config.n_clients - 1}")
    secret = _secrets(context, rnd, u)
    seed = _seed(context)
    if seed is not None and not _job_dir(context):
        secret["credentials"] = codec.dumps(_seeded_credentials(protocol, config, seed, rnd, u))
    state = ConfigRecord({"round": rnd, "protocol": protocol,
                          "config": records.get_bytes(rec, "config"), "client-id": u,
                          **secret})
    update, weight = _input_of(call_next(msg, context), config.dim)
    context.state[INPUT] = ArrayRecord({"update": Array(update),
                                        "weight": Array(np.array([weight]))})
    context.state[LOG] = records.frames_record([])
    return state


def _rebuild(context: Context, state: ConfigRecord) -> tuple[ClientCore, float]:
    spec = protocols.get(records.get_str(state, "protocol"))
    config = codec.loads(records.get_bytes(state, "config"), RoundConfig)
    creds = codec.loads(records.get_bytes(state, "credentials"), dict)
    core = spec.client(config, records.get_int(state, "client-id"), _rng(context, state), **creds)
    inp = context.state.array_records[INPUT]
    t0 = time.perf_counter()
    core.set_input(inp["update"].numpy(), float(inp["weight"].numpy()[0]))
    return core, time.perf_counter() - t0


def _round(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    rec = msg.content.config_records[records.CONFIG_RECORD]
    rnd = records.get_int(rec, "round")
    frames = records.frames_of(msg.content)
    fresh = "config" in rec
    if fresh:
        state = _setup(msg, context, call_next, rec, rnd)
    else:
        if STATE not in context.state.config_records:
            raise ProtocolError(f"round {rnd}: this node has no round in progress")
        state = context.state.config_records[STATE]
        mine, done = records.get_int(state, "round"), bool(state.get("done", False))
        if mine != rnd or done:
            raise ProtocolError(f"round {rnd}: this node's round is {mine} "
                                f"({'done' if done else 'in progress'})")
    core, input_seconds = _rebuild(context, state)
    log = records.frames_of(RecordDict({records.FRAMES_RECORD: context.state.array_records[LOG]}))
    for frame in log:  # replay: the same core as after the previous message
        core.receive(wire.decode(frame))
    drop_at = records.get_int(state, "drop-at")
    t0 = time.perf_counter()
    out = []
    for frame in frames:
        if 0 <= drop_at <= len(log):
            raise SimulatedDropout(f"client {records.get_int(state, 'client-id')} drops at "
                                   f"its message {len(log)}")
        out.extend(core.receive(wire.decode(frame)))
        log.append(frame)
    reply = [wire.encode(m) for m in out]
    seconds = time.perf_counter() - t0 + (input_seconds if fresh else 0.0)
    if getattr(getattr(core, "state", None), "name", None) in _DONE_STATES:
        for name in (INPUT, LOG):
            if name in context.state:
                del context.state[name]
        context.state[STATE] = ConfigRecord({"round": rnd, "done": True})
    else:
        context.state[STATE] = state
        context.state[LOG] = records.frames_record(log)
    return _reply(msg, {"op": records.OP_ROUND, "round": rnd, "seconds": seconds}, reply)


def secagg_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Host a secure-aggregation client core in a ClientApp (see the module docstring).

    Raises:
        SecAggError: a refused message (the core's :class:`ProtocolError`, a protocol the
            node is not pinned to, a frame of another round) or a simulated dropout. Flower
            turns it into an error reply, which the ServerApp counts as this client dropping.
        UsageError: the train function did not return a vector of the round's length.
    """
    if not records.is_secagg(msg.content):
        return call_next(msg, context)
    op = msg.content.config_records[records.CONFIG_RECORD].get("op")
    if op == records.OP_HELLO:
        return _hello(msg, context)
    if op == records.OP_ROUND:
        return _round(msg, context, call_next)
    raise ProtocolError(f"unknown secagg operation {op!r}")


def provide_input(msg: Message, context: Context) -> Message:
    """The default train function: the update and weight this node contributes.

    - Loopback engine (run config ``job-dir``): the vector the engine computed for this
      client, from its own job file.
    - Otherwise :func:`fl.flower.settings.synthetic_input` for the node's ``partition-id``
      (or, without one, its client id), run config ``dim`` and ``data-seed`` (node config
      ``data-seed`` overrides it), with weight 1.
    """
    rec = msg.content.config_records[records.CONFIG_RECORD]
    rnd, u = records.get_int(rec, "round"), records.get_int(rec, "client-id")
    job_dir = _job_dir(context)
    if job_dir:
        job = jobs.read_client_job(jobs.round_dir(job_dir, rnd), u)
        update, weight = job.update, job.weight
    else:
        pid = int(context.node_config.get("partition-id", u))
        data_seed = int(context.node_config.get(
            "data-seed", settings.get(context.run_config, "data-seed")))
        update = settings.synthetic_input(pid, int(settings.get(context.run_config, "dim")),
                                          data_seed)
        weight = 1.0
    return Message(RecordDict({INPUT: ArrayRecord([update]),
                               "metrics": MetricRecord({"weight": float(weight)})}),
                   reply_to=msg)


app = ClientApp(mods=[secagg_mod])
app.train()(provide_input)
