"""twoshare: two-server additive secret sharing, a protocol written outside secagg.

Theory of operation (the two-server model of Prio, Corrigan-Gibbs and Boneh 2017, without
the validity proofs). Each client splits its encoded update x (in Z_2^b) into two uniformly
random additive shares, r and x - r, sends x - r to the server and r to a helper (address
``HELPER``). Either share alone is uniform, so neither party learns anything about x as long
as they do not collude. When the server's deadline passes it asks the helper for the sum of
the helper's shares over exactly the clients whose server share it holds; the helper answers
once, and the server adds the two sums: sum(x - r) + sum(r) = sum(x). A client that drops
before answering is in neither sum. The helper refuses a request naming a client whose share
it lacks (and keeps waiting); a server whose helper never answers aborts at its deadline.

Threat model: honest-but-curious server and helper that do not collude. Nothing here is
verified: a malicious client can send any share (no proofs), and a colluding pair sees all.

Registered with secagg by this package's entry point (group ``secagg.protocols``)::

    [project.entry-points."secagg.protocols"]
    twoshare = "secagg_example_protocol:SPEC"
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from protocols._machine import transition
from protocols.base import (
    SERVER,
    AggregateResult,
    ClientCore,
    Message,
    Party,
    ProtocolSpec,
    RoundConfig,
    ServerCore,
    check_header,
    finalize,
    header,
)
from secagg import wire
from secagg.encoding import EncodingConfig
from secagg.errors import DropoutError, LateMessageError, ProtocolError, UsageError
from secagg.rng import Csprng

__all__ = ["HELPER", "SPEC", "TwoShareClient", "TwoShareHelper", "TwoShareServer"]

#: the helper's address (SERVER is -1, DECRYPTOR -2)
HELPER = -3


class Kind(enum.Enum):
    INPUT_REQUEST = 1
    SERVER_SHARE = 2
    HELPER_SHARE = 3
    SUM_REQUEST = 4
    HELPER_SUM = 5


class Event(enum.Enum):
    DEADLINE = 1


ClientState = enum.Enum("ClientState", "WAITING DONE ABORTED")
ServerState = enum.Enum("ServerState", "COLLECTING AWAIT_HELPER FINISHED ABORTED")
HelperState = enum.Enum("HelperState", "COLLECTING RELEASED ABORTED")

CLIENT_TRANSITIONS: dict[tuple[Any, enum.Enum], Any] = {
    (ClientState.WAITING, Kind.INPUT_REQUEST): ClientState.DONE,
}
SERVER_TRANSITIONS: dict[tuple[Any, enum.Enum], Any] = {
    (ServerState.COLLECTING, Kind.SERVER_SHARE): ServerState.COLLECTING,
    (ServerState.COLLECTING, Event.DEADLINE): ServerState.AWAIT_HELPER,
    (ServerState.AWAIT_HELPER, Kind.HELPER_SUM): ServerState.FINISHED,
    (ServerState.AWAIT_HELPER, Event.DEADLINE): ServerState.ABORTED,
}
HELPER_TRANSITIONS: dict[tuple[Any, enum.Enum], Any] = {
    (HelperState.COLLECTING, Kind.HELPER_SHARE): HelperState.COLLECTING,
    (HelperState.COLLECTING, Kind.SUM_REQUEST): HelperState.RELEASED,
}


@wire.register(0x7E01)
@dataclass(frozen=True, slots=True)
class InputRequest(Message):
    KIND: ClassVar[enum.Enum] = Kind.INPUT_REQUEST


@wire.register(0x7E02)
@dataclass(frozen=True, slots=True)
class ServerShare(Message):
    share: np.ndarray
    KIND: ClassVar[enum.Enum] = Kind.SERVER_SHARE


@wire.register(0x7E03)
@dataclass(frozen=True, slots=True)
class HelperShare(Message):
    share: np.ndarray
    KIND: ClassVar[enum.Enum] = Kind.HELPER_SHARE


@wire.register(0x7E04)
@dataclass(frozen=True, slots=True)
class SumRequest(Message):
    contributors: tuple[int, ...]
    KIND: ClassVar[enum.Enum] = Kind.SUM_REQUEST


@wire.register(0x7E05)
@dataclass(frozen=True, slots=True)
class HelperSum(Message):
    total: np.ndarray
    KIND: ClassVar[enum.Enum] = Kind.HELPER_SUM


def _uniform(config: RoundConfig, rng: Csprng) -> np.ndarray:
    dtype = np.dtype(config.encoding.dtype)
    raw = rng.bytes((config.dim + 1) * dtype.itemsize)
    return np.frombuffer(raw, dtype=dtype.newbyteorder("<")).astype(dtype)


class TwoShareClient(ClientCore):
    """Splits its encoded input into a server share and a helper share."""

    def __init__(self, config: RoundConfig, client_id: int, rng: Csprng) -> None:
        self.config, self.client_id, self._rng = config, client_id, rng
        self.state: Any = ClientState.WAITING
        self.encoded: np.ndarray | None = None

    @property
    def aborted(self) -> bool:
        return self.state is ClientState.ABORTED

    def set_input(self, update: np.ndarray, weight: float = 1.0) -> None:
        if len(update) != self.config.dim:
            raise UsageError(f"update has {len(update)} values, the round expects "
                             f"{self.config.dim}")
        self.encoded = self.config.encoding.encode(update, self._rng, weight)

    def receive(self, msg: Message) -> list[Message]:
        try:
            nxt = transition(CLIENT_TRANSITIONS, self.state, msg.KIND)
            check_header(msg, InputRequest, self.config, sender=SERVER,
                         recipient=self.client_id)
        except ProtocolError:
            self.state = ClientState.ABORTED
            raise
        if self.encoded is None:
            raise UsageError("set_input() must be called before the input is requested")
        r = _uniform(self.config, self._rng)
        mine = self.encoded - r  # wraps modulo 2^b: uint arithmetic
        self.state = nxt
        return [ServerShare(**header(self.config, self.client_id, SERVER), share=mine),
                HelperShare(**header(self.config, self.client_id, HELPER), share=r)]


def _check_share(share: np.ndarray, config: RoundConfig) -> None:
    if share.dtype != config.encoding.dtype or share.shape != (config.dim + 1,):
        raise ProtocolError(f"a share must be {config.dim + 1} values of "
                            f"{np.dtype(config.encoding.dtype)}, got {share.size} of "
                            f"{share.dtype}")


class TwoShareServer(ServerCore):
    """Sums server shares; at the deadline, asks the helper for the matching sum."""

    def __init__(self, config: RoundConfig, rng: Csprng) -> None:
        self.config, self._rng = config, rng
        self.state: Any = ServerState.COLLECTING
        self._acc = np.zeros(config.dim + 1, config.encoding.dtype)
        self._seen: set[int] = set()
        self._asked: tuple[int, ...] = ()
        self._result: AggregateResult | None = None

    @property
    def finished(self) -> bool:
        return self.state is ServerState.FINISHED

    def start(self) -> list[Message]:
        return [InputRequest(**header(self.config, SERVER, u))
                for u in range(self.config.n_clients)]

    def receive(self, msg: Message) -> list[Message]:
        if msg.KIND is Kind.SERVER_SHARE and self.state is not ServerState.COLLECTING:
            raise LateMessageError(f"{type(msg).__name__} arrived after collection closed")
        nxt = transition(SERVER_TRANSITIONS, self.state, msg.KIND)
        if msg.KIND is Kind.SERVER_SHARE:
            m = check_header(msg, ServerShare, self.config, sender=None, recipient=SERVER)
            if m.sender in self._seen:
                raise ProtocolError(f"client {m.sender} sent its share twice")
            _check_share(m.share, self.config)
            np.add(self._acc, m.share, out=self._acc)
            self._seen.add(m.sender)
            return []
        h = check_header(msg, HelperSum, self.config, sender=HELPER, recipient=SERVER)
        _check_share(h.total, self.config)
        ring = self._acc + h.total
        try:
            self._result = finalize(self.config, ring, self._asked, self._rng)
        except ProtocolError:
            self.state = ServerState.ABORTED
            raise
        self.state = nxt
        return []

    def close_round(self) -> list[Message]:
        if self.state is ServerState.COLLECTING:
            nxt = transition(SERVER_TRANSITIONS, self.state, Event.DEADLINE)
            if len(self._seen) < self.config.release_floor:
                self.state = ServerState.ABORTED
                raise DropoutError(f"only {len(self._seen)} clients sent a share; at least "
                                   f"{self.config.release_floor} are needed")
            self.state = nxt
            self._asked = tuple(sorted(self._seen))
            return [SumRequest(**header(self.config, SERVER, HELPER),
                               contributors=self._asked)]
        if self.state is ServerState.AWAIT_HELPER:
            self.state = transition(SERVER_TRANSITIONS, self.state, Event.DEADLINE)
            raise DropoutError("the helper did not answer before the deadline")
        return []

    def result(self) -> AggregateResult:
        if self._result is None:
            raise UsageError(f"no result: the round is {self.state.name}")
        return self._result


class TwoShareHelper(Party):
    """Holds the helper shares; sums them once, over the clients the server names."""

    def __init__(self, config: RoundConfig, rng: Csprng) -> None:
        self.config = config
        self.state: Any = HelperState.COLLECTING
        self._shares: dict[int, np.ndarray] = {}

    def receive(self, msg: Message) -> list[Message]:
        nxt = transition(HELPER_TRANSITIONS, self.state, msg.KIND)
        if msg.KIND is Kind.HELPER_SHARE:
            m = check_header(msg, HelperShare, self.config, sender=None, recipient=HELPER)
            if m.sender in self._shares:
                raise ProtocolError(f"client {m.sender} sent its helper share twice")
            _check_share(m.share, self.config)
            self._shares[m.sender] = m.share
            return []
        req = check_header(msg, SumRequest, self.config, sender=SERVER, recipient=HELPER)
        ids = req.contributors
        if list(ids) != sorted(set(ids)) or len(ids) < self.config.release_floor:
            raise ProtocolError(f"a sum request must name at least "
                                f"{self.config.release_floor} distinct clients in order")
        missing = [u for u in ids if u not in self._shares]
        if missing:
            raise ProtocolError(f"no helper share from clients {missing[:5]}")
        total = np.zeros(self.config.dim + 1, self.config.encoding.dtype)
        for u in ids:
            np.add(total, self._shares[u], out=total)
        self._shares.clear()
        self.state = nxt
        return [HelperSum(**header(self.config, HELPER, SERVER), total=total)]


def make_config(n_clients: int, dim: int, **kw: Any) -> RoundConfig:
    """A validated round config; the encoding's ``max_clients`` defaults to n."""
    kw.setdefault("encoding", EncodingConfig(max_clients=max(n_clients, 1)))
    return RoundConfig(n_clients=n_clients, dim=dim, **kw)


SPEC = ProtocolSpec(
    name="twoshare",
    summary="two-server additive secret sharing (example third-party protocol)",
    config_factory=make_config,
    client=TwoShareClient,
    server=TwoShareServer,
    helpers=lambda config, rng: {HELPER: TwoShareHelper(config, rng.spawn("helper"))},
    client_table=lambda config: CLIENT_TRANSITIONS,
    server_table=lambda config: SERVER_TRANSITIONS,
)
