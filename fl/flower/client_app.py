"""The client side over Flower: :func:`secagg_mod`, a ClientApp mod that hosts a client core.

Use it around a standard Flower ClientApp, whose ``@app.train()`` function is unchanged::

    app = ClientApp(mods=[secagg_mod])

    @app.train()
    def train(msg, context):
        model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
        ...                                          # local training, as without secagg
        return Message(RecordDict({"arrays": ArrayRecord(model.state_dict()),
                                   "metrics": MetricRecord({"num-examples": n})}),
                       reply_to=msg)

When the server is :class:`fl.flower.workflow.SecAggWorkflow`, the round's first message
carries the global model (the strategy's ``"arrays"`` record) and the mod computes the
update itself: ``trained - global`` (every array flattened in record order), clipped to
L2 norm ``clip`` (sent by the server), with weight ``num-examples`` capped at
``max-weight``. The trained model and the raw update never leave the node. Without a
global model in the message (the bundled demo app, the loopback engine) the train
function's ArrayRecord *is* the update.

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
keeps only the node's ``Context.state`` (a RecordDict, on the SuperNode) between them. After
each message the mod snapshots the core into it (:mod:`fl.flower.state`: typed JSON and raw
arrays, never pickle) and the next message restores it: no earlier stage is recomputed. A
core the snapshot cannot carry (the HE clients hold TenSEAL / gmpy2 objects) is rebuilt
instead from the round's generator key, its input and the frames received so far, replayed
(the cores are deterministic given their generator). When the core is DONE, or aborts, the
state is wiped; a setup for a new round replaces whatever an unfinished one left; and a round
whose server went silent (a ServerApp that died) is wiped by the next message the node gets
once the round's deadline (setup field ``round-ttl``, sent by the driver) has passed. Flower
keeps ``Context.state`` per run series in the SuperNode's memory: a node that never hears
from the federation again keeps an abandoned round's state until its SuperNode exits.

**Import cost.** Every message pays this module's import in a fresh process, so it imports
only flwr, numpy and the small fl.flower helpers; the protocol's own package is imported by
its first message (``protocols``), torch never (unless the user's train function does).

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
from typing import TYPE_CHECKING, Any, cast

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

from fl.flower import codec, enrolment, records, settings, state
from secagg.errors import ConfigError, ProtocolError, SecAggError, UsageError
from secagg.rng import Csprng

if TYPE_CHECKING:
    from protocols.base import ClientCore

__all__ = ["ROUND_RECORD", "SimulatedDropout", "app", "client_options", "flatten", "provide_input", "secagg_mod"]

STATE = "secagg.state"
INPUT = "secagg.input"
LOG = "secagg.log"
CORE = "secagg.core"
CORE_ARRAYS = "secagg.core.arrays"
LOOPBACK = "secagg-loopback"
_DONE_STATES = ("DONE",)
_ROUND_KEYS = (INPUT, LOG, CORE, CORE_ARRAYS)


class SimulatedDropout(SecAggError):
    """Raised on purpose by the mod to simulate a client that leaves at a given stage."""


def client_options(context: Context, protocol: str, config: Any = None) -> dict[str, Any]:
    """Extra keyword arguments for the protocol's client core, from this node's own config
    (never from the server): passed to ``spec.client(config, id, rng, **credentials,
    **options)`` on every message.

    - ``policy``: the node's :class:`protocols.ClientPolicy`, from node config keys
      ``policy-protocols``, ``policy-min-cohort``, ``policy-min-threshold``,
      ``policy-require-active``, ``policy-registry-fingerprint``, ``policy-decryptor-key``
      (hex; HE: the only decryptor this node encrypts to), ...
      (:meth:`protocols.ClientPolicy.from_settings`); a round config weaker than it is
      refused with a ``PolicyError`` naming the setting.
    - ``answered`` (secagg, secagg+ with per-round setup): a file-backed memory of the
      requests this node answered (:class:`fl.flower.replay.FileAnsweredRequests`), so a server
      that replays a key or unmask request of a (session, round) to a fresh ClientApp
      process is refused. Its folder is under node config ``secagg-state-dir`` (default
      ``~/.secagg/node-<node id>``), the node's own. (The enrolled mode keeps the same
      memory in its identity's answer store: :mod:`fl.flower.enrolment`.)
    """
    from protocols.policy import ClientPolicy

    options: dict[str, Any] = {}
    if protocol in ("plaintext", "secagg", "secagg+", "ckks", "paillier"):
        options["policy"] = ClientPolicy.from_settings(context.node_config)
    if protocol in ("secagg", "secagg+") and not getattr(config, "enrolled", False):
        from fl.flower.replay import FileAnsweredRequests

        folder = enrolment.state_dir(context.node_config, context.node_id)
        options["answered"] = FileAnsweredRequests(folder / "answered")
    return options


def _reply(msg: Message, fields: dict[str, Any], frames: list[bytes]) -> Message:
    return Message(records.make_content(fields, frames), reply_to=msg)


def _hello(msg: Message, context: Context) -> Message:
    import protocols

    pid = context.node_config.get("partition-id", -1)
    return _reply(msg, {"op": records.OP_HELLO, "round": -1, "partition-id": int(pid),
                        "enrolled-id": enrolment.enrolled_id(context.node_config),
                        "protocols": list(protocols.names())}, [])


def flatten(rec: ArrayRecord) -> np.ndarray:
    """Every array of ``rec``, in record order, flattened into one float64 vector."""
    parts = [np.asarray(a.numpy(), np.float64).reshape(-1) for a in rec.values()]
    return np.concatenate(parts) if parts else np.zeros(0)


def _weight_of(content: RecordDict, key: str) -> float | None:
    for group in (content.metric_records, content.config_records):
        for r in group.values():
            for k in (key, "weight", "num-examples"):
                if k in r:
                    return records.get_float(r, k, 1.0)
    return None


def _check_reply(reply: Message) -> RecordDict:
    if reply.has_error():
        raise UsageError(f"the train function failed: {reply.error.reason}")
    content = reply.content
    if not content.array_records:
        raise UsageError("the train function's reply has no ArrayRecord")
    return content


def _input_of(reply: Message, dim: int) -> tuple[np.ndarray, float]:
    content = _check_reply(reply)
    rec = content.array_records[INPUT] if INPUT in content.array_records else next(
        iter(content.array_records.values()))
    update = flatten(rec)
    if update.size != dim:
        raise UsageError(f"the train function returned {update.size} values; the round "
                         f"aggregates vectors of {dim}")
    weight = _weight_of(content, "weight")
    return update, 1.0 if weight is None else weight


def _delta_of(reply: Message, global_rec: ArrayRecord, key: str, rec: ConfigRecord,
              dim: int) -> tuple[np.ndarray, float]:
    """The clipped update (trained - global) and capped weight of a trained model reply."""
    from secagg.encoding import clip_l2

    content = _check_reply(reply)
    trained = content.array_records[key] if key in content.array_records else next(
        iter(content.array_records.values()))
    if list(trained.keys()) != list(global_rec.keys()):
        raise UsageError(f"the train function returned arrays {list(trained.keys())[:5]}...; "
                         f"the global model has {list(global_rec.keys())[:5]}...")
    update = flatten(trained) - flatten(global_rec)
    if update.size != dim:
        raise UsageError(f"the trained model has {update.size} values; the round aggregates "
                         f"vectors of {dim}")
    if not np.all(np.isfinite(update)):
        raise UsageError("the trained model has non-finite values")
    clip = records.get_float(rec, "clip", 1.0)
    update, _ = clip_l2(update, clip)
    weight = _weight_of(content, records.get_str(rec, "weight-key")
                        if "weight-key" in rec else "num-examples")
    weight = 1.0 if weight is None else weight
    cap = records.get_float(rec, "max-weight", 0.0)
    if weight <= 0:
        raise UsageError(f"the train function reported {weight} examples")
    return update, min(weight, cap) if cap > 0 else weight


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
        from fl.flower import jobs

        job = jobs.read_client_job(jobs.round_dir(job_dir, rnd), u)
        return {"key": job.key, "credentials": codec.dumps(dict(job.credentials)),
                "drop-at": -1 if job.drop_at is None else job.drop_at}
    if _seed(context) is not None:
        return {"key": b"", "credentials": codec.dumps({}), "drop-at": -1}  # re-derived
    return {"key": os.urandom(Csprng.KEY_SIZE), "credentials": codec.dumps({}), "drop-at": -1}


def _seeded_credentials(protocol: str, config: Any, seed: int, rnd: int,
                        u: int) -> dict[str, Any]:
    """Seeded (loopback test) runs: this client's part of the enrolment the ServerApp derived
    from the same seed (``spec.provision`` under ``party_rng(round_root(seed, r), "enrolment")``)."""
    import protocols

    if getattr(config, "registry", None) is None:
        return {}
    from protocols.parties import party_rng

    spec, unenrolled = protocols.get(protocol), dataclasses.replace(config, registry=None)
    _, creds = spec.provision(unenrolled, party_rng(settings.round_root(seed, rnd), "enrolment"))
    return dict(creds.get(u, {}))


def _root_rng(context: Context, st: ConfigRecord) -> Csprng:
    key = records.get_bytes(st, "key")
    if key:
        return Csprng(key)
    seed = _seed(context)
    if seed is None:
        raise UsageError("this round was seeded but the run config has no seed any more")
    from protocols.parties import party_rng

    u = records.get_int(st, "client-id")
    return party_rng(settings.round_root(seed, records.get_int(st, "round")), u)


def _expire(context: Context) -> None:
    """Wipe a round whose server has gone silent past the round's deadline (a ServerApp that
    died mid-round): its secrets must not outlive it. Runs on every message the node gets."""
    if STATE not in context.state.config_records:
        return
    st = context.state.config_records[STATE]
    deadline = st.get("deadline")
    if isinstance(deadline, float) and not st.get("done", False) and time.time() > deadline:
        _wipe(context)
        context.state[STATE] = ConfigRecord({"round": records.get_int(st, "round"),
                                             "done": True, "expired": True})


def _wipe(context: Context) -> None:
    for name in _ROUND_KEYS:
        if name in context.state:
            del context.state[name]


ROUND_RECORD = "secagg.round"


def _train_input(msg: Message, context: Context, call_next: ClientAppCallable,
                 rec: ConfigRecord, dim: int, rnd: int, u: int) -> tuple[np.ndarray, float]:
    """Call the wrapped train function once, on the message without the protocol's records
    (it gets ``ConfigRecord "secagg.round"``: this node's ``round`` and ``client-id``)."""
    key = records.get_str(rec, "arrays-key") if "arrays-key" in rec else "arrays"
    delta = bool(rec.get("delta", False))
    if delta and key not in msg.content.array_records:
        raise ProtocolError(f"the server asked for a model update but sent no {key!r} record")
    hidden = {name: msg.content[name] for name in (records.CONFIG_RECORD, records.FRAMES_RECORD)
              if name in msg.content}
    for name in hidden:
        del msg.content[name]
    msg.content[ROUND_RECORD] = ConfigRecord({"round": rnd, "client-id": u})
    try:
        reply = call_next(msg, context)
    finally:
        del msg.content[ROUND_RECORD]
        for name, value in hidden.items():
            msg.content[name] = value
    if delta:
        return _delta_of(reply, msg.content.array_records[key], key, rec, dim)
    return _input_of(reply, dim)


def _setup(msg: Message, context: Context, call_next: ClientAppCallable,
           rec: ConfigRecord, rnd: int) -> tuple[ConfigRecord, ClientCore, np.ndarray, float]:
    import protocols
    from protocols.base import RoundConfig

    protocol = records.get_str(rec, "protocol")
    pinned = context.node_config.get("secagg-protocol")
    if pinned and pinned != protocol:
        raise ConfigError(f"this node is pinned to protocol {pinned!r}; the server asked for "
                          f"{protocol!r}")
    protocols.get(protocol)
    config = codec.loads(records.get_bytes(rec, "config"), RoundConfig)
    u = records.get_int(rec, "client-id")
    if not 0 <= u < config.n_clients:
        raise ProtocolError(f"client id {u} is outside the cohort 0..{config.n_clients - 1}")
    _wipe(context)  # whatever an unfinished earlier round left
    secret = _secrets(context, rnd, u)
    seed = _seed(context)
    if seed is not None and not _job_dir(context):
        secret["credentials"] = codec.dumps(_seeded_credentials(protocol, config, seed, rnd, u))
    # Unseeded runs with a registry: the node's own key file and registry (never the server's).
    secret["node-credentials"] = (seed is None and not _job_dir(context)
                                  and getattr(config, "registry", None) is not None)
    st = ConfigRecord({"round": rnd, "protocol": protocol,
                       "config": records.get_bytes(rec, "config"), "client-id": u,
                       "messages": 0, "frames": 0, "replay": False,
                       "deadline": time.time() + records.get_float(rec, "round-ttl", 3600.0),
                       **secret})
    update, weight = _train_input(msg, context, call_next, rec, config.dim, rnd, u)
    return st, _build(context, st, config, _root_rng(context, st)), update, weight


def _build(context: Context, st: ConfigRecord, config: Any, rng: Csprng) -> ClientCore:
    import protocols

    protocol = records.get_str(st, "protocol")
    creds = codec.loads(records.get_bytes(st, "credentials"), dict)
    if st.get("node-credentials", False):
        config, creds = enrolment.node_credentials(
            protocol, config, records.get_int(st, "client-id"), context.node_config,
            context.node_id)
    return protocols.get(protocol).client(config, records.get_int(st, "client-id"), rng,
                                          **creds, **client_options(context, protocol, config))


def _resume(context: Context, st: ConfigRecord) -> ClientCore:
    """The core as it was after this node's previous message of the round."""
    from protocols.base import RoundConfig
    from secagg import wire

    config = codec.loads(records.get_bytes(st, "config"), RoundConfig)
    root = _root_rng(context, st)
    if not st.get("replay", False):
        if CORE not in context.state.config_records:
            raise ProtocolError("this node's round state has no core snapshot")
        snap = context.state.config_records[CORE]
        arrays = context.state.array_records.get(CORE_ARRAYS, ArrayRecord())
        core = _build(context, st, config,
                      state.message_rng(root, records.get_int(st, "messages")))
        return cast("ClientCore", state.restore(core, records.get_bytes(snap, "json"),
                                                {k: a.numpy() for k, a in arrays.items()}))
    core = _build(context, st, config, root)
    inp = context.state.array_records[INPUT]
    core.set_input(inp["update"].numpy(), float(inp["weight"].numpy()[0]))
    log = records.frames_of(RecordDict({records.FRAMES_RECORD: context.state.array_records[LOG]}))
    for frame in log:  # replay: the same core as after the previous message
        core.receive(wire.decode(frame))
    return core


def _keep(context: Context, st: ConfigRecord, core: ClientCore, fresh: bool,
          inp: tuple[np.ndarray, float] | None, log: list[bytes]) -> None:
    """Store what the next message needs to resume ``core``."""
    snap = None if st.get("replay", False) and not fresh else state.snapshot(core)
    if fresh:
        st["replay"] = snap is None
        if snap is None:
            if inp is None:
                raise UsageError("a replayed core needs its input")
            context.state[INPUT] = ArrayRecord({"update": Array(inp[0]),
                                                "weight": Array(np.array([inp[1]]))})
    if st.get("replay", False):
        context.state[LOG] = records.frames_record(log)
    else:
        if snap is None:
            raise ProtocolError(f"the {type(core).__name__} could be snapshotted before but not "
                                "now; it cannot resume")
        context.state[CORE] = ConfigRecord({"json": snap[0]})
        context.state[CORE_ARRAYS] = ArrayRecord({k: Array(np.ascontiguousarray(v))
                                                  for k, v in snap[1].items()})
    st["messages"] = records.get_int(st, "messages") + 1
    context.state[STATE] = st


def _round(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    from secagg import wire

    rec = msg.content.config_records[records.CONFIG_RECORD]
    rnd = records.get_int(rec, "round")
    frames = records.frames_of(msg.content)
    fresh = "config" in rec
    inp: tuple[np.ndarray, float] | None = None
    t0 = time.perf_counter()
    if fresh:
        st, core, update, weight = _setup(msg, context, call_next, rec, rnd)
        t0 = time.perf_counter()  # the train function's time is not protocol compute
        core.set_input(update, weight)
        inp = (update, weight)
        log: list[bytes] = []
    else:
        if STATE not in context.state.config_records:
            raise ProtocolError(f"round {rnd}: this node has no round in progress")
        st = context.state.config_records[STATE]
        mine, done = records.get_int(st, "round"), bool(st.get("done", False))
        if mine != rnd or done:
            _wipe(context)
            context.state[STATE] = ConfigRecord({"round": mine, "done": True})
            raise ProtocolError(f"round {rnd}: this node's round is {mine} "
                                f"({'done' if done else 'in progress'})")
        core = _resume(context, st)
        log = (records.frames_of(RecordDict({records.FRAMES_RECORD:
                                             context.state.array_records[LOG]}))
               if st.get("replay", False) else [])
    drop_at = records.get_int(st, "drop-at")
    seen = records.get_int(st, "frames")
    out = []
    try:
        for frame in frames:
            if 0 <= drop_at <= seen:
                raise SimulatedDropout(f"client {records.get_int(st, 'client-id')} drops at "
                                       f"its message {seen}")
            out.extend(core.receive(wire.decode(frame)))
            seen += 1
            if st.get("replay", False) or fresh:
                log.append(frame)
    except SecAggError:
        _wipe(context)  # an aborted or dropped client keeps nothing of the round
        context.state[STATE] = ConfigRecord({"round": rnd, "done": True})
        raise
    st["frames"] = seen
    reply = [wire.encode(m) for m in out]
    if getattr(getattr(core, "state", None), "name", None) in _DONE_STATES:
        _wipe(context)
        context.state[STATE] = ConfigRecord({"round": rnd, "done": True})
    else:
        _keep(context, st, core, fresh, inp, log)
    seconds = time.perf_counter() - t0
    return _reply(msg, {"op": records.OP_ROUND, "round": rnd, "seconds": seconds}, reply)


def secagg_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Host a secure-aggregation client core in a ClientApp (see the module docstring).

    Raises:
        SecAggError: a refused message (the core's :class:`ProtocolError`, a protocol the
            node is not pinned to, a frame of another round) or a simulated dropout. Flower
            turns it into an error reply, which the ServerApp counts as this client dropping.
        UsageError: the train function did not return a vector of the round's length.
    """
    _expire(context)
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
    job_dir = _job_dir(context)
    rec = msg.content.config_records[ROUND_RECORD]
    rnd, u = records.get_int(rec, "round"), records.get_int(rec, "client-id")
    if job_dir:
        from fl.flower import jobs

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
