"""The one interface every protocol implements, and what the roles share.

Every protocol is a set of sans-IO roles: plain objects that take a message and give
messages back. They never touch sockets, threads or clocks; a driver (the in-process
simulator, the Flower adapter, the benchmark) moves messages and tells the server when a
stage's deadline has passed::

    spec = protocols.get("secagg+")
    config = spec.make_config(n_clients=100, dim=10_000)
    server = spec.server(config, rng)
    clients = [spec.client(config, i, rng.spawn(f"client{i}")) for i in range(100)]
    helpers = spec.helpers(config, rng)          # e.g. {DECRYPTOR: decryptor} for ckks
    outbox = server.start()                      # then route: recipient -> party.receive(msg)
    ...
    server.close_round()                         # the deadline passed: who is missing dropped
    server.result()                              # AggregateResult, once finished

Addresses are ints: clients are ``0 .. n_clients-1``; :data:`SERVER` and :data:`DECRYPTOR`
are negative. Every message carries the protocol version, the round and both addresses, and
every role checks them before anything else.
"""

from __future__ import annotations

import abc
import dataclasses
import enum
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final, Protocol, TypeVar

import numpy as np

from secagg.encoding import EncodingConfig
from secagg.errors import ConfigError, DropoutError, ProtocolError, RangeCheckError, UsageError
from secagg.rng import Csprng

__all__ = [
    "DECRYPTOR",
    "MIN_CONTRIBUTORS",
    "PROTOCOL_VERSION",
    "SERVER",
    "AggregateResult",
    "ClientCore",
    "Message",
    "Party",
    "ProtocolSpec",
    "RoundConfig",
    "ServerCore",
    "ClientNoise",
    "check_header",
    "check_release",
    "release_floor",
    "finalize",
    "header",
    "stages_of",
    "surviving_noise_event",
    "NoiseHook",
]

PROTOCOL_VERSION: Final = 1
#: no protocol ever releases a sum of fewer contributors: a sum of one client is its input.
#: ``RoundConfig.min_clients`` can raise this floor, never lower it.
MIN_CONTRIBUTORS: Final = 2
SERVER: Final = -1
DECRYPTOR: Final = -2

M = TypeVar("M", bound="Message")


@dataclass(frozen=True, slots=True)
class Message:
    """Fields every message carries. Subclasses are frozen, slotted, and wire-registered."""

    version: int
    round: int
    sender: int
    recipient: int

    KIND: ClassVar[enum.Enum]


class NoiseHook(Protocol):
    """Where central DP plugs in: the party that decodes calls it once, on the integer sum.

    ``add_noise`` returns the noised integer sum and the DP event of what it added; the
    decoding party puts the event in its result (``AggregateResult.dp_event``) and the
    driver charges it. A hook never sees a ledger. :class:`secagg.dp.CentralDiscreteGaussian`
    has this shape.
    """

    def add_noise(self, int_sum: np.ndarray, rng: Csprng) -> tuple[np.ndarray, Any]:
        """Noise ``int_sum`` (int64, fixed-point units); returns (noised, dp_event)."""
        ...


class ClientNoise(Protocol):
    """Distributed DP: what each client adds before masking (e.g.
    :class:`secagg.dp.DistributedDiscreteGaussian` fits this shape)."""

    def client_noise(self, dim: int, rng: Csprng) -> np.ndarray:
        """One client's integer noise vector (int64) of length ``dim``."""
        ...

    def event_for(self, survivors: int, dim: int | None = None) -> Any:
        """The DP event of the noise that ``survivors`` clients put into the sum."""
        ...

    def tail_bound(self, dim: int, n: int, beta: float) -> int:
        """A bound on the largest coordinate of ``n`` clients' summed noise, but for
        probability ``beta``."""
        ...


@dataclass(frozen=True)
class RoundConfig:
    """What every protocol's round needs to know.

    Args:
        n_clients: the cohort size, at least 2 (:data:`MIN_CONTRIBUTORS`); clients are
            addressed ``0 .. n_clients-1``.
        dim: the length of each client's update vector.
        encoding: fixed-point encoding and headroom (its ``max_clients`` must cover n).
        round_id: the round number; messages of other rounds are refused.
        session: bytes that bind every derived key and signature to this run (16 fresh
            random bytes by default, so nothing of one run can be replayed into another;
            every party of a round must use the same value).
        min_clients: the decoded aggregate is refused if fewer clients contributed; the
            floor is ``max(min_clients, MIN_CONTRIBUTORS)`` (see :func:`release_floor`), so a
            value below 2 never lowers it.
        noise: central DP, applied once by the decoding party (None: no noise).

    Raises:
        ConfigError: inconsistent sizes, naming the numbers that would work.
    """

    n_clients: int
    dim: int
    encoding: EncodingConfig = field(default_factory=EncodingConfig)
    round_id: int = 0
    session: bytes = field(default_factory=lambda: os.urandom(16))
    min_clients: int = 1
    noise: NoiseHook | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.n_clients, int) or self.n_clients < MIN_CONTRIBUTORS:
            raise ConfigError(
                f"n_clients must be an integer >= {MIN_CONTRIBUTORS} (a sum of one client is "
                f"that client's input), got {self.n_clients!r}"
            )
        if not isinstance(self.dim, int) or self.dim < 1:
            raise ConfigError(f"dim must be an integer >= 1, got {self.dim!r}")
        if self.n_clients > self.encoding.max_clients:
            raise ConfigError(
                f"{self.n_clients} clients exceed the encoding's max_clients="
                f"{self.encoding.max_clients}; raise max_clients (and re-check its headroom)"
            )
        if not 1 <= self.min_clients <= self.n_clients:
            raise ConfigError(
                f"min_clients must be in 1..{self.n_clients} (n_clients), got {self.min_clients}"
            )
        if self.round_id < 0:
            raise ConfigError(f"round_id must be >= 0, got {self.round_id}")
        if not isinstance(self.session, bytes) or not 1 <= len(self.session) <= 64:
            raise ConfigError("session must be 1 to 64 bytes")


@dataclass(frozen=True)
class AggregateResult:
    """What the decoding party releases for one round.

    Attributes:
        sum: the decoded sum of ``weight * update`` over contributors (float64), noised if
            central DP is configured.
        total_weight: the decoded sum of weights (the contributor count when unweighted).
        contributors: ids of the clients whose input is in the sum.
        int_sum: the released aggregate in fixed-point integer units (int64, weight last);
            None for protocols that are not exact (ckks).
        dp_event: the DP event of the noise in this release: what the central noise hook
            returned, or under distributed DP the event of the client noise that survived
            (:func:`surviving_noise_event`); None without DP. Whoever keeps the budget
            charges it after the round; no role ever sees a ledger.
    """

    sum: np.ndarray
    total_weight: float
    contributors: tuple[int, ...]
    int_sum: np.ndarray | None = None
    dp_event: Any = None

    @property
    def mean(self) -> np.ndarray:
        """The weighted mean ``sum / total_weight``."""
        if self.total_weight <= 0:
            raise UsageError(f"total weight is {self.total_weight}; no mean to take")
        return self.sum / self.total_weight


class Party(abc.ABC):
    """Anything a driver can hand a message to."""

    @abc.abstractmethod
    def receive(self, msg: Message) -> list[Message]:
        """Validate ``msg``, then update state; returns the messages to send."""


class ClientCore(Party):
    """A client's role in one round."""

    client_id: int

    @abc.abstractmethod
    def set_input(self, update: np.ndarray, weight: float = 1.0) -> None:
        """Give the client its update (and weight) before its input is requested."""

    @property
    @abc.abstractmethod
    def aborted(self) -> bool:
        """Whether the client has aborted the round for good."""


class ServerCore(Party):
    """The server's (aggregator's) role in one round."""

    @abc.abstractmethod
    def start(self) -> list[Message]:
        """Open the round; returns the first requests to the clients."""

    @abc.abstractmethod
    def close_round(self) -> list[Message]:
        """The current stage's deadline passed: whoever has not answered has dropped."""

    @property
    @abc.abstractmethod
    def finished(self) -> bool:
        """Whether :meth:`result` is available."""

    @abc.abstractmethod
    def result(self) -> AggregateResult:
        """The decoded aggregate. Raises UsageError before the round has finished."""


@dataclass(frozen=True)
class ProtocolSpec:
    """How to build a protocol's roles. Registered by name in :mod:`protocols.registry`."""

    name: str
    summary: str
    make_config: Callable[..., RoundConfig]
    client: Callable[..., ClientCore]
    server: Callable[[Any, Csprng], ServerCore]
    helpers: Callable[[Any, Csprng], dict[int, Party]] = lambda config, rng: {}
    exact: bool = True
    #: for simulations: (config with any enrolment filled in, {client id: extra keyword
    #: arguments for ``client(...)``, e.g. a long-term signing key}).
    provision: Callable[[Any, Csprng], tuple[Any, dict[int, dict[str, Any]]]] = (
        lambda config, rng: (config, {})
    )
    #: the kinds of message a client receives, in order; a driver that simulates a client
    #: dropping "at stage i" stops delivering from the i-th of these on. A config may refine
    #: it with a ``client_stages`` attribute of its own (see :func:`stages_of`).
    client_stages: tuple[str, ...] = ("INPUT_REQUEST",)


def stages_of(spec: ProtocolSpec, config: Any) -> tuple[str, ...]:
    """The client stages of ``spec`` under ``config`` (the config's own, if it has them)."""
    stages = getattr(config, "client_stages", None)
    return tuple(stages) if stages else spec.client_stages


def check_header(msg: Message, expected_kind: type[M], config: RoundConfig, *,
                 sender: int | None, recipient: int) -> M:
    """Check a message's type, version, round and addresses.

    Args:
        sender: the required sender, or None for "any client in the cohort".

    Raises:
        ProtocolError: on any mismatch (names what was expected).
    """
    if type(msg) is not expected_kind:
        raise ProtocolError(f"expected {expected_kind.__name__}, got {type(msg).__name__}")
    if msg.version != PROTOCOL_VERSION:
        raise ProtocolError(f"protocol version {msg.version}, expected {PROTOCOL_VERSION}")
    if msg.round != config.round_id:
        raise ProtocolError(f"message for round {msg.round}, this is round {config.round_id}")
    if msg.recipient != recipient:
        raise ProtocolError(f"message addressed to {msg.recipient}, not to {recipient}")
    if sender is None:
        if not 0 <= msg.sender < config.n_clients:
            raise ProtocolError(f"sender {msg.sender} is not a client of this cohort "
                                f"(0..{config.n_clients - 1})")
    elif msg.sender != sender:
        raise ProtocolError(f"message from {msg.sender}, expected it from {sender}")
    return msg


def header(config: RoundConfig, sender: int, recipient: int) -> dict[str, int]:
    """The common fields for a new message."""
    return {"version": PROTOCOL_VERSION, "round": config.round_id, "sender": sender,
            "recipient": recipient}


def release_floor(config: RoundConfig) -> int:
    """The fewest contributors a release of ``config`` may have: ``min_clients``, never
    below :data:`MIN_CONTRIBUTORS`."""
    return max(MIN_CONTRIBUTORS, config.min_clients)


def check_release(int_sum: np.ndarray | None, total_weight: float,
                  contributors: int | tuple[int, ...], config: RoundConfig) -> None:
    """The last check before any decoding party releases an aggregate.

    Refuses a sum of fewer than :func:`release_floor` contributors, and a sum that no set of
    that many honest contributors can produce: every encoded coordinate of one client lies
    in ``[-M, M]`` with ``M = ceil(max_weight * max(clip, 1) * 2^frac_bits)``, its weight
    coordinate in ``[0, min(M, max_weight * 2^frac_bits + 1)]``, and distributed noise adds
    at most ``encoding.noise_bound`` to any coordinate of the sum. Call it on the sum before
    central noise is added.

    Args:
        int_sum: the centred sum in fixed-point units, weight last (int or float array), or
            None where the protocol has no exact sum (only the count and weight are checked).
        total_weight: the decoded total weight (``int_sum[-1] / 2^frac_bits``).
        contributors: their ids, or their number.

    Raises:
        DropoutError: fewer contributors than the floor.
        RangeCheckError: a coordinate or the weight outside what they can produce (a forged
            share or input: never a silently wrong sum).
    """
    count = contributors if isinstance(contributors, int) else len(contributors)
    floor = release_floor(config)
    if count < floor:
        raise DropoutError(
            f"only {count} clients contributed; min_clients={config.min_clients} (never "
            f"below {MIN_CONTRIBUTORS}) refuses to release a sum of fewer than {floor}"
        )
    enc = config.encoding
    per_coord = math.ceil(enc.max_weight * max(enc.clip, 1.0) * enc.scale)
    per_weight = min(per_coord, math.floor(enc.max_weight * enc.scale) + 1)
    noise = enc.noise_bound
    hi_w = count * per_weight + noise
    if not -noise <= total_weight * enc.scale <= hi_w:
        raise RangeCheckError(
            f"total weight {total_weight:g} is outside [{-noise / enc.scale:g}, "
            f"{hi_w / enc.scale:g}], what {count} contributors can produce: refusing to release"
        )
    if int_sum is None or int_sum.size == 0:
        return
    bound = count * per_coord + noise
    values = int_sum[:-1]
    if values.size and (values.max() > bound or values.min() < -bound):
        worst = int(np.argmax(np.abs(values.astype(np.float64))))
        raise RangeCheckError(
            f"coordinate {worst} of the sum is {values[worst]}, outside +-{bound}, what "
            f"{count} contributors can produce: refusing to release"
        )
    if not -noise <= int_sum[-1] <= hi_w:
        raise RangeCheckError(f"weight coordinate {int_sum[-1]} is outside [{-noise}, {hi_w}]: "
                              "refusing to release")


def finalize(config: RoundConfig, ring_sum: np.ndarray, contributors: tuple[int, ...],
             rng: Csprng) -> AggregateResult:
    """Centre, check (:func:`check_release`), noise (once, if configured) and decode a ring
    sum; the decoding step of every exact protocol.

    Raises:
        DropoutError: fewer than :func:`release_floor` contributed.
        RangeCheckError: the sum is outside what the contributors can produce.
    """
    int_sum = config.encoding.centre(ring_sum)
    check_release(int_sum, float(int_sum[-1]) / config.encoding.scale if int_sum.size else 0.0,
                  contributors, config)
    event = None
    if config.noise is not None:
        int_sum, event = config.noise.add_noise(int_sum, rng)
    event = surviving_noise_event(config, len(contributors)) or event
    values, weight = config.encoding.decode(int_sum)
    return AggregateResult(values, weight, contributors, int_sum, event)


def surviving_noise_event(config: RoundConfig, contributors: int) -> Any:
    """Distributed DP: the event of the noise that ``contributors`` clients put into the sum
    (None when the config has no client noise). Drivers that rebuild a result elsewhere use
    it to report the same event as :func:`finalize`."""
    client_noise: ClientNoise | None = getattr(config, "client_noise", None)
    if client_noise is None:
        return None
    return client_noise.event_for(contributors, config.dim + 1)


def replace_config(config: Any, **changes: Any) -> Any:
    """``dataclasses.replace`` for configs (keeps validation)."""
    return dataclasses.replace(config, **changes)
