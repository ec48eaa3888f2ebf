"""plaintext: the baseline. Clients send their encoded update in the clear.

Theory of operation: none is needed; the server sees every update. It exists so benchmarks
and tests compare every protocol against the same encoding, headroom and decoding, and so the
cost of each protection is measured against doing nothing. Threat model: none.
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
    ProtocolSpec,
    RoundConfig,
    ServerCore,
    check_header,
    finalize,
    header,
)
from protocols.policy import ClientPolicy
from secagg import wire
from secagg.encoding import EncodingConfig
from secagg.errors import LateMessageError, ProtocolError, UsageError
from secagg.rng import Csprng

__all__ = ["SPEC", "PlaintextClient", "PlaintextServer"]


class Kind(enum.Enum):
    INPUT_REQUEST = 1
    PLAIN_INPUT = 2


class ClientState(enum.Enum):
    WAITING = 1
    DONE = 2
    ABORTED = 3


class ServerState(enum.Enum):
    COLLECTING = 1
    FINISHED = 2
    ABORTED = 3


class Event(enum.Enum):
    DEADLINE = 1


CLIENT_TRANSITIONS: dict[tuple[ClientState, enum.Enum], ClientState] = {
    (ClientState.WAITING, Kind.INPUT_REQUEST): ClientState.DONE,
}
SERVER_TRANSITIONS: dict[tuple[ServerState, enum.Enum], ServerState] = {
    (ServerState.COLLECTING, Kind.PLAIN_INPUT): ServerState.COLLECTING,
    (ServerState.COLLECTING, Event.DEADLINE): ServerState.FINISHED,
}


@wire.register(0x0101)
@dataclass(frozen=True, slots=True)
class InputRequest(Message):
    KIND: ClassVar[enum.Enum] = Kind.INPUT_REQUEST


@wire.register(0x0102)
@dataclass(frozen=True, slots=True)
class PlainInput(Message):
    encoded: np.ndarray
    KIND: ClassVar[enum.Enum] = Kind.PLAIN_INPUT


class PlaintextClient(ClientCore):
    """A client that sends its encoded update in the clear.

    Args:
        policy: the weakest config this client accepts (:class:`~protocols.policy.ClientPolicy`;
            a policy that does not allow ``"plaintext"`` refuses every plaintext round).

    Raises:
        PolicyError: the config is weaker than ``policy``.
    """

    def __init__(self, config: RoundConfig, client_id: int, rng: Csprng, *,
                 policy: ClientPolicy | None = None) -> None:
        if policy is not None:
            policy.check("plaintext", config)
        self.config, self.client_id, self._rng = config, client_id, rng
        self.state = ClientState.WAITING
        self.encoded: np.ndarray | None = None

    @property
    def aborted(self) -> bool:
        return self.state is ClientState.ABORTED

    def set_input(self, update: np.ndarray, weight: float = 1.0) -> None:
        if len(update) != self.config.dim:
            raise UsageError(f"update has {len(update)} values, the round expects {self.config.dim}")
        self.encoded = self.config.encoding.encode(update, self._rng, weight)

    def receive(self, msg: Message) -> list[Message]:
        try:
            nxt = transition(CLIENT_TRANSITIONS, self.state, msg.KIND)
            check_header(msg, InputRequest, self.config, sender=SERVER, recipient=self.client_id)
        except ProtocolError:
            self.state = ClientState.ABORTED
            raise
        if self.encoded is None:
            raise UsageError("set_input() must be called before the input is requested")
        self.state = nxt
        return [PlainInput(**header(self.config, self.client_id, SERVER), encoded=self.encoded)]


class PlaintextServer(ServerCore):
    def __init__(self, config: RoundConfig, rng: Csprng) -> None:
        self.config, self._rng = config, rng
        self.state = ServerState.COLLECTING
        self._acc = np.zeros(config.dim + 1, config.encoding.dtype)
        self._seen: set[int] = set()
        self._result: AggregateResult | None = None

    @property
    def finished(self) -> bool:
        return self.state is ServerState.FINISHED

    def start(self) -> list[Message]:
        return [InputRequest(**header(self.config, SERVER, u)) for u in range(self.config.n_clients)]

    def receive(self, msg: Message) -> list[Message]:
        if self.state is not ServerState.COLLECTING:
            raise LateMessageError(f"{type(msg).__name__} arrived after the round closed")
        transition(SERVER_TRANSITIONS, self.state, msg.KIND)
        m = check_header(msg, PlainInput, self.config, sender=None, recipient=SERVER)
        if m.sender in self._seen:
            raise ProtocolError(f"client {m.sender} sent its input twice")
        if m.encoded.dtype != self._acc.dtype or m.encoded.shape != self._acc.shape:
            raise ProtocolError(f"input must be {self._acc.size} values of {self._acc.dtype}, got "
                                f"{m.encoded.size} of {m.encoded.dtype}")
        np.add(self._acc, m.encoded, out=self._acc)
        self._seen.add(m.sender)
        if len(self._seen) == self.config.n_clients:
            return self.close_round()
        return []

    def close_round(self) -> list[Message]:
        if self.state is not ServerState.COLLECTING:
            return []
        nxt = transition(SERVER_TRANSITIONS, self.state, Event.DEADLINE)
        try:
            self._result = finalize(self.config, self._acc, tuple(sorted(self._seen)), self._rng)
        except ProtocolError:
            self.state = ServerState.ABORTED
            raise
        self.state = nxt
        return []

    def result(self) -> AggregateResult:
        if self._result is None:
            raise UsageError(f"no result: the round is {self.state.name}")
        return self._result


def make_config(n_clients: int, dim: int, **kw: Any) -> RoundConfig:
    kw.setdefault("encoding", EncodingConfig(max_clients=max(n_clients, 1)))
    return RoundConfig(n_clients=n_clients, dim=dim, **kw)


SPEC = ProtocolSpec(
    name="plaintext",
    summary="no protection: the baseline for benchmarks and tests",
    config_factory=make_config,
    client=PlaintextClient,
    server=PlaintextServer,
    client_table=lambda config: CLIENT_TRANSITIONS,
    server_table=lambda config: SERVER_TRANSITIONS,
    input_kind=Kind.INPUT_REQUEST,
)
