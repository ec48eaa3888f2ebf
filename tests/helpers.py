"""A fake network between the sans-IO roles of one round (h11's ``ConnectionPair``, for N).

:class:`Router` builds every role of a protocol from its :class:`~protocols.base.ProtocolSpec`
(the server, the clients, and the helper roles such as a decryptor), and moves messages
between them by recipient. Every message crosses the wire codec: what is queued is the frame
(``secagg.wire.encode``), what a role receives is ``secagg.wire.decode`` of that frame, so a
test sees exactly what a real transport would carry and nothing else.

A test drives the round by hand or lets :meth:`Router.run` do it. It can:

- make a client fall silent from its i-th incoming message on (``drop_at``, the same meaning
  as :func:`fl.simulation.run_round`) or from now on (:meth:`Router.kill`);
- deliver any pending frame, not only the oldest (reordering), deliver one twice
  (:meth:`Router.duplicate`), hold one back (:meth:`Router.take`), or inject a forged message
  (:meth:`Router.inject` / :meth:`Router.send`);
- tell the server that the stage's deadline passed (:meth:`Router.close`).

The router snapshots each client's encoded input right after ``set_input`` (masking clients
clear theirs once they mask), so :meth:`Router.expected_int_sum` knows the exact integer sum of
any set of contributors.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from protocols.base import (
    SERVER,
    AggregateResult,
    ClientCore,
    Message,
    Party,
    ProtocolSpec,
    stages_of,
)
from secagg import wire
from secagg.rng import Csprng

__all__ = [
    "Envelope",
    "Router",
    "assert_messages_equal",
    "messages_equal",
    "random_inputs",
    "server_state",
]


def random_inputs(n: int, dim: int, rng: Csprng, norm: float = 0.9) -> list[np.ndarray]:
    """``n`` float64 updates of ``dim`` values, each with L2 norm ``norm`` (inside a clip of 1)
    and entries of both signs, drawn from a test CSPRNG."""
    out = []
    for _ in range(n):
        v = rng.random(dim) - 0.5
        v *= norm / max(float(np.linalg.norm(v)), 1e-12)
        out.append(v)
    return out


def server_state(server: Any) -> Any:
    """The server's stage/state enum, whatever the protocol calls it (None if it has none)."""
    for name in ("stage", "state"):
        if hasattr(server, name):
            return getattr(server, name)
    return None


def messages_equal(a: Any, b: Any) -> bool:
    """Structural equality of messages (dataclasses, tuples, bytes, numpy arrays)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and bool(np.array_equal(a, b))
    if dataclasses.is_dataclass(a):
        return all(messages_equal(getattr(a, f.name), getattr(b, f.name))
                   for f in dataclasses.fields(a))
    if isinstance(a, tuple):
        return len(a) == len(b) and all(messages_equal(x, y) for x, y in zip(a, b))
    return bool(a == b)


def assert_messages_equal(a: Any, b: Any) -> None:
    assert messages_equal(a, b), f"messages differ:\n{a!r}\n{b!r}"


@dataclass(frozen=True)
class Envelope:
    """One frame in flight, with the routing fields read off the message it encodes."""

    frame: bytes
    sender: int
    recipient: int
    kind: Any

    @classmethod
    def of(cls, msg: Message) -> Envelope:
        return cls(wire.encode(msg), msg.sender, msg.recipient, msg.KIND)

    def open(self) -> Message:
        msg: Message = wire.decode(self.frame)
        return msg


class Router:
    """All roles of one round of ``spec``, joined by a fake network.

    Args:
        spec: the protocol.
        config: its round configuration (``spec.make_config(...)``); ``spec.provision`` fills
            in any enrolment, and :attr:`config` is the result.
        rng: every role gets a child generator of it, spawned under the same labels as
            :func:`fl.simulation.run_round` uses.
        inputs: one update per client (default: :func:`random_inputs`).
        weights: one weight per client (default 1.0).
        drop_at: client -> index into :attr:`stages` (``stages_of(spec, config)``) from which
            it is silent.
        start: call ``server.start()`` and queue its requests now.
    """

    def __init__(self, spec: ProtocolSpec, config: Any, rng: Csprng,
                 inputs: Sequence[np.ndarray] | None = None,
                 weights: Sequence[float] | None = None, *,
                 drop_at: Mapping[int, int] | None = None, start: bool = True) -> None:
        n = config.n_clients
        # Enrolment first (the active variants' signing keys), as a simulation does it.
        config, credentials = spec.provision(config, rng.spawn("enrolment"))
        self.spec, self.config, self.n = spec, config, n
        self.stages = stages_of(spec, config)
        self.server = spec.server(config, rng.spawn("server"))
        self.helpers: dict[int, Party] = dict(spec.helpers(config, rng.spawn("helpers")))
        self.clients: list[ClientCore] = [
            spec.client(config, u, rng.spawn(f"client/{u}"), **credentials.get(u, {}))
            for u in range(n)
        ]
        self.inputs = list(inputs) if inputs is not None else random_inputs(
            n, config.dim, rng.spawn("inputs"))
        self.weights = list(weights) if weights is not None else [1.0] * n
        self.drop_at = dict(drop_at or {})
        self.dead: set[int] = set()
        self.pending: list[Envelope] = []
        self.received = [0] * n          # messages delivered to each client so far
        self.log: list[Message] = []     # every message delivered, in order (decoded)
        self.sent: dict[int, list[Message]] = {}  # address -> messages it emitted
        self.errors: list[BaseException] = []  # what flush()/run() swallowed
        self.encoded: list[np.ndarray | None] = []
        for u, c in enumerate(self.clients):
            c.set_input(self.inputs[u], self.weights[u])
            enc = getattr(c, "encoded", None)
            self.encoded.append(None if enc is None else np.array(enc, copy=True))
        if start:
            self.start()

    # -- addressing ----------------------------------------------------------------------
    def party(self, address: int) -> Party:
        """The role at ``address``."""
        if address >= 0:
            return self.clients[address]
        if address == SERVER:
            return self.server
        return self.helpers[address]

    def silent(self, u: int) -> bool:
        """Whether client ``u`` would not get its next message (dropped or killed)."""
        stage = self.drop_at.get(u)
        return u in self.dead or (stage is not None and self.received[u] >= stage)

    def kill(self, u: int) -> None:
        """Client ``u`` drops now and for good: nothing more reaches it."""
        self.dead.add(u)

    # -- the wire ------------------------------------------------------------------------
    def _queue(self, sender: int, msgs: Iterable[Message]) -> list[Message]:
        out = list(msgs)
        self.sent.setdefault(sender, []).extend(out)
        self.pending.extend(Envelope.of(m) for m in out)
        return out

    def start(self) -> list[Message]:
        return self._queue(SERVER, self.server.start())

    def close(self) -> list[Message]:
        """The stage's deadline passed; queues whatever the server sends next."""
        return self._queue(SERVER, self.server.close_round())

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

    def send(self, msg: Message | Envelope, to: int | None = None) -> list[Message]:
        """Deliver one message now (through the codec), to its recipient or to ``to``;
        ignores drops. Returns (and queues) what the role answers. Errors propagate."""
        env = msg if isinstance(msg, Envelope) else Envelope.of(msg)
        address = env.recipient if to is None else to
        decoded = env.open()
        out = self.party(address).receive(decoded)
        self.log.append(decoded)
        if address >= 0:
            self.received[address] += 1
        return self._queue(address, out)

    def deliver(self, index: int = 0) -> list[Message]:
        """Deliver the pending frame at ``index``; a frame for a silent client is lost.
        Errors of the receiving role propagate (the frame is consumed either way)."""
        env = self.pending.pop(index)
        r = env.recipient
        if r >= 0 and self.silent(r):
            return []
        return self.send(env)

    # -- whole rounds --------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        return bool(self.server.finished)

    def flush(self, *, swallow: type[BaseException] | tuple[type[BaseException], ...] = ()) -> None:
        """Deliver, oldest first, until nothing is in flight. Errors of type ``swallow``
        (e.g. LateMessageError) are recorded in :attr:`errors` and the frame is dropped."""
        while self.pending:
            try:
                self.deliver(0)
            except swallow as exc:
                self.errors.append(exc)

    def run(self, *, swallow: type[BaseException] | tuple[type[BaseException], ...] = (),
            max_closes: int = 32) -> AggregateResult:
        """Finish the round the way a driver would: deliver everything in flight, and when
        nothing is left and the server has not finished, close the stage. Returns the result.
        Errors propagate unless listed in ``swallow``."""
        for _ in range(max_closes):
            self.flush(swallow=swallow)
            if self.finished:
                return self.server.result()
            self.close()
        raise AssertionError(f"the round did not finish after {max_closes} deadlines")

    def run_until(self, done: Callable[[], bool]) -> None:
        """Deliver oldest first (closing stages when nothing is in flight) until ``done()``."""
        for _ in range(10_000):
            if done():
                return
            if self.pending:
                self.deliver(0)
            elif self.finished:
                break
            else:
                self.close()
        if not done():
            raise AssertionError("the round ended before the condition held")

    # -- expectations --------------------------------------------------------------------
    def expected_int_sum(self, contributors: Iterable[int]) -> np.ndarray:
        """The exact centred integer sum of these clients' encoded inputs."""
        enc = self.config.encoding
        total = np.zeros(self.config.dim + 1, np.int64)
        for u in contributors:
            e = self.encoded[u]
            if e is None:
                raise AssertionError(f"client {u} exposes no encoding to check against")
            total += enc.centre(e)
        return total

    def expected_float_sum(self, contributors: Iterable[int]) -> tuple[np.ndarray, float]:
        """sum of w*clip(x) and sum of w over these clients, in float64."""
        clip = self.config.encoding.clip
        total = np.zeros(self.config.dim, np.float64)
        weight = 0.0
        for u in contributors:
            x = np.asarray(self.inputs[u], np.float64)
            norm = float(np.linalg.norm(x))
            if norm > clip:
                x = x * (clip / norm)
            total += self.weights[u] * x
            weight += self.weights[u]
        return total, weight

    def check_result(self, result: AggregateResult, *, slack: float = 1e-3) -> None:
        """Assert ``result`` is the sum over its contributors: exactly (integer units) for an
        exact protocol whose clients expose their encoding, and within the stochastic
        rounding error (plus ``slack`` for inexact protocols) in float units."""
        contributors = result.contributors
        assert list(contributors) == sorted(set(contributors))
        assert set(contributors) <= set(range(self.n))
        exact = self.spec.exact and all(self.encoded[u] is not None for u in contributors)
        if self.spec.exact:
            assert result.int_sum is not None, "an exact protocol must release int_sum"
        if exact and result.dp_event is None:
            np.testing.assert_array_equal(result.int_sum, self.expected_int_sum(contributors))
        want, weight = self.expected_float_sum(contributors)
        # Stochastic rounding moves each client's coordinate by less than 2^-f.
        tol = len(contributors) * 2.0 ** -self.config.encoding.frac_bits
        if not self.spec.exact:
            tol += slack * max(1, len(contributors))
        assert np.max(np.abs(result.sum - want), initial=0.0) <= tol
        assert abs(result.total_weight - weight) <= tol

