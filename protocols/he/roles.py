"""The roles that ckks and paillier share: client, aggregator (the server) and decryptor.

Theory of operation (DESIGN.md, "HE roles"; SECURITY.md, "HE"). A scheme object
(:class:`HeScheme`) supplies the cryptography; this module supplies the one state machine all
homomorphic protocols run::

    aggregator (SERVER)              decryptor (DECRYPTOR)             client u
    start:  CONTEXT_REQUEST  ----->  fresh key pair and X25519 blind key for this round
            PUBLIC_CONTEXT   <-----  public part only (no secret key, no relinearisation
                                     or Galois keys), signed if config.decryptor_key is set
    INPUT_REQUEST(context)   --------------------------------------> check it; draw a blind
                                                                      seed; encrypt
                                                                      plaintext + blind
    running sum of ciphertexts  <---------------------------------- ENCRYPTED_INPUT
    and each sender's envelope                                        (+ sealed, signed seed)
    close:  DECRYPT_REQUEST  ----->  >= max(2, min_clients) named contributors, each with
                                     its own signed envelope? decrypt ONCE, remove exactly
                                     their blinds, range-check, DP noise, decode, forget
                                     the secret key
            RELEASED_AGGREGATE <---  the released (noised) sum and the DP event charged

Verified composition. Each client adds a one-time blind (expanded from a seed only it and the
decryptor know: :mod:`protocols.he.blind`) to its plaintext. The decryptor removes the
blinds of exactly the contributors the aggregator names, after checking each envelope's
signature against the client registry. A ciphertext left out, added twice, multiplied,
forged or taken from someone not named leaves a residual of unknown blinds; the scheme's
check refuses it and nothing is released (:meth:`HeScheme.decrypt`). So a release is the sum
of distinct, fresh, authentic uploads of this round, each counted once, over at least
``max(2, min_clients)`` registered clients. Fake clients are out of reach without their
registry keys: the registry is required (:func:`provision` enrols clients for simulations).

Identification (schemes that ``identify``: paillier). A decryption *far* out of range
(:class:`FarOutOfRange`) is either a lying aggregator or a client whose own upload is far out
of range; the decryptor keeps the key and asks for one masked test per contributor
(IDENTIFY_REQUEST, TEST_REQUEST), answers one bit each (VERDICT), and then decrypts once more
the sum of the others only. :meth:`HeScheme.test` bounds what a test reveals.

The aggregator holds the public context, one running sum and the envelopes (paillier: each
upload too, for the tests); the decryptor releases at most once per round: a request after
the release is :class:`DecryptionSpent` (both :class:`AlreadyFinalized` and
:class:`ProtocolError`).
Refusals are typed: clients abort for good on any :class:`ProtocolError`; the aggregator and
the decryptor refuse the one message and stay where they were, except that a decryption
whose plaintext fails its check has already happened, so the decryptor aborts.

.. warning:: without ``decryptor_key`` nothing binds the public context to the decryptor: an
   aggregator that substitutes a context of its own can decrypt every upload (SECURITY.md).
"""

from __future__ import annotations

import abc
import builtins
import dataclasses
import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from protocols._machine import transition
from protocols.base import (
    DECRYPTOR,
    MIN_CONTRIBUTORS,
    SERVER,
    AggregateResult,
    ClientCore,
    Message,
    Party,
    RoundConfig,
    ServerCore,
    check_header,
    header,
)
from protocols.he.blind import (
    ENVELOPE_SIZE,
    SEED_SIZE,
    decode_event,
    encode_event,
    open_envelope,
    seal_envelope,
)
from protocols.he.messages import (
    ContextRequest,
    DecryptRequest,
    EncryptedInput,
    IdentifyRequest,
    InputRequest,
    PublicContext,
    ReleasedAggregate,
    TestRequest,
    Verdict,
)
from protocols.he.state import (
    CLIENT_TRANSITIONS,
    DECRYPTOR_TRANSITIONS,
    SERVER_TRANSITIONS,
    ClientState,
    DecryptorState,
    Event,
    HeKind,
    Kind,
    ServerState,
)
from protocols.policy import ClientPolicy
from protocols.secagg.registry import ClientRegistry, enroll
from secagg import kex, sign
from secagg.errors import (
    AlreadyFinalized,
    ConfigError,
    DropoutError,
    LateMessageError,
    ProtocolError,
    UsageError,
)
from secagg.rng import Csprng

__all__ = ["DecryptionSpent", "FarOutOfRange", "HeAggregator", "HeClient", "HeConfig",
           "HeDecryptor", "HeScheme", "MapFn", "provision"]

#: an executor-like ``map(fn, *iterables)``: the builtin ``map`` (in this thread) or, from
#: a driver, e.g. ``ProcessPoolExecutor.map`` (:func:`fl.engines.pool.process_map`)
MapFn = Callable[..., Iterable[Any]]



class DecryptionSpent(AlreadyFinalized, ProtocolError):
    """A second decryption request in a round: the one-shot decryption is spent
    (:class:`AlreadyFinalized`) and the aggregator replayed or forged a request
    (:class:`ProtocolError`, so drivers that refuse peer errors and carry on handle it)."""


class FarOutOfRange(ProtocolError):
    """A decryption so far out of range that only a lying aggregator (with probability
    1 - 2^-64) or a client whose own upload is far out of range explains it; schemes that
    ``identify`` then test each contributor's upload (:class:`HeDecryptor`)."""


# -- configuration and the scheme interface ---------------------------------------------
@dataclass(frozen=True)
class HeConfig(RoundConfig):
    """A round of a homomorphic protocol.

    Args (beyond :class:`RoundConfig`):
        decryptor_key: the decryptor's Ed25519 verify key (32 bytes). When set, clients and
            the aggregator accept only a public context the decryptor signed for this
            session, round and scheme.
        registry: the clients' long-term Ed25519 verify keys; every blind envelope must be
            signed by its sender's key. Required by clients and the decryptor
            (:func:`provision` fills it in for simulations).

    Raises:
        ConfigError: fewer than 2 clients (an HE round never releases one client's input).
    """

    decryptor_key: bytes | None = None
    registry: ClientRegistry | None = None

    def __post_init__(self) -> None:
        RoundConfig.__post_init__(self)
        if self.n_clients < MIN_CONTRIBUTORS:
            raise ConfigError(f"an HE round needs at least {MIN_CONTRIBUTORS} clients (a sum over one "
                              f"client is that client's input), got n_clients={self.n_clients}")
        if self.decryptor_key is not None and len(self.decryptor_key) != sign.VERIFY_KEY_SIZE:
            raise ConfigError(f"decryptor_key must be a {sign.VERIFY_KEY_SIZE}-byte Ed25519 "
                              f"verify key, got {len(self.decryptor_key)} bytes")
        if self.registry is not None and not self.registry.covers(self.n_clients):
            raise ConfigError(f"the registry must enrol clients 0..{self.n_clients - 1}")


def provision(config: HeConfig, rng: Csprng) -> tuple[HeConfig, dict[int, dict[str, Any]]]:
    """For simulations: enrol every client with a fresh signing key (its blind envelopes are
    signed with it). A config that already has a registry is returned unchanged; its clients
    bring their own keys."""
    if config.registry is not None:
        return config, {}
    registry, seeds = enroll(config.n_clients, rng)
    return (dataclasses.replace(config, registry=registry),
            {u: {"signing_key": s} for u, s in seeds.items()})


class HeScheme(abc.ABC):
    """The cryptography of one homomorphic scheme; the roles below call nothing else.

    Every method that reads peer data raises :class:`ProtocolError` on anything it refuses
    and changes nothing before it has validated everything.
    """

    kind: ClassVar[HeKind]
    exact: ClassVar[bool]
    #: whether a far-out-of-range decryption can be traced to a client (:meth:`test`)
    identifies: ClassVar[bool] = False

    @abc.abstractmethod
    def keygen(self, config: Any, rng: Csprng) -> tuple[bytes, Any]:
        """A fresh key pair: (public context bytes, secret state). Decryptor only."""

    @abc.abstractmethod
    def load_public(self, config: Any, context: bytes) -> Any:
        """Parse and check a public context; refuses one that holds a secret key."""

    @abc.abstractmethod
    def prepare(self, config: Any, update: np.ndarray, weight: float, rng: Csprng) -> np.ndarray:
        """Clip, weight and quantise an update: ``dim + 1`` fixed-point values, weight last
        (ckks: int64 grid units; paillier: the encoding's ring vector)."""

    @abc.abstractmethod
    def encrypt(self, config: Any, context: bytes, public: Any, prepared: np.ndarray,
                rng: Csprng, seed: bytes, map: MapFn = builtins.map) -> tuple[bytes, ...]:
        """Encrypt prepared values plus the blind expanded from ``seed`` into wire blocks,
        spreading the work over ``map`` (module-level functions, bytes, ints and arrays
        only cross it)."""

    @abc.abstractmethod
    def open_blocks(self, config: Any, key: Any, blocks: tuple[bytes, ...]) -> Any:
        """Parse an upload or aggregate under ``key`` (public or secret state)."""

    @abc.abstractmethod
    def add(self, config: Any, public: Any, acc: Any, upload: Any) -> Any:
        """``acc + upload`` (``acc`` is None for the first upload); may update ``acc``."""

    @abc.abstractmethod
    def seal(self, config: Any, public: Any, acc: Any) -> tuple[bytes, ...]:
        """The running sum as wire blocks."""

    @abc.abstractmethod
    def decrypt(self, config: Any, secret: Any, aggregate: Any,
                seeds: list[bytes]) -> np.ndarray:
        """Decrypt once, remove the blinds of ``seeds`` (one per named contributor) and check
        the rest is what ``len(seeds)`` honest clients produce: the int64 sum in fixed-point
        units (``dim + 1``). Raises ProtocolError ("out of range") otherwise, and
        :class:`FarOutOfRange` when :meth:`test` can tell whether a client caused it."""

    def test_blocks(self, config: Any, public: Any, upload: Any, rng: Csprng) -> bytes:
        """Aggregator: one contributor's own upload, re-masked for :meth:`test`."""
        raise UsageError(f"{type(self).__name__} does not identify clients")

    def test(self, config: Any, secret: Any, block: bytes, seed: bytes, rng: Csprng) -> bool:
        """Decryptor: whether a re-masked upload (its blind from ``seed``) is one an honest
        client can send, revealing nothing else about it."""
        raise UsageError(f"{type(self).__name__} does not identify clients")


def _statement(config: RoundConfig, kind: HeKind, context: bytes, blind_key: bytes) -> bytes:
    """What the decryptor signs: the context's and blind key's hash bound to session, round
    and scheme."""
    s = config.session
    return (b"secagg/he/public-context/v2\x00" + len(s).to_bytes(4, "big") + s
            + config.round_id.to_bytes(8, "big") + bytes([kind.value])
            + hashlib.sha256(context).digest() + hashlib.sha256(blind_key).digest())


def _check_context(config: HeConfig, kind: HeKind, msg: PublicContext | InputRequest) -> None:
    if len(msg.blind_key) != kex.PUBLIC_KEY_SIZE:
        raise ProtocolError(f"the blind key must be {kex.PUBLIC_KEY_SIZE} bytes, "
                            f"got {len(msg.blind_key)}")
    if config.decryptor_key is not None:
        sign.verify(config.decryptor_key, _statement(config, kind, msg.context, msg.blind_key),
                    msg.signature)
    elif msg.signature:
        raise ProtocolError("a signed context, but this round has no decryptor_key to check it")


def _check_scheme(msg: Any, kind: HeKind) -> None:
    if msg.scheme is not kind:
        raise ProtocolError(f"a {msg.scheme.name} message in a {kind.name} round")


def _need_registry(config: HeConfig, role: str) -> ClientRegistry:
    if config.registry is None:
        raise ConfigError(f"the HE {role} needs config.registry (the clients' verify keys); "
                          "for a simulation, spec.provision(config, rng) enrols them")
    return config.registry


# -- the roles ---------------------------------------------------------------------------
class HeClient(ClientCore):
    """A client: checks the public context it is given, blinds, encrypts, sends ciphertext.

    Args:
        signing_key: the client's 32-byte Ed25519 seed, whose verify key the registry holds.
        map: how the driver wants encryption spread (the builtin ``map``: here, serially);
            the core itself never starts a process or thread.
        policy: the weakest config this client accepts (default: :class:`ClientPolicy()`,
            which adds nothing to the config's own validation); pin the decryptor with
            ``ClientPolicy(decryptor_key=...)`` and the registry with
            ``registry_fingerprint``. Build it from the client's own settings, never from
            what the aggregator sends.
        protocol: the protocol name the policy checks (default: the scheme's, ``"ckks"`` or
            ``"paillier"``).

    Raises:
        PolicyError: the config is weaker than ``policy`` (names the setting), checked first.
        ConfigError: no registry, or a signing key the registry does not hold.
    """

    SCHEME: ClassVar[HeScheme]

    def __init__(self, config: HeConfig, client_id: int, rng: Csprng,
                 signing_key: bytes | None = None, *, map: MapFn = builtins.map,
                 policy: ClientPolicy | None = None, protocol: str | None = None) -> None:
        self.protocol = protocol or self.SCHEME.kind.name.lower()
        self.policy = policy if policy is not None else ClientPolicy()
        self.policy.check(self.protocol, config)
        registry = _need_registry(config, "client")
        if signing_key is None or sign.verify_key(signing_key) != registry.verify_key(client_id):
            raise ConfigError(f"client {client_id} needs the signing_key whose verify key the "
                              "registry holds")
        self.config, self.client_id, self._rng = config, client_id, rng
        self._signing_key, self._map = signing_key, map
        self.state = ClientState.WAITING
        self._prepared: np.ndarray | None = None
        #: the encoded input (exact schemes only), for drivers that check exactness
        self.encoded: np.ndarray | None = None

    @property
    def aborted(self) -> bool:
        return self.state is ClientState.ABORTED

    def set_input(self, update: np.ndarray, weight: float = 1.0) -> None:
        if len(update) != self.config.dim:
            raise UsageError(f"update has {len(update)} values, the round expects {self.config.dim}")
        self._prepared = self.SCHEME.prepare(self.config, update, weight, self._rng)
        self.encoded = self._prepared if self.SCHEME.exact else None

    def receive(self, msg: Message) -> list[Message]:
        kind, cfg = self.SCHEME.kind, self.config
        try:
            nxt = transition(CLIENT_TRANSITIONS, self.state, msg.KIND)
            m = check_header(msg, InputRequest, cfg, sender=SERVER, recipient=self.client_id)
            _check_scheme(m, kind)
            _check_context(cfg, kind, m)
            public = self.SCHEME.load_public(cfg, m.context)
        except ProtocolError:
            self.state = ClientState.ABORTED
            raise
        if self._prepared is None:
            raise UsageError("set_input() must be called before the input is requested")
        seed = self._rng.bytes(SEED_SIZE)
        blocks = self.SCHEME.encrypt(cfg, m.context, public, self._prepared, self._rng, seed,
                                     self._map)
        envelope = seal_envelope(session=cfg.session, round_id=cfg.round_id, scheme=kind.value,
                                 client=self.client_id, blind_key=m.blind_key, seed=seed,
                                 signing_key=self._signing_key, rng=self._rng)
        self.state, self._prepared = nxt, None
        return [EncryptedInput(**header(cfg, self.client_id, SERVER), scheme=kind,
                               blocks=blocks, envelope=envelope)]


class HeAggregator(ServerCore):
    """The aggregator: relays the public context, adds ciphertexts as they arrive, keeps each
    sender's blind envelope (168 bytes), and asks for one decryption of the sum, naming the
    contributors and relaying their envelopes. Dispatch is table-driven (``_HANDLERS``,
    keyed by message class), like :class:`protocols.secagg.SecAggServer`'s."""

    SCHEME: ClassVar[HeScheme]

    def __init__(self, config: HeConfig, rng: Csprng) -> None:
        self.config, self._rng = config, rng
        self.state = ServerState.NEW
        self._public: Any = None
        self._acc: Any = None
        self._envelopes: dict[int, bytes] = {}
        self._uploads: dict[int, Any] = {}  # kept only by schemes that identify clients
        self._contributors: tuple[int, ...] = ()
        self._result: AggregateResult | None = None
        #: clients the decryptor found with an upload far out of range (left out)
        self.excluded: tuple[int, ...] = ()

    @property
    def finished(self) -> bool:
        return self.state is ServerState.FINISHED

    @property
    def _seen(self) -> set[int]:
        return set(self._envelopes)

    def start(self) -> list[Message]:
        """Ask the decryptor for this round's public context."""
        self.state = transition(SERVER_TRANSITIONS, self.state, Event.START)
        return [ContextRequest(**header(self.config, SERVER, DECRYPTOR), scheme=self.SCHEME.kind)]

    def receive(self, msg: Message) -> list[Message]:
        """Take one message; refused ones raise (late: LateMessageError) and change nothing."""
        if self.state is ServerState.NEW:
            raise UsageError("call start() before receive()")
        if msg.KIND is Kind.ENCRYPTED_INPUT and self.state in (
                ServerState.AWAIT_RELEASE, ServerState.AWAIT_VERDICT, ServerState.AWAIT_RETRY,
                ServerState.FINISHED, ServerState.ABORTED):
            raise LateMessageError(f"input from {msg.sender} arrived after the round closed")
        nxt = transition(SERVER_TRANSITIONS, self.state, msg.KIND)
        handler = self._HANDLERS.get(type(msg))
        if handler is None:
            raise ProtocolError(f"the aggregator takes no {type(msg).__name__}")
        out = handler(self, msg, nxt)
        return out

    def _on_context(self, msg: Message, nxt: ServerState) -> list[Message]:
        kind, cfg = self.SCHEME.kind, self.config
        pc = check_header(msg, PublicContext, cfg, sender=DECRYPTOR, recipient=SERVER)
        _check_scheme(pc, kind)
        _check_context(cfg, kind, pc)
        self._public, self.state = self.SCHEME.load_public(cfg, pc.context), nxt
        return [InputRequest(**header(cfg, SERVER, u), scheme=kind, context=pc.context,
                             blind_key=pc.blind_key, signature=pc.signature)
                for u in range(cfg.n_clients)]

    def _on_input(self, msg: Message, nxt: ServerState) -> list[Message]:
        cfg = self.config
        m = check_header(msg, EncryptedInput, cfg, sender=None, recipient=SERVER)
        _check_scheme(m, self.SCHEME.kind)
        if m.sender in self._envelopes:
            raise ProtocolError(f"client {m.sender} sent its input twice")
        if len(m.envelope) != ENVELOPE_SIZE:
            raise ProtocolError(f"a blind envelope is {ENVELOPE_SIZE} bytes, "
                                f"got {len(m.envelope)}")
        upload = self.SCHEME.open_blocks(cfg, self._public, m.blocks)
        self._acc = self.SCHEME.add(cfg, self._public, self._acc, upload)
        self._envelopes[m.sender] = m.envelope
        if self.SCHEME.identifies:
            self._uploads[m.sender] = upload
        self.state = nxt
        return self.close_round() if len(self._envelopes) == cfg.n_clients else []

    def _on_release(self, msg: Message, nxt: ServerState) -> list[Message]:
        r = check_header(msg, ReleasedAggregate, self.config, sender=DECRYPTOR, recipient=SERVER)
        _check_scheme(r, self.SCHEME.kind)
        self._result = self._check_release(r)
        self.state, self._uploads = nxt, {}
        return []

    def _on_identify(self, msg: Message, nxt: ServerState) -> list[Message]:
        cfg, kind = self.config, self.SCHEME.kind
        m = check_header(msg, IdentifyRequest, cfg, sender=DECRYPTOR, recipient=SERVER)
        _check_scheme(m, kind)
        if m.contributors != self._contributors or not self.SCHEME.identifies:
            raise ProtocolError(f"identification asked for {m.contributors}, the aggregate "
                                f"was of {self._contributors}")
        tests = tuple(self.SCHEME.test_blocks(cfg, self._public, self._uploads[u], self._rng)
                      for u in self._contributors)
        self.state = nxt
        return [TestRequest(**header(cfg, SERVER, DECRYPTOR), scheme=kind,
                            contributors=self._contributors, tests=tests)]

    def _on_verdict(self, msg: Message, nxt: ServerState) -> list[Message]:
        cfg, kind = self.config, self.SCHEME.kind
        v = check_header(msg, Verdict, cfg, sender=DECRYPTOR, recipient=SERVER)
        _check_scheme(v, kind)
        if not v.culprits or list(v.culprits) != sorted(set(v.culprits)) or not set(
                v.culprits) <= set(self._contributors):
            raise ProtocolError(f"a verdict must name some of {self._contributors}, in order; "
                                f"got {v.culprits}")
        rest = tuple(u for u in self._contributors if u not in v.culprits)
        self.excluded = v.culprits
        if len(rest) < cfg.release_floor:
            self.state, self._uploads = ServerState.ABORTED, {}
            raise DropoutError(f"clients {v.culprits} sent uploads far out of range; the "
                               f"{len(rest)} left are fewer than {cfg.release_floor}")
        acc = None
        for u in rest:
            acc = self.SCHEME.add(cfg, self._public, acc, self._uploads[u])
        self._contributors, self.state = rest, nxt
        return [DecryptRequest(**header(cfg, SERVER, DECRYPTOR), scheme=kind,
                               blocks=self.SCHEME.seal(cfg, self._public, acc),
                               contributors=rest,
                               envelopes=tuple(self._envelopes[u] for u in rest))]

    _HANDLERS: ClassVar[dict[type, Callable[[HeAggregator, Message, Any], list[Message]]]] = {
        PublicContext: _on_context,
        EncryptedInput: _on_input,
        ReleasedAggregate: _on_release,
        IdentifyRequest: _on_identify,
        Verdict: _on_verdict,
    }

    def _check_release(self, r: ReleasedAggregate) -> AggregateResult:
        dim = self.config.dim
        if r.contributors != self._contributors:
            raise ProtocolError(f"release is for {r.contributors}, asked for {self._contributors}")
        if r.values.dtype != np.float64 or r.values.shape != (dim,):
            raise ProtocolError(f"released values must be {dim} float64, got "
                                f"{r.values.size} {r.values.dtype}")
        if (r.int_sum is None) == self.SCHEME.exact or (
                r.int_sum is not None and (r.int_sum.dtype != np.int64
                                           or r.int_sum.shape != (dim + 1,))):
            raise ProtocolError("released int_sum does not match the scheme")
        event = decode_event(r.dp_event)
        return AggregateResult(r.values, r.total_weight, r.contributors, r.int_sum, event)

    def close_round(self) -> list[Message]:
        """The deadline passed. Collecting: whoever has not sent has dropped; ask for the
        decryption. Waiting for the decryptor: the round aborts (DropoutError)."""
        if self.state is ServerState.NEW:
            raise UsageError("call start() before close_round()")
        if self.state in (ServerState.FINISHED, ServerState.ABORTED):
            return []
        nxt = transition(SERVER_TRANSITIONS, self.state, Event.DEADLINE)
        if nxt is ServerState.ABORTED:
            waited = self.state.name
            self.state = nxt
            raise DropoutError(f"the decryptor did not answer ({waited}); the round is aborted")
        if len(self._envelopes) < self.config.release_floor:
            self.state = ServerState.ABORTED
            raise DropoutError(f"only {len(self._envelopes)} clients contributed; an HE round "
                               f"needs {self.config.release_floor} (max(2, min_clients)) and "
                               "refuses to ask for a decryption")
        blocks = self.SCHEME.seal(self.config, self._public, self._acc)
        self._contributors = tuple(sorted(self._envelopes))
        envelopes = tuple(self._envelopes[u] for u in self._contributors)
        self._acc, self.state = None, nxt
        return [DecryptRequest(**header(self.config, SERVER, DECRYPTOR), scheme=self.SCHEME.kind,
                               blocks=blocks, contributors=self._contributors,
                               envelopes=envelopes)]

    def result(self) -> AggregateResult:
        """The release, with the DP event the decryptor's noise hook returned (None without
        central DP), the same meaning ``dp_event`` has for every protocol."""
        if self._result is None:
            raise UsageError(f"no result: the round is {self.state.name}")
        return self._result


class HeDecryptor(Party):
    """The decryptor: makes the round's keys, decrypts the aggregate (paillier: after a
    verdict, once more without the clients identified), noises, releases at most once.

    .. warning:: holds the round's secret key until it has released the aggregate; nothing
       else in the protocol ever does. It must not collude with the aggregator.

    Args:
        signing_key: the 32-byte Ed25519 seed whose verify key is ``config.decryptor_key``
            (required exactly when that is set).

    Raises:
        ConfigError: no client registry (blind envelopes could not be authenticated), or a
            signing key that does not match ``config.decryptor_key``.
    """

    SCHEME: ClassVar[HeScheme]

    def __init__(self, config: HeConfig, rng: Csprng, signing_key: bytes | None = None) -> None:
        self._registry = _need_registry(config, "decryptor")
        if (signing_key is None) != (config.decryptor_key is None) or (
                signing_key is not None and sign.verify_key(signing_key) != config.decryptor_key):
            raise ConfigError("the decryptor's signing_key must be given exactly when "
                              "config.decryptor_key is set, and match it")
        self.config, self._rng, self._signing_key = config, rng, signing_key
        self.state = DecryptorState.IDLE
        self._secret: Any = None
        self._blind: kex.KeyPair | None = None
        self._suspects: dict[int, bytes] = {}  # SUSPECT: contributor -> blind seed
        self._retry: tuple[int, ...] = ()  # RETRY: who the one more request must name
        #: what this decryptor released (with the DP event of its noise), once RELEASED
        self.released: AggregateResult | None = None

    def receive(self, msg: Message) -> list[Message]:
        if type(msg) is DecryptRequest and self.state is DecryptorState.RELEASED:
            check_header(msg, DecryptRequest, self.config, sender=SERVER, recipient=DECRYPTOR)
            raise DecryptionSpent("this round's aggregate was already decrypted; the key is gone")
        nxt = transition(DECRYPTOR_TRANSITIONS, self.state, msg.KIND)
        handler = self._HANDLERS.get(type(msg))
        if handler is None:
            raise ProtocolError(f"the decryptor takes no {type(msg).__name__}")
        return handler(self, msg, nxt)

    def _on_context_request(self, msg: Message, nxt: DecryptorState) -> list[Message]:
        kind, cfg = self.SCHEME.kind, self.config
        _check_scheme(check_header(msg, ContextRequest, cfg, sender=SERVER,
                                   recipient=DECRYPTOR), kind)
        context, self._secret = self.SCHEME.keygen(cfg, self._rng)
        self._blind = kex.KeyPair.generate(self._rng)
        sig = b"" if self._signing_key is None else sign.sign(
            self._signing_key, _statement(cfg, kind, context, self._blind.public))
        self.state = nxt
        return [PublicContext(**header(cfg, DECRYPTOR, SERVER), scheme=kind, context=context,
                              blind_key=self._blind.public, signature=sig)]

    def _on_decrypt_request(self, msg: Message, nxt: DecryptorState) -> list[Message]:
        kind, cfg = self.SCHEME.kind, self.config
        m = check_header(msg, DecryptRequest, cfg, sender=SERVER, recipient=DECRYPTOR)
        _check_scheme(m, kind)
        ids = m.contributors
        if list(ids) != sorted(set(ids)) or not all(0 <= u < cfg.n_clients for u in ids):
            raise ProtocolError(f"contributors must be distinct client ids in order, got {ids}")
        if len(ids) < cfg.release_floor:
            raise DropoutError(f"an aggregate of {len(ids)} clients; an HE round releases "
                               f"only over {cfg.release_floor} (max(2, min_clients)) or more")
        retry = self.state is DecryptorState.RETRY
        if retry and ids != self._retry:
            raise ProtocolError(f"after the verdict only {self._retry} may be asked for, "
                                f"got {ids}")
        if len(m.envelopes) != len(ids):
            raise ProtocolError(f"{len(m.envelopes)} blind envelopes for {len(ids)} contributors")
        seeds = self._open(ids, m.envelopes)
        aggregate = self.SCHEME.open_blocks(cfg, self._secret, m.blocks)
        # From here this decryption is spent, whatever happens: stay ABORTED (and forget the
        # keys) unless it releases, or it leads to identification.
        secret, self.state = self._secret, DecryptorState.ABORTED
        try:
            int_sum = self.SCHEME.decrypt(cfg, secret, aggregate, seeds)
        except FarOutOfRange:
            if retry or not self.SCHEME.identifies:
                self._forget()
                raise
            self._suspects, self.state = dict(zip(ids, seeds)), DecryptorState.SUSPECT
            return [IdentifyRequest(**header(cfg, DECRYPTOR, SERVER), scheme=kind,
                                    contributors=ids)]
        except ProtocolError:
            self._forget()
            raise
        self._forget()
        event = None
        if cfg.noise is not None:
            int_sum, event = cfg.noise.add_noise(int_sum, self._rng)
        wire_event = encode_event(event)
        values, weight = cfg.encoding.decode(int_sum)
        exact_sum = int_sum if self.SCHEME.exact else None
        self.released = AggregateResult(values, weight, ids, exact_sum, event)
        self.state = nxt
        return [ReleasedAggregate(**header(cfg, DECRYPTOR, SERVER), scheme=kind, values=values,
                                  total_weight=weight, int_sum=exact_sum, contributors=ids,
                                  dp_event=wire_event)]

    def _on_test_request(self, msg: Message, nxt: DecryptorState) -> list[Message]:
        """One masked test per suspect, answered once: the verdict is 1 bit per client."""
        kind, cfg = self.SCHEME.kind, self.config
        m = check_header(msg, TestRequest, cfg, sender=SERVER, recipient=DECRYPTOR)
        _check_scheme(m, kind)
        ids = tuple(self._suspects)
        if m.contributors != ids or len(m.tests) != len(ids):
            raise ProtocolError(f"one test for each of {ids}, got {len(m.tests)} for "
                                f"{m.contributors}")
        for block in m.tests:  # parse everything before answering anything
            self.SCHEME.open_blocks(cfg, self._secret, (block,))
        culprits = tuple(u for u, block in zip(ids, m.tests)
                         if not self.SCHEME.test(cfg, self._secret, block, self._suspects[u],
                                                 self._rng))
        self._suspects = {}
        if not culprits:
            self._forget()
            self.state = DecryptorState.ABORTED
            raise ProtocolError("every contributor's own upload is in range, so the aggregate "
                                "was not the sum of their uploads; nothing is released")
        self._retry, self.state = tuple(u for u in ids if u not in culprits), nxt
        return [Verdict(**header(cfg, DECRYPTOR, SERVER), scheme=kind, culprits=culprits)]

    def _open(self, ids: tuple[int, ...], envelopes: tuple[bytes, ...]) -> list[bytes]:
        cfg = self.config
        if self._blind is None:  # pragma: no cover - KEYED implies both keys exist
            raise UsageError("no blind key")
        return [open_envelope(env, session=cfg.session, round_id=cfg.round_id,
                              scheme=self.SCHEME.kind.value, client=u,
                              blind_secret=self._blind.secret, blind_key=self._blind.public,
                              verify_key=self._registry.verify_key(u))
                for u, env in zip(ids, envelopes)]

    def _forget(self) -> None:
        self._secret, self._blind, self._suspects, self._retry = None, None, {}, ()

    _HANDLERS: ClassVar[dict[type, Callable[[HeDecryptor, Message, Any], list[Message]]]] = {
        ContextRequest: _on_context_request,
        DecryptRequest: _on_decrypt_request,
        TestRequest: _on_test_request,
    }
