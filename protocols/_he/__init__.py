"""The roles that ckks and paillier share: client, aggregator (the server) and decryptor.

Theory of operation (DESIGN.md, "HE roles"). A scheme object (:class:`HeScheme`) supplies
the cryptography; this module supplies the one state machine all homomorphic protocols run::

    aggregator (SERVER)              decryptor (DECRYPTOR)             client u
    start:  CONTEXT_REQUEST  ----->  fresh key pair for this round
            PUBLIC_CONTEXT   <-----  public part only (no secret key, no relinearisation
                                     or Galois keys), signed if config.decryptor_key is set
    INPUT_REQUEST(context)   --------------------------------------> check it, encrypt
    running sum of ciphertexts  <---------------------------------- ENCRYPTED_INPUT
    close:  DECRYPT_REQUEST  ----->  >= min_clients? decrypt ONCE, range-check, DP noise,
                                     decode, forget the secret key
            RELEASED_AGGREGATE <---  the released (noised) sum

The aggregator only ever holds the public context and one running sum (plus the upload it is
adding); it never keeps per-client ciphertexts. The decryptor sees one aggregate ciphertext
per round and decrypts at most once: a second request is :class:`DecryptionSpent`
(both :class:`AlreadyFinalized` and :class:`ProtocolError`).
Refusals are typed: clients abort for good on any :class:`ProtocolError`; the aggregator and
the decryptor refuse the one message and stay where they were, except that a decryption
whose plaintext fails its range check has already happened, so the decryptor aborts.

.. warning:: without ``decryptor_key`` nothing binds the public context to the decryptor: an
   aggregator that substitutes a context of its own can decrypt every upload (SECURITY.md).
"""

from __future__ import annotations

import abc
import hashlib
import os
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from protocols._he._state import (
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
from protocols._he.messages import (
    ContextRequest,
    DecryptRequest,
    EncryptedInput,
    InputRequest,
    PublicContext,
    ReleasedAggregate,
)
from protocols._he.pool import parallel_map
from protocols._machine import transition
from protocols.base import (
    DECRYPTOR,
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
from secagg import sign
from secagg.errors import (
    AlreadyFinalized,
    ConfigError,
    DropoutError,
    LateMessageError,
    ProtocolError,
    UsageError,
)
from secagg.rng import Csprng

__all__ = [
    "CLIENT_TRANSITIONS", "DECRYPTOR_TRANSITIONS", "SERVER_TRANSITIONS", "ContextRequest",
    "DecryptRequest", "DecryptionSpent", "EncryptedInput", "HeAggregator", "HeClient", "HeConfig",
    "HeDecryptor", "HeKind", "HeScheme", "InputRequest", "Kind", "PublicContext",
    "ReleasedAggregate", "parallel_map",
]

class DecryptionSpent(AlreadyFinalized, ProtocolError):
    """A second decryption request in a round: the one-shot decryption is spent
    (:class:`AlreadyFinalized`) and the aggregator replayed or forged a request
    (:class:`ProtocolError`, so drivers that refuse peer errors and carry on handle it)."""


# -- configuration and the scheme interface ---------------------------------------------
@dataclass(frozen=True)
class HeConfig(RoundConfig):
    """A round of a homomorphic protocol.

    Args (beyond :class:`RoundConfig`):
        workers: processes a client encrypts with (1: in this process).
        decryptor_key: the decryptor's Ed25519 verify key (32 bytes). When set, clients and
            the aggregator accept only a public context the decryptor signed for this
            session, round and scheme.
    """

    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    decryptor_key: bytes | None = None

    def __post_init__(self) -> None:
        RoundConfig.__post_init__(self)
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 1:
            raise ConfigError(f"workers must be an integer >= 1, got {self.workers!r}")
        if self.decryptor_key is not None and len(self.decryptor_key) != sign.VERIFY_KEY_SIZE:
            raise ConfigError(f"decryptor_key must be a {sign.VERIFY_KEY_SIZE}-byte Ed25519 "
                              f"verify key, got {len(self.decryptor_key)} bytes")


class HeScheme(abc.ABC):
    """The cryptography of one homomorphic scheme; the roles below call nothing else.

    Every method that reads peer data raises :class:`ProtocolError` on anything it refuses
    and changes nothing before it has validated everything.
    """

    kind: ClassVar[HeKind]
    exact: ClassVar[bool]

    @abc.abstractmethod
    def keygen(self, config: Any, rng: Csprng) -> tuple[bytes, Any]:
        """A fresh key pair: (public context bytes, secret state). Decryptor only."""

    @abc.abstractmethod
    def load_public(self, config: Any, context: bytes) -> Any:
        """Parse and check a public context; refuses one that holds a secret key."""

    @abc.abstractmethod
    def prepare(self, config: Any, update: np.ndarray, weight: float, rng: Csprng) -> np.ndarray:
        """Clip, weight (and for exact schemes quantise) an update: ``dim + 1`` values."""

    @abc.abstractmethod
    def encrypt(self, config: Any, context: bytes, public: Any, prepared: np.ndarray,
                rng: Csprng) -> tuple[bytes, ...]:
        """Encrypt prepared values into wire blocks."""

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
    def decrypt(self, config: Any, secret: Any, aggregate: Any, count: int) -> np.ndarray:
        """Decrypt once and range-check: the int64 sum in fixed-point units (``dim + 1``)."""


def _statement(config: RoundConfig, kind: HeKind, context: bytes) -> bytes:
    """What the decryptor signs: the context's hash bound to session, round and scheme."""
    s = config.session
    return (b"secagg/he/public-context/v1\x00" + len(s).to_bytes(4, "big") + s
            + config.round_id.to_bytes(8, "big") + bytes([kind.value])
            + hashlib.sha256(context).digest())


def _check_context(config: HeConfig, kind: HeKind, context: bytes, signature: bytes) -> None:
    if config.decryptor_key is not None:
        sign.verify(config.decryptor_key, _statement(config, kind, context), signature)
    elif signature:
        raise ProtocolError("a signed context, but this round has no decryptor_key to check it")


def _check_scheme(msg: Any, kind: HeKind) -> None:
    if msg.scheme is not kind:
        raise ProtocolError(f"a {msg.scheme.name} message in a {kind.name} round")


# -- the roles ---------------------------------------------------------------------------
class HeClient(ClientCore):
    """A client: checks the public context it is given, encrypts, sends ciphertext."""

    SCHEME: ClassVar[HeScheme]

    def __init__(self, config: HeConfig, client_id: int, rng: Csprng) -> None:
        self.config, self.client_id, self._rng = config, client_id, rng
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
        kind = self.SCHEME.kind
        try:
            nxt = transition(CLIENT_TRANSITIONS, self.state, msg.KIND)
            m = check_header(msg, InputRequest, self.config, sender=SERVER,
                             recipient=self.client_id)
            _check_scheme(m, kind)
            _check_context(self.config, kind, m.context, m.signature)
            public = self.SCHEME.load_public(self.config, m.context)
        except ProtocolError:
            self.state = ClientState.ABORTED
            raise
        if self._prepared is None:
            raise UsageError("set_input() must be called before the input is requested")
        blocks = self.SCHEME.encrypt(self.config, m.context, public, self._prepared, self._rng)
        self.state, self._prepared = nxt, None
        return [EncryptedInput(**header(self.config, self.client_id, SERVER), scheme=kind,
                               blocks=blocks)]


class HeAggregator(ServerCore):
    """The aggregator: relays the public context, adds ciphertexts, asks for one decryption."""

    SCHEME: ClassVar[HeScheme]

    def __init__(self, config: HeConfig, rng: Csprng) -> None:
        self.config, self._rng = config, rng
        self.state = ServerState.NEW
        self._public: Any = None
        self._acc: Any = None
        self._seen: set[int] = set()
        self._contributors: tuple[int, ...] = ()
        self._result: AggregateResult | None = None

    @property
    def finished(self) -> bool:
        return self.state is ServerState.FINISHED

    def start(self) -> list[Message]:
        """Ask the decryptor for this round's public context."""
        self.state = transition(SERVER_TRANSITIONS, self.state, Event.START)
        return [ContextRequest(**header(self.config, SERVER, DECRYPTOR), scheme=self.SCHEME.kind)]

    def receive(self, msg: Message) -> list[Message]:
        """Take one message; refused ones raise (late: LateMessageError) and change nothing."""
        if self.state is ServerState.NEW:
            raise UsageError("call start() before receive()")
        if msg.KIND is Kind.ENCRYPTED_INPUT and self.state in (
                ServerState.AWAIT_RELEASE, ServerState.FINISHED, ServerState.ABORTED):
            raise LateMessageError(f"input from {msg.sender} arrived after the round closed")
        nxt = transition(SERVER_TRANSITIONS, self.state, msg.KIND)
        kind, cfg = self.SCHEME.kind, self.config
        if msg.KIND is Kind.PUBLIC_CONTEXT:
            pc = check_header(msg, PublicContext, cfg, sender=DECRYPTOR, recipient=SERVER)
            _check_scheme(pc, kind)
            _check_context(cfg, kind, pc.context, pc.signature)
            self._public, self.state = self.SCHEME.load_public(cfg, pc.context), nxt
            return [InputRequest(**header(cfg, SERVER, u), scheme=kind, context=pc.context,
                                 signature=pc.signature) for u in range(cfg.n_clients)]
        if msg.KIND is Kind.ENCRYPTED_INPUT:
            m = check_header(msg, EncryptedInput, cfg, sender=None, recipient=SERVER)
            _check_scheme(m, kind)
            if m.sender in self._seen:
                raise ProtocolError(f"client {m.sender} sent its input twice")
            upload = self.SCHEME.open_blocks(cfg, self._public, m.blocks)
            self._acc = self.SCHEME.add(cfg, self._public, self._acc, upload)
            self._seen.add(m.sender)
            return self.close_round() if len(self._seen) == cfg.n_clients else []
        r = check_header(msg, ReleasedAggregate, cfg, sender=DECRYPTOR, recipient=SERVER)
        _check_scheme(r, kind)
        self._result = self._check_release(r)
        self.state = nxt
        return []

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
        return AggregateResult(r.values, r.total_weight, r.contributors, r.int_sum, None)

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
        if len(self._seen) < self.config.release_floor:
            self.state = ServerState.ABORTED
            raise DropoutError(f"only {len(self._seen)} clients contributed; min_clients="
                               f"{self.config.min_clients} refuses to ask for a decryption")
        blocks = self.SCHEME.seal(self.config, self._public, self._acc)
        self._contributors = tuple(sorted(self._seen))
        self._acc, self.state = None, nxt
        return [DecryptRequest(**header(self.config, SERVER, DECRYPTOR), scheme=self.SCHEME.kind,
                               blocks=blocks, contributors=self._contributors)]

    def result(self) -> AggregateResult:
        if self._result is None:
            raise UsageError(f"no result: the round is {self.state.name}")
        return self._result


class HeDecryptor(Party):
    """The decryptor: makes the round's key, decrypts one aggregate once, noises, releases.

    .. warning:: holds the round's secret key until it has released the aggregate; nothing
       else in the protocol ever does. It must not collude with the aggregator.

    Args:
        signing_key: the 32-byte Ed25519 seed whose verify key is ``config.decryptor_key``
            (required exactly when that is set).
    """

    SCHEME: ClassVar[HeScheme]

    def __init__(self, config: HeConfig, rng: Csprng, signing_key: bytes | None = None) -> None:
        if (signing_key is None) != (config.decryptor_key is None) or (
                signing_key is not None and sign.verify_key(signing_key) != config.decryptor_key):
            raise ConfigError("the decryptor's signing_key must be given exactly when "
                              "config.decryptor_key is set, and match it")
        self.config, self._rng, self._signing_key = config, rng, signing_key
        self.state = DecryptorState.IDLE
        self._secret: Any = None
        #: what this decryptor released (with the DP event of its noise), once RELEASED
        self.released: AggregateResult | None = None

    def receive(self, msg: Message) -> list[Message]:
        kind, cfg = self.SCHEME.kind, self.config
        if msg.KIND is Kind.DECRYPT_REQUEST and self.state is DecryptorState.RELEASED:
            check_header(msg, DecryptRequest, cfg, sender=SERVER, recipient=DECRYPTOR)
            raise DecryptionSpent("this round's aggregate was already decrypted; the key is gone")
        nxt = transition(DECRYPTOR_TRANSITIONS, self.state, msg.KIND)
        if msg.KIND is Kind.CONTEXT_REQUEST:
            _check_scheme(check_header(msg, ContextRequest, cfg, sender=SERVER,
                                       recipient=DECRYPTOR), kind)
            context, self._secret = self.SCHEME.keygen(cfg, self._rng)
            sig = b"" if self._signing_key is None else sign.sign(
                self._signing_key, _statement(cfg, kind, context))
            self.state = nxt
            return [PublicContext(**header(cfg, DECRYPTOR, SERVER), scheme=kind,
                                  context=context, signature=sig)]
        m = check_header(msg, DecryptRequest, cfg, sender=SERVER, recipient=DECRYPTOR)
        _check_scheme(m, kind)
        ids = m.contributors
        if list(ids) != sorted(set(ids)) or not all(0 <= u < cfg.n_clients for u in ids):
            raise ProtocolError(f"contributors must be distinct client ids in order, got {ids}")
        if len(ids) < cfg.release_floor:
            raise DropoutError(f"an aggregate of {len(ids)} clients; min_clients="
                               f"{cfg.min_clients} refuses to decrypt it")
        aggregate = self.SCHEME.open_blocks(cfg, self._secret, m.blocks)
        # From here the one decryption is spent, whatever happens: forget the key, and stay
        # ABORTED unless the release completes.
        secret, self._secret = self._secret, None
        self.state = DecryptorState.ABORTED
        int_sum = self.SCHEME.decrypt(cfg, secret, aggregate, len(ids))
        event = None
        if cfg.noise is not None:
            int_sum, event = cfg.noise.add_noise(int_sum, self._rng)
        values, weight = cfg.encoding.decode(int_sum)
        exact_sum = int_sum if self.SCHEME.exact else None
        self.released = AggregateResult(values, weight, ids, exact_sum, event)
        self.state = nxt
        return [ReleasedAggregate(**header(cfg, DECRYPTOR, SERVER), scheme=kind, values=values,
                                  total_weight=weight, int_sum=exact_sum, contributors=ids)]
