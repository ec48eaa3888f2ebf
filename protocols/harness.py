"""One round harness for every protocol: build the parties, route their messages, close stages.

This is h11's ``ConnectionPair`` for N parties, and the only place in the project that moves
messages between the parties of a round (built by :func:`protocols.parties.build_parties`)
until nothing is in flight, then tells the server that the stage's deadline passed
(:class:`Router`), until the round has finished.

Every message crosses the wire codec: what is queued is the frame (``secagg.wire.encode``),
what a role receives is ``secagg.wire.decode`` of it, so a driver or test sees exactly what a
real transport would carry.

A :class:`Router` can also play a hostile or lossy network:

- make a client fall silent from its i-th incoming message on (``drop_at``), or any role
  (a client, a helper such as the decryptor) from now on (:meth:`Router.kill`);
- deliver any frame in flight, not only the oldest (reordering), deliver one twice
  (:meth:`Router.duplicate`), lose one (:meth:`Router.drop`), hold one back until the stage's
  deadline has passed (:meth:`Router.delay`), or inject a forged message
  (:meth:`Router.inject`, :meth:`Router.send`);
- rewrite (or observe) every message a role emits before it goes on the wire (``tamper``):
  a cheating client or a man in the middle, for adversarial tests;
- stop the honest round at the first message of a given kind (:meth:`Router.until`), so a
  test can play a malicious role from there;
- run a whole schedule of such operations (:class:`NetOp`, :meth:`Router.apply`).

For people who are not writing a driver, :func:`aggregate` runs one round in one call::

    import protocols
    result = protocols.aggregate("secagg+", None, inputs)   # config derived from the inputs
    result.sum, result.contributors

The harness holds no clock, thread or socket (``protocols`` never does): a driver that times
roles passes ``step``, a wrapper every role invocation goes through. While :meth:`Router.run`
runs a round, the garbage collector's thresholds are those of a process that hosts every
role (:data:`ROUND_GC_THRESHOLDS`): without them CPython's full collections, walking all n
clients' state, are charged to whichever role allocates.
"""

from __future__ import annotations

import enum
import gc
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from protocols.base import (
    SERVER,
    AggregateResult,
    ClientCore,
    Message,
    Party,
    ProtocolSpec,
    RoundConfig,
    ServerCore,
    stage_names,
)
from protocols.parties import build_parties
from secagg import wire
from secagg.errors import ConfigError, UsageError
from secagg.rng import Csprng

__all__ = [
    "Envelope",
    "NetOp",
    "Op",
    "ROUND_GC_THRESHOLDS",
    "Router",
    "Step",
    "aggregate",
    "random_inputs",
]

#: ``step(address, call)``: runs ``call()`` (one role invocation) and returns its messages; a
#: driver uses it to time roles or sample memory. Address SERVER, a helper's, or a client id.
Step = Callable[[int, Callable[[], list[Message]]], list[Message]]


def _direct(address: int, call: Callable[[], list[Message]]) -> list[Message]:
    return call()


#: the collector's thresholds while a round runs (CPython's default is (700, 10, 10))
ROUND_GC_THRESHOLDS = (50_000, 20, 1_000_000_000)
_gc_lock = threading.Lock()
_gc_saved: list[tuple[int, int, int]] = []  # the thresholds to restore, while rounds run


@contextmanager
def _one_process_collector() -> Iterator[None]:
    """The garbage collector's thresholds for a process that hosts every role of a round.

    CPython's full collections walk every live object, and here that is all n clients'
    state: at n = 4,000 they took 44 of a round's 180 s, charged to whichever role happened
    to allocate (the server's time included). A deployed party's process holds only its own
    objects. So while a round runs the young generation is collected every 50,000
    allocations instead of 700 and the old one not at all; the thresholds come back when the
    last running round ends (rounds may nest or run in threads).
    """
    with _gc_lock:
        if not _gc_saved:
            _gc_saved.append(gc.get_threshold())
            gc.set_threshold(*ROUND_GC_THRESHOLDS)
        else:
            _gc_saved.append(_gc_saved[0])
    try:
        yield
    finally:
        with _gc_lock:
            saved = _gc_saved.pop()
            if not _gc_saved:
                gc.set_threshold(*saved)


def random_inputs(n: int, dim: int, rng: Csprng, norm: float = 0.9) -> list[np.ndarray]:
    """``n`` float64 updates of ``dim`` values, each of L2 norm ``norm`` (inside a clip of 1)
    with entries of both signs, drawn from ``rng``."""
    out = []
    for _ in range(n):
        v = rng.random(dim) - 0.5
        v *= norm / max(float(np.linalg.norm(v)), 1e-12)
        out.append(v)
    return out


@dataclass(frozen=True)
class Envelope:
    """One frame in flight, with the routing fields read off the message it encodes.

    An envelope holds either its frame (:meth:`of`) or its message, encoded again each time
    the frame is read (:meth:`held`): the server's n key broadcasts, which share one roster
    of n entries, then cost one roster in memory instead of n frames of n entries each.
    Either way a recipient gets a fresh message decoded from a frame. The router holds only
    the server's and helpers' messages without numpy fields this way, so a role that reuses
    an array it sent cannot change a frame in flight (a role must not mutate anything else
    it has sent: messages are frozen).
    """

    sender: int
    recipient: int
    kind: enum.Enum
    encoded: bytes | None = field(default=None, repr=False)
    message: Message | None = field(default=None, repr=False)
    #: a client's answer to the stage that carries its input (its upload)
    upload: bool = False

    @classmethod
    def of(cls, msg: Message, *, upload: bool = False) -> Envelope:
        """The frame of ``msg``, encoded now."""
        return cls(msg.sender, msg.recipient, msg.KIND, encoded=wire.encode(msg),
                   upload=upload)

    @classmethod
    def held(cls, msg: Message) -> Envelope:
        """``msg`` itself, encoded only when its frame is read."""
        return cls(msg.sender, msg.recipient, msg.KIND, message=msg)

    @property
    def frame(self) -> bytes:
        """The encoded message."""
        if self.encoded is not None:
            return self.encoded
        if self.message is None:
            raise UsageError("an envelope needs a frame or a message")
        return wire.encode(self.message)

    def open(self) -> Message:
        """Decode the frame (a fresh message object)."""
        msg: Message = wire.decode(self.frame)
        return msg


def _holds_arrays(msg: Message) -> bool:
    return any(isinstance(getattr(msg, f.name), np.ndarray) for f in fields(msg))


class Op(enum.Enum):
    """What an adversarial network does to a frame in flight."""

    DELIVER = 1     #: deliver it now (any index: reordering)
    DUPLICATE = 2   #: queue a second copy of it
    DROP = 3        #: lose it
    DELAY = 4       #: hold it until the stage's deadline has passed, then queue it again
    CLOSE = 5       #: the stage's deadline passes now (the index is ignored)


@dataclass(frozen=True)
class NetOp:
    """One network operation; ``index`` picks the frame, modulo what is in flight."""

    op: Op
    index: int = 0


class Router:
    """All roles of one round of ``spec``, joined by a local network.

    Args:
        spec: the protocol.
        config: its round configuration; provisioning fills in any enrolment, and
            :attr:`config` is the result.
        rng: the round's generator (:func:`build_parties` spawns the parties' from it;
            default inputs are drawn from ``rng.spawn("inputs")``).
        inputs: one update per client, or a function ``u -> update`` (called once per client,
            so a driver never needs every input in memory at once); default
            :func:`random_inputs`.
        weights: one weight per client (default 1.0).
        drop_at: client -> index into :attr:`stages` from which it is silent (it never gets
            that stage's message, nor any later one), or that stage's message kind
            (``KIND`` of one of :attr:`stages`).
        start: call ``server.start()`` and queue its requests now.
        step: the wrapper every role invocation goes through (timing, memory sampling).
        keep_encodings: which clients' encoded inputs to snapshot right after ``set_input``
            (masking clients clear theirs once they mask): True for all, so
            :meth:`expected_int_sum` knows the exact sum of any set of contributors, or a set
            of client ids (e.g. the ones that will drop). The others are only kept as one
            running sum, so a lean driver holds one vector instead of n.
        record: keep :attr:`log` (every message delivered) and :attr:`sent` (what each
            address emitted), for tests that inspect them.
        lazy_inputs: give each client its input only just before the stage whose answer
            carries it (``spec.input_stage``), so a driver never holds every input and every
            encoding at once; otherwise every client gets it now.
        server_first: :meth:`flush` delivers a client's upload (its answer to the stage that
            carries its input) to the server at once, so it is summed (and freed) before
            the next client makes its own; every other frame goes oldest first (as every
            frame does without ``server_first``). The server thus takes each other stage's
            answers as one batch, as a deployed server does (Flower's ServerApp pulls a
            stage's replies together), instead of one at a time between the clients' own
            work, which in one process evicted its state from the caches and charged it to
            the server.
        client_kwargs, credentials, helpers, server: as for :func:`build_parties`.
        tamper: ``tamper(message) -> message`` on every message a role emits; what it
            returns goes on the wire (and into :attr:`sent`): a cheating role, a man in the
            middle, or an observer of the moment a message leaves its sender.

    Raises:
        ConfigError: the number of inputs or weights does not match the cohort.
    """

    def __init__(self, spec: ProtocolSpec, config: RoundConfig, rng: Csprng,
                 inputs: Sequence[np.ndarray] | Callable[[int], np.ndarray] | None = None,
                 weights: Sequence[float] | None = None, *,
                 drop_at: Mapping[int, int | enum.Enum] | None = None, start: bool = True,
                 step: Step | None = None, keep_encodings: bool | Iterable[int] = True,
                 record: bool = True, lazy_inputs: bool = False,
                 server_first: bool = False,
                 client_kwargs: Mapping[str, Any] | None = None,
                 credentials: Mapping[int, Mapping[str, Any]] | None = None,
                 helpers: Mapping[int, Party] | None = None,
                 server: ServerCore | None = None,
                 tamper: Callable[[Message], Message] | None = None) -> None:
        n = config.n_clients
        if inputs is not None and not callable(inputs) and len(inputs) != n:
            raise ConfigError(f"got {len(inputs)} inputs for {n} clients")
        if weights is not None and len(weights) != n:
            raise ConfigError(f"got {len(weights)} weights for {n} clients")
        self.parties = build_parties(spec, config, rng, client_kwargs, credentials, helpers,
                                     server)
        self._tamper = tamper
        self.spec, self.config, self.n = spec, self.parties.config, n
        self.server = self.parties.server
        self.helpers = self.parties.helpers
        self.clients = self.parties.clients
        self.stages = spec.client_stages(self.config)
        self._step: Step = step or _direct
        if inputs is None:
            inputs = random_inputs(n, config.dim, rng.spawn("inputs"))
        self._inputs = inputs
        self.weights = [float(w) for w in weights] if weights is not None else [1.0] * n
        kinds, drop_at = [cls.KIND for cls in self.stages], dict(drop_at or {})
        unknown = {u: s for u, s in drop_at.items() if isinstance(s, enum.Enum) and s not in kinds}
        if unknown:
            raise ConfigError(f"drop_at names kinds that are not client stages: {unknown}; "
                              f"the stages are {[k.name for k in kinds]}")
        self.drop_at: dict[int, int] = {
            u: kinds.index(s) if isinstance(s, enum.Enum) else s for u, s in drop_at.items()}
        bad = {u: s for u, s in self.drop_at.items() if not 0 <= u < n or s < 0}
        if bad:
            raise ConfigError(f"drop_at must map client ids 0..{n - 1} to stage indices >= 0, "
                              f"got {bad}")
        self.dead: set[int] = set()
        self.pending: list[Envelope] = []
        self.delayed: list[Envelope] = []
        self.received = [0] * n          #: messages delivered to each client so far
        self.up = [0] * n                #: bytes each client sent
        self.down = [0] * n              #: bytes delivered to each client
        self.record = record
        self.log: list[Message] = []                #: every message delivered (if record)
        self.frames: list[bytes] = []               #: the frame of each message in log
        self.sent: dict[int, list[Message]] = {}   #: address -> messages it emitted (if record)
        self.errors: list[BaseException] = []     #: what flush()/run() swallowed
        if keep_encodings is True:
            tracked = set(range(n))
        elif keep_encodings is False:
            tracked = set()
        else:
            tracked = set(keep_encodings)
        #: clients whose encoding is only in :attr:`untracked_total`
        self.untracked: set[int] = set()
        self.untracked_total = np.zeros(config.dim + 1, np.int64)
        self.encoded: list[np.ndarray | None] = [None] * n
        self._tracked = tracked
        self._given: set[int] = set()
        self.server_first = server_first
        self._upload_stage = spec.input_stage(self.config)
        self.input_stage = self._upload_stage if lazy_inputs else 0
        if not lazy_inputs:
            for u in range(n):
                self._give_input(u)
        if start:
            self.start()

    def _give_input(self, u: int) -> None:
        """``set_input`` on client ``u`` (once), then snapshot what it encoded."""
        if u in self._given:
            return
        self._given.add(u)
        c = self.clients[u]
        x, w = self.input_of(u), self.weights[u]
        self._step(u, lambda: _set_input(c, x, w))
        enc = getattr(c, "encoded", None)
        if enc is None:
            return
        if u in self._tracked:
            self.encoded[u] = np.array(enc, copy=True)
        else:
            self.untracked_total += self.config.encoding.centre(enc)
            self.untracked.add(u)

    # -- addressing ----------------------------------------------------------------------
    def input_of(self, u: int) -> np.ndarray:
        """Client ``u``'s update (recomputed if ``inputs`` was a function)."""
        if callable(self._inputs):
            return self._inputs(u)
        return self._inputs[u]

    @property
    def inputs(self) -> list[np.ndarray]:
        """Every client's update."""
        return [self.input_of(u) for u in range(self.n)]

    def party(self, address: int) -> Party:
        """The role at ``address``."""
        return self.parties.party(address)

    def silent(self, u: int) -> bool:
        """Whether the role at address ``u`` would not get its next message (a client past
        its ``drop_at`` stage, or any role killed)."""
        stage = self.drop_at.get(u)
        return u in self.dead or (stage is not None and self.received[u] >= stage)

    def kill(self, u: int) -> None:
        """The role at address ``u`` (a client, or a helper such as the decryptor) drops now
        and for good: nothing more reaches it.

        Raises:
            UsageError: no role has that address.
        """
        self.party(u)
        self.dead.add(u)

    # -- the wire ------------------------------------------------------------------------
    def _emit(self, sender: int, msgs: Iterable[Message], upload: bool = False,
              into: list[Envelope] | None = None) -> list[Message]:
        """What ``sender`` sends: tampered, recorded and, unless ``into`` is None, encoded
        into envelopes appended to ``into``. Runs inside the sender's timed step, so the
        encoding is charged to the role that sends, as it is in a deployment."""
        out = list(msgs)
        if self._tamper is not None:
            out = [self._tamper(m) for m in out]
        if self.record:
            self.sent.setdefault(sender, []).extend(out)
        if into is None:
            return out
        for m in out:
            if 0 <= sender < self.n:
                env = Envelope.of(m, upload=upload)
                self.up[sender] += len(env.frame)
            elif _holds_arrays(m):  # a role may write into an array after sending it
                env = Envelope.of(m)
            else:
                # The server's and helpers' other frames are held as messages and encoded
                # again when delivered (n key broadcasts share one roster: held, they cost
                # one roster in memory, not n), so this encoding is only the sender's cost.
                wire.encode(m)
                env = Envelope.held(m)
            into.append(env)
        return out

    def _sends(self, sender: int, call: Callable[[], Iterable[Message]]) -> list[Message]:
        """Run ``call`` as ``sender``'s timed step and queue what it sends."""
        envs: list[Envelope] = []
        out = self._step(sender, lambda: self._emit(sender, call(), into=envs))
        self.pending.extend(envs)
        return out

    def start(self) -> list[Message]:
        """Open the round: queue the server's first requests."""
        return self._sends(SERVER, self.server.start)

    def close(self) -> list[Message]:
        """The stage's deadline passed; delayed frames come back into flight behind whatever
        the server sends next, which is queued and returned."""
        out = self._sends(SERVER, self.server.close_round)
        self.pending.extend(self.delayed)
        self.delayed.clear()
        return out

    def inject(self, msg: Message) -> None:
        """Queue a (possibly forged) message as if it were on the wire."""
        self.pending.append(Envelope.of(msg))

    def take(self, where: Callable[[Envelope], bool]) -> Envelope | None:
        """Remove and return the first pending frame that ``where`` selects (hold it back)."""
        for i, env in enumerate(self.pending):
            if where(env):
                return self.pending.pop(i)
        return None

    def find(self, where: Callable[[Envelope], bool]) -> int | None:
        """The index of the first pending frame that ``where`` selects."""
        return next((i for i, env in enumerate(self.pending) if where(env)), None)

    def duplicate(self, index: int) -> None:
        """Put a second copy of a pending frame at the end of the queue."""
        self.pending.append(self.pending[index])

    def drop(self, index: int) -> Envelope:
        """Lose a pending frame."""
        return self.pending.pop(index)

    def delay(self, index: int) -> None:
        """Hold a pending frame back until the stage's deadline has passed (:meth:`close`)."""
        self.delayed.append(self.pending.pop(index))

    def send(self, msg: Message | Envelope, to: int | None = None, *,
             queue: bool = True) -> list[Message]:
        """Deliver one message now (through the codec), to its recipient or to ``to``;
        ignores drops. Returns (and queues) what the role answers; with ``queue=False`` the
        answers are only returned (and recorded in :attr:`sent`): the caller carries them
        on, e.g. a test that plays one role's network by hand. Errors propagate."""
        env = msg if isinstance(msg, Envelope) else Envelope.of(msg)
        address = env.recipient if to is None else to
        party = self.party(address)
        if 0 <= address < self.n and self.received[address] >= self.input_stage:
            self._give_input(address)
        frame = env.frame  # a held frame is encoded here again (its sender paid once)
        envs: list[Envelope] = []

        def handle() -> list[Message]:  # the recipient's step: decode, act, encode
            decoded: Message = wire.decode(frame)  # a frame that does not decode: not counted
            upload = False
            if 0 <= address < self.n:
                upload = self.received[address] == self._upload_stage
                self.received[address] += 1
                self.down[address] += len(frame)
            if self.record:
                self.log.append(decoded)
                self.frames.append(frame)
            return self._emit(address, party.receive(decoded), upload,
                              envs if queue else None)

        out = self._step(address, handle)
        self.pending.extend(envs)
        return out

    def deliver(self, index: int = 0) -> list[Message]:
        """Deliver the pending frame at ``index``; a frame for a silent client is lost.
        Errors of the receiving role propagate (the frame is consumed either way)."""
        env = self.pending.pop(index)
        if self.silent(env.recipient):
            return []
        return self.send(env)

    def apply(self, ops: Iterable[NetOp], *,
              swallow: type[BaseException] | tuple[type[BaseException], ...] = ()) -> None:
        """Run a schedule of network operations (each ``index`` modulo the frames in flight;
        operations on an empty network are skipped). Errors of type ``swallow`` are recorded
        in :attr:`errors`."""
        for op in ops:
            try:
                if op.op is Op.CLOSE:
                    if not self.finished:
                        self.close()
                    continue
                if not self.pending:
                    continue
                i = op.index % len(self.pending)
                if op.op is Op.DELIVER:
                    self.deliver(i)
                elif op.op is Op.DUPLICATE:
                    self.duplicate(i)
                elif op.op is Op.DROP:
                    self.drop(i)
                else:
                    self.delay(i)
            except swallow as exc:
                self.errors.append(exc)

    # -- whole rounds --------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        """Whether the server has a result."""
        return bool(self.server.finished)

    @property
    def stage_names(self) -> tuple[str, ...]:
        """:attr:`stages` by name (``KIND.name`` of each message class)."""
        return stage_names(self.stages)

    def flush(self, *, swallow: type[BaseException] | tuple[type[BaseException], ...] = ()) -> None:
        """Deliver, oldest first, until nothing is in flight. Errors of type ``swallow``
        (e.g. LateMessageError) are recorded in :attr:`errors` and the frame is dropped."""
        while self.pending:
            mark = len(self.pending) - 1  # what the delivery queues lands at mark and after
            self._deliver_swallowing(0, swallow)
            if not self.server_first:
                continue
            j = mark  # deliver an upload to the server at once
            while j < len(self.pending):
                if self.pending[j].recipient < 0 and self.pending[j].upload:
                    self._deliver_swallowing(j, swallow)
                else:
                    j += 1

    def _deliver_swallowing(self, index: int,
                            swallow: type[BaseException] | tuple[type[BaseException], ...]
                            ) -> None:
        try:
            self.deliver(index)
        except swallow as exc:
            self.errors.append(exc)

    def run(self, *, swallow: type[BaseException] | tuple[type[BaseException], ...] = (),
            max_closes: int = 32,
            before_close: Callable[[], None] | None = None) -> AggregateResult:
        """Finish the round the way a driver does: deliver everything in flight, and when
        nothing is left and the server has not finished, close the stage (calling
        ``before_close()`` first, if given). Returns the result.

        Raises:
            SecAggError: whatever a role raises (unless listed in ``swallow``), e.g.
                DropoutError when too few clients remain.
            UsageError: the round stalled (two deadlines in a row moved nothing), or did not
                finish after ``max_closes`` deadlines.
        """
        idle = 0
        with _one_process_collector():
            for _ in range(max_closes):
                self.flush(swallow=swallow)
                if self.finished:
                    return self.server.result()
                if before_close is not None:
                    before_close()
                out: list[Message] = []
                try:
                    out = self.close()
                except swallow as exc:
                    self.errors.append(exc)
                idle = 0 if out or self.pending else idle + 1
                if idle >= 2:
                    raise UsageError("the round stalled: the server neither finished nor "
                                     "asked for anything more (it has aborted, or waits for "
                                     "a role that is gone)")
        raise UsageError(f"the round did not finish after {max_closes} deadlines")

    def run_until(self, done: Callable[[], bool], *, max_steps: int = 100_000) -> None:
        """Deliver oldest first (closing stages when nothing is in flight) until ``done()``.

        Raises:
            UsageError: the round ended (or ran ``max_steps``) before ``done()`` held.
        """
        for _ in range(max_steps):
            if done():
                return
            if self.pending:
                self.deliver(0)
            elif self.finished:
                break
            else:
                self.close()
        if not done():
            raise UsageError("the round ended before the condition held")

    def until(self, kind: enum.Enum | type[Message]) -> list[Message]:
        """Run the round (as :meth:`run_until`) until a frame of ``kind`` (a message kind
        or class) is in flight; return the messages of all such frames, which stay in
        flight, so a test can play a malicious role from there.

        Raises:
            UsageError: the round ended before such a frame was sent.
        """
        want = kind if isinstance(kind, enum.Enum) else kind.KIND
        try:
            self.run_until(lambda: any(env.kind is want for env in self.pending))
        except UsageError:
            raise UsageError(f"the round never sent a {want.name} message") from None
        return [env.open() for env in self.pending if env.kind is want]

    # -- expectations --------------------------------------------------------------------
    def expected_int_sum(self, contributors: Iterable[int]) -> np.ndarray:
        """The exact centred integer sum of these clients' encoded inputs (weight last).

        Raises:
            UsageError: a client exposes no encoding, or encodings were not kept.
        """
        contributors = set(contributors)
        missing = self.untracked - contributors
        if missing:
            raise UsageError(f"the encodings of clients {sorted(missing)[:5]} were not kept "
                             "(keep_encodings), and they are not all among the contributors")
        enc = self.config.encoding
        total = self.untracked_total.copy()
        for u in sorted(contributors - self.untracked):
            e = self.encoded[u]
            if e is None:
                raise UsageError(f"client {u} exposes no encoding to check against")
            total += enc.centre(e)
        return total

    def expected_float_sum(self, contributors: Iterable[int]) -> tuple[np.ndarray, float]:
        """``sum(w * clip(x))`` and ``sum(w)`` over these clients, in float64."""
        clip = self.config.encoding.clip
        total = np.zeros(self.config.dim, np.float64)
        weight = 0.0
        for u in contributors:
            x = np.asarray(self.input_of(u), np.float64)
            norm = float(np.linalg.norm(x))
            if norm > clip:
                x = x * (clip / norm)
            total += self.weights[u] * x
            weight += self.weights[u]
        return total, weight

    def is_exact(self, result: AggregateResult) -> bool | None:
        """Whether ``result.int_sum`` is the exact sum of its contributors' encodings; None
        when that cannot be told (an inexact protocol, noise added on purpose by the decoder,
        or encodings not kept)."""
        if not self.spec.exact or result.int_sum is None or self.config.noise is not None:
            return None
        try:
            want = self.expected_int_sum(result.contributors)
        except UsageError:
            return None
        return bool(np.array_equal(result.int_sum, want))

    def check_result(self, result: AggregateResult, *, slack: float = 1e-3) -> None:
        """Check ``result`` is the sum over its contributors: exactly (integer units) for an
        exact protocol whose clients expose their encoding, and within the stochastic
        rounding error (plus ``slack`` per client for inexact protocols) in float units.

        Raises:
            AssertionError: it is not (this is a test oracle).
        """
        contributors = result.contributors
        if list(contributors) != sorted(set(contributors)):
            raise AssertionError(f"contributors {contributors} are not sorted and distinct")
        if not set(contributors) <= set(range(self.n)):
            raise AssertionError(f"contributors {contributors} are not all clients")
        if len(contributors) < self.spec.min_cohort:
            raise AssertionError(f"a sum of {len(contributors)} clients was released; "
                                 f"min_cohort is {self.spec.min_cohort}")
        if self.spec.exact and result.int_sum is None:
            raise AssertionError("an exact protocol must release int_sum")
        if result.dp_event is None and self.is_exact(result) is False:
            raise AssertionError("the released int_sum is not the exact sum of the "
                                 f"contributors {contributors}' encoded inputs")
        want, weight = self.expected_float_sum(contributors)
        # Stochastic rounding moves each client's coordinate by less than 2^-f.
        tol = len(contributors) * 2.0 ** -self.config.encoding.frac_bits
        if not self.spec.exact:
            tol += slack * max(1, len(contributors))
        err = float(np.max(np.abs(result.sum - want), initial=0.0))
        if err > tol or abs(result.total_weight - weight) > tol:
            raise AssertionError(f"released sum is off by {err:g} (weight by "
                                 f"{abs(result.total_weight - weight):g}); tolerance {tol:g}")


def _set_input(client: ClientCore, x: np.ndarray, w: float) -> list[Message]:
    client.set_input(x, w)
    return []


def aggregate(spec_or_name: ProtocolSpec | str, config: RoundConfig | None,
              inputs: Sequence[np.ndarray], weights: Sequence[float] | None = None,
              rng: Csprng | None = None, *, drop_at: Mapping[int, int] | None = None,
              **config_kw: Any) -> AggregateResult:
    """One whole round in one call: build every role, route until done, return the release.

    Args:
        spec_or_name: the protocol, or its registered name.
        config: the round's config; None builds ``make_config(len(inputs), dim, **config_kw)``.
        inputs: one update per client (all of the same length).
        weights: one weight per client (default 1.0; they must fit the encoding's max_weight).
        rng: the round's generator (default: fresh from the OS).
        drop_at: client -> stage index from which it is silent (simulated dropouts).

    Returns:
        The :class:`AggregateResult` the decoding party released.

    Raises:
        ConfigError: bad parameters (before any work).
        DropoutError: too few clients remained to release a sum.
        ProtocolError: a role refused a message.
    """
    from protocols.registry import get

    spec = get(spec_or_name) if isinstance(spec_or_name, str) else spec_or_name
    if len(inputs) == 0:
        raise ConfigError("aggregate needs at least one input")
    dims = {len(x) for x in inputs}
    if len(dims) != 1:
        raise ConfigError(f"every input must have the same length, got lengths {sorted(dims)}")
    if config is None:
        config = spec.make_config(len(inputs), dims.pop(), **config_kw)
    elif config_kw:
        raise UsageError("give either a config or make_config keywords, not both")
    router = Router(spec, config, rng if rng is not None else Csprng(), inputs, weights,
                    drop_at=drop_at, keep_encodings=False, record=False)
    return router.run()

