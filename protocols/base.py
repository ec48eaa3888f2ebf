"""The one interface every protocol implements, and what the roles share.

Every protocol is a set of sans-IO roles: plain objects that take a message and give
messages back. They never touch sockets, threads or clocks; a driver (the in-process
simulator, the Flower adapter, the benchmark) moves messages and tells the server when a
stage's deadline has passed::

    spec = protocols.get("secagg+")
    config = spec.make_config(n_clients=100, dim=10_000)
    parties = protocols.build_parties(spec, config, rng)   # server, helpers, clients
    outbox = parties.server.start()              # then route: recipient -> party.receive(msg)
    ...
    parties.server.close_round()                 # the deadline passed: who is missing dropped
    parties.server.result()                      # AggregateResult, once finished

(:class:`protocols.harness.Router` does that routing; :func:`protocols.aggregate` is the
one-call recipe.)

A spec *declares* what its protocol supports, so drivers ask instead of probing:
:attr:`ProtocolSpec.min_cohort`, :attr:`ProtocolSpec.supports_distributed_dp`,
:meth:`ProtocolSpec.client_stages` (message classes, read from the transition table),
:meth:`ProtocolSpec.graph_params`, and one keyword set (:data:`CONFIG_KEYWORDS`) that every
:meth:`ProtocolSpec.make_config` accepts, refusing with :class:`ConfigError` the keywords its
protocol does not support.

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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final, Protocol, TypeVar

import numpy as np

from secagg.encoding import EncodingConfig
from secagg.errors import ConfigError, DropoutError, ProtocolError, RangeCheckError, UsageError
from secagg.rng import Csprng

__all__ = [
    "CONFIG_KEYWORDS",
    "DECRYPTOR",
    "MIN_CONTRIBUTORS",
    "GraphParams",
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
    "finalize",
    "header",
    "message_class",
    "stage_names",
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
            floor is ``max(min_clients, MIN_CONTRIBUTORS)`` (see :attr:`RoundConfig.release_floor`), so a
            value below 2 never lowers it.
        noise: central DP, applied once by the decoding party (None: no noise).
        client_noise: distributed DP, added by every client before it sends (None: none).
            Only config classes whose protocol adds it (``SUPPORTS_CLIENT_NOISE``) accept it,
            so no config can claim noise its clients never add.

    Raises:
        ConfigError: inconsistent sizes, naming the numbers that would work.
    """

    #: whether this config's clients add ``client_noise`` (distributed DP)
    SUPPORTS_CLIENT_NOISE: ClassVar[bool] = False

    n_clients: int
    dim: int
    encoding: EncodingConfig = field(default_factory=EncodingConfig)
    round_id: int = 0
    session: bytes = field(default_factory=lambda: os.urandom(16))
    min_clients: int = 1
    noise: NoiseHook | None = None
    client_noise: ClientNoise | None = None

    def __post_init__(self) -> None:
        if self.client_noise is not None and not self.SUPPORTS_CLIENT_NOISE:
            raise ConfigError(f"{type(self).__name__} has no distributed DP (client_noise); "
                              "use central DP (noise) or a protocol whose clients add noise")
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

    @property
    def release_floor(self) -> int:
        """The fewest contributors whose sum may be released: ``min_clients``, and never
        fewer than :data:`MIN_CONTRIBUTORS` (2), in every protocol."""
        return max(self.min_clients, MIN_CONTRIBUTORS)


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


#: Every keyword :meth:`ProtocolSpec.make_config` accepts, for every protocol (beyond
#: ``n_clients`` and ``dim``). A value of None (or ``active=False``) means "not asked for";
#: a keyword the protocol does not support, given any other value, is a ConfigError.
#: ``dropout_tolerance`` (the dropout fraction the round must survive) is accepted by every
#: protocol; those without a threshold survive any dropout down to ``min_clients``.
CONFIG_KEYWORDS: Final = frozenset({
    "encoding", "round_id", "session", "min_clients", "noise", "client_noise", "threshold",
    "degree", "active", "registry", "corruption", "dropout_tolerance", "decryptor_key",
    "enrolled",
})
#: what every RoundConfig has, so every protocol supports them
_BASE_KEYWORDS: Final = frozenset({"encoding", "round_id", "session", "min_clients", "noise",
                                   "dropout_tolerance"})


@dataclass(frozen=True)
class GraphParams:
    """Who can decode what: the Shamir ``threshold`` t and the graph ``degree`` k.

    Both are None for a protocol without a sharing graph (plaintext, HE).
    """

    threshold: int | None = None
    degree: int | None = None

    def as_dict(self) -> dict[str, int]:
        """``{"threshold": t, "degree": k}`` without the ones that are None."""
        return {k: v for k, v in (("threshold", self.threshold), ("degree", self.degree))
                if v is not None}


_KIND_CLASSES: dict[enum.Enum, type[Message]] = {}


def message_class(kind: enum.Enum) -> type[Message]:
    """The wire-registered message class whose ``KIND`` is ``kind``.

    Raises:
        ConfigError: no registered message class has that kind.
    """
    cls = _KIND_CLASSES.get(kind)
    if cls is None:
        from secagg import wire

        for c in wire.registered().values():
            k = getattr(c, "KIND", None)
            if isinstance(k, enum.Enum):
                _KIND_CLASSES.setdefault(k, c)
        cls = _KIND_CLASSES.get(kind)
    if cls is None:
        raise ConfigError(f"no wire-registered message class has KIND {kind!r}; register the "
                          "protocol's messages with secagg.wire.register")
    return cls


def _no_graph(config: Any) -> GraphParams:
    return GraphParams()


@dataclass(frozen=True)
class ProtocolSpec:
    """How to build a protocol's roles, and what the protocol supports. Registered by name in
    :mod:`protocols.registry`.

    Args:
        name, summary: what ``protocols.get`` and ``--protocol`` know it by.
        config_factory: ``(n_clients, dim, **keywords) -> RoundConfig``; it is only ever given
            the keywords in ``keywords`` (call :meth:`make_config`, which checks them).
        client, server, helpers: the roles; ``helpers`` returns ``{address: role}``.
        client_table: ``config -> {(state, kind): next state}``, the client's transition
            table (its order is the order of the stages; :meth:`client_stages` reads it).
        keywords: the keywords of :data:`CONFIG_KEYWORDS` beyond the base ones (encoding,
            round_id, session, min_clients, noise, dropout_tolerance) that the protocol
            supports.
        exact: whether the release is the exact integer sum (``int_sum``).
        provision: for simulations, ``(config, rng) -> (config with any enrolment filled in,
            {client id: extra keyword arguments for client(...)})``.
        min_cohort: no sum of fewer contributors is ever released (2: a sum over one client
            is that client's update, in every protocol).
        supports_distributed_dp: whether clients can add noise before sending
            (``client_noise``).
        releases_any_survivors: whether the decoding party releases the sum of whatever set
            of clients it is handed, with nothing in the protocol (such as a secret-sharing
            threshold) bounding how few. A driver then sets ``min_clients`` to the
            survivors it planned for (:meth:`planned_min_clients`), so an aggregator cannot
            pass off a sum over fewer clients as the round's (HE: the decryptor).
        graph: ``config -> GraphParams``; the default says "no graph".
        server_table: ``config -> {(stage, kind or event): next stage}``, the server's
            transition table (for the table walk of :mod:`protocols.testing`), or None.
        input_kind: the kind of the client stage whose answer carries the client's input
            (``set_input`` must come before it; a lean driver gives the input just then).
            None: before the first stage.
    """

    name: str
    summary: str
    config_factory: Callable[..., RoundConfig]
    client: Callable[..., ClientCore]
    server: Callable[[Any, Csprng], ServerCore]
    client_table: Callable[[Any], Mapping[tuple[Any, enum.Enum], Any]]
    helpers: Callable[[Any, Csprng], dict[int, Party]] = lambda config, rng: {}
    keywords: frozenset[str] = frozenset()
    exact: bool = True
    provision: Callable[[Any, Csprng], tuple[Any, dict[int, dict[str, Any]]]] = (
        lambda config, rng: (config, {})
    )
    min_cohort: int = MIN_CONTRIBUTORS
    supports_distributed_dp: bool = False
    releases_any_survivors: bool = False
    graph: Callable[[Any], GraphParams] = _no_graph
    server_table: Callable[[Any], Mapping[tuple[Any, enum.Enum], Any]] | None = None
    input_kind: enum.Enum | None = None

    def __post_init__(self) -> None:
        unknown = set(self.keywords) - CONFIG_KEYWORDS
        if unknown:
            raise ConfigError(f"protocol {self.name!r} declares unknown config keywords "
                              f"{sorted(unknown)}; the keyword set is {sorted(CONFIG_KEYWORDS)}")
        if ("client_noise" in self.keywords) != self.supports_distributed_dp:
            raise ConfigError(f"protocol {self.name!r}: supports_distributed_dp must match "
                              "whether 'client_noise' is among its keywords")
        if not isinstance(self.min_cohort, int) or self.min_cohort < 2:
            raise ConfigError(f"protocol {self.name!r}: min_cohort must be >= 2 (a sum over "
                              f"one client is that client's update), got {self.min_cohort!r}")

    def make_config(self, n_clients: int, dim: int, **kw: Any) -> RoundConfig:
        """A validated round configuration.

        Args:
            kw: any of :data:`CONFIG_KEYWORDS`; None (or ``active=False``, ``enrolled=False``)
                means not given.

        Raises:
            ConfigError: a keyword outside the set, one this protocol does not support (named,
                in one line), or parameters that cannot work.
        """
        unknown = sorted(set(kw) - CONFIG_KEYWORDS)
        if unknown:
            raise ConfigError(f"unknown config keyword {unknown[0]!r}; make_config takes "
                              f"{', '.join(sorted(CONFIG_KEYWORDS))}")
        supported = _BASE_KEYWORDS | self.keywords
        given: dict[str, Any] = {}
        for key, value in kw.items():
            if value is None or (key in ("active", "enrolled") and value is False):
                continue
            if key not in supported:
                raise ConfigError(f"{self.name} does not support {key!r}; it takes "
                                  f"{', '.join(sorted(supported))}")
            given[key] = value
        if "dropout_tolerance" not in self.keywords:
            given.pop("dropout_tolerance", None)
        return self.config_factory(n_clients, dim, **given)

    def client_stages(self, config: Any) -> tuple[type[Message], ...]:
        """The message classes a client answers in a round of ``config``, in order (read from
        the client transition table). A driver that drops a client "at stage i" stops
        delivering from the i-th of these on."""
        return tuple(message_class(kind) for (_, kind) in self.client_table(config))

    def input_stage(self, config: Any) -> int:
        """The index (into :meth:`client_stages`) of the stage whose answer carries the
        client's input: ``set_input`` must have been called before that stage's message."""
        kinds = [cls.KIND for cls in self.client_stages(config)]
        if self.input_kind is None or self.input_kind not in kinds:
            return 0
        return kinds.index(self.input_kind)

    def planned_min_clients(self, n_clients: int, dropout: float) -> int | None:
        """The ``min_clients`` a driver should give a round of ``n_clients`` that plans for
        a ``dropout`` fraction to drop: the planned survivors (never below
        :attr:`min_cohort`) if the protocol :attr:`releases_any_survivors`, else None (the
        protocol's own threshold bounds the release).
        """
        if not self.releases_any_survivors:
            return None
        return max(self.min_cohort, n_clients - round(dropout * n_clients))

    def graph_params(self, config: Any) -> GraphParams:
        """The threshold and degree of ``config`` (both None without a sharing graph)."""
        return self.graph(config)


def stage_names(stages: tuple[type[Message], ...]) -> tuple[str, ...]:
    """The names reports use for stages: each message class's ``KIND.name``."""
    return tuple(cls.KIND.name for cls in stages)


def stages_of(spec: ProtocolSpec, config: Any) -> tuple[str, ...]:
    """The names of ``spec.client_stages(config)`` (for reports and drivers that index by
    name)."""
    return stage_names(spec.client_stages(config))


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


def check_release(int_sum: np.ndarray | None, total_weight: float,
                  contributors: int | tuple[int, ...], config: RoundConfig) -> None:
    """The last check before any decoding party releases an aggregate.

    Refuses a sum of fewer than :attr:`RoundConfig.release_floor` contributors, and a sum that no set of
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
    floor = config.release_floor
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
        DropoutError: fewer than :attr:`RoundConfig.release_floor` contributed.
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
    client_noise: ClientNoise | None = config.client_noise
    if client_noise is None:
        return None
    return client_noise.event_for(contributors, config.dim + 1)


def replace_config(config: Any, **changes: Any) -> Any:
    """``dataclasses.replace`` for configs (keeps validation)."""
    return dataclasses.replace(config, **changes)
