"""The messages of SecAgg / SecAgg+ (frozen, slotted, wire-registered under 0x02xx)."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Self, TypeVar, overload

import numpy as np

from protocols.base import Message
from protocols.secagg._state import Kind
from secagg import wire
from secagg.errors import ProtocolError

__all__ = [
    "ConsistencyRequest", "ConsistencyResponse", "Signed",
    "AdvertiseKeys", "KeyBroadcast", "KeyRequest", "MaskedInput", "PublicKeys", "Roster", "RosterEntry",
    "SealedShare", "SealedShares",
    "ShareForward", "ShareKeys", "Share", "Shares", "UnmaskRequest", "UnmaskResponse",
]

R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class PublicKeys:
    """One client's advertisement as the server relays it: two X25519 public keys for this
    round, its commitment to its self-mask seed, and its fresh nonce."""

    client: int
    c_pk: bytes  # for encrypting shares
    s_pk: bytes  # for pairwise mask agreement
    signature: bytes = b""  # active variant: the owner's Ed25519 signature (advert_message)
    commitment: bytes = b""  # SHA-256 commitment to the self-mask seed b_u
    nonce: bytes = b""  # 16 fresh bytes of the client: randomness the server does not choose


@dataclass(frozen=True, slots=True)
class RosterEntry:
    """One advertisement the server included in the round, as its digest (and, active
    variant, its owner's signature over it)."""

    client: int
    digest: bytes
    signature: bytes = b""


@dataclass(frozen=True, slots=True)
class Roster:
    """Every advertisement the server included in the round, in columns: the clients (in
    increasing order), their advertisement digests back to back, and (active variant) their
    owners' signatures over them back to back, empty otherwise.

    Each of n clients is sent the n entries: as three columns a client reads (and hashes
    into the transcript) them without an object per entry. Receivers check the columns'
    sizes (:meth:`check`); iterating (for tools and tests) yields :class:`RosterEntry`
    records, and :meth:`of` builds the columns from records.
    """

    clients: tuple[int, ...] = ()
    digests: bytes = b""
    signatures: bytes = b""

    @classmethod
    def of(cls, entries: Iterable[RosterEntry]) -> Roster:
        """The columns of ``entries`` (their digests and signatures joined as they are)."""
        items = tuple(entries)
        return cls(tuple(e.client for e in items), b"".join(e.digest for e in items),
                   b"".join(e.signature for e in items))

    def __len__(self) -> int:
        return len(self.clients)

    def check(self, digest_size: int, signature_size: int) -> None:
        """Each column holds one record per client: digests of ``digest_size`` bytes and
        signatures of ``signature_size`` (0: none).

        Raises:
            ProtocolError: a column of another size.
        """
        n = len(self.clients)
        for what, blob, size in (("digests", self.digests, digest_size),
                                 ("signatures", self.signatures, signature_size)):
            if len(blob) != n * size:
                raise ProtocolError(f"roster {what} must be {size} bytes for each of its {n} "
                                    f"clients, got {len(blob)} bytes")

    def _sizes(self) -> tuple[int, int]:
        n = len(self.clients)
        return (len(self.digests) // n, len(self.signatures) // n) if n else (0, 0)

    def digest(self, i: int) -> bytes:
        """The i-th client's advertisement digest."""
        d = self._sizes()[0]
        return self.digests[i * d:(i + 1) * d]

    def signature(self, i: int) -> bytes:
        """The i-th client's signature over its digest (empty unless active)."""
        s = self._sizes()[1]
        return self.signatures[i * s:(i + 1) * s]

    def __iter__(self) -> Iterator[RosterEntry]:
        for i, u in enumerate(self.clients):
            yield RosterEntry(u, self.digest(i), self.signature(i))


class _Columns(Generic[R]):
    """Records of (party, fixed-size bytes) held as two columns: a tuple of parties and
    their byte strings back to back, all of one size, the i-th belonging to the i-th party.

    A server relays or collects n·k such records in a round: as one byte string per
    message, neither side of the wire builds an object per record. Receivers check the
    blob against the size the protocol fixes; iterating (for tools and tests) yields
    records, and :meth:`of` builds the columns from records.
    """

    __slots__ = ()
    _RECORD: ClassVar[Callable[[int, bytes], Any]]

    def _columns(self) -> tuple[tuple[int, ...], bytes]:
        raise NotImplementedError

    @classmethod
    def of(cls, records: Iterable[R]) -> Self:
        """The columns of ``records`` (their byte strings joined as they are)."""
        items = [dataclasses.astuple(r) for r in records]  # type: ignore[call-overload]
        return cls(tuple(i for i, _ in items), b"".join(b for _, b in items))  # type: ignore[call-arg]

    def __len__(self) -> int:
        return len(self._columns()[0])

    def _size(self) -> int:
        parties, blob = self._columns()
        if not parties:
            return 0
        size, rest = divmod(len(blob), len(parties))
        if rest:
            raise ProtocolError(f"{len(blob)} bytes of {type(self).__name__} do not split "
                                f"into {len(parties)} equal records")
        return size

    def __iter__(self) -> Iterator[R]:
        (parties, blob), size, make = self._columns(), self._size(), type(self)._RECORD
        for i, party in enumerate(parties):
            yield make(party, blob[i * size:(i + 1) * size])

    @overload
    def __getitem__(self, index: int) -> R: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[R, ...]: ...
    def __getitem__(self, index: int | slice) -> R | tuple[R, ...]:
        records = tuple(self)
        return records[index]


@dataclass(frozen=True, slots=True)
class SealedShare:
    """An AEAD ciphertext holding the shares one client sends another."""

    peer: int  # the other party: recipient in ShareKeys, sender in ShareForward
    ciphertext: bytes


@dataclass(frozen=True, slots=True)
class Share:
    """One Shamir share of ``owner``'s secret, held by the message's sender."""

    owner: int
    value: bytes


@dataclass(frozen=True, slots=True)
class SealedShares(_Columns[SealedShare]):
    """The sealed shares of one client's neighbourhood (:class:`_Columns`): ``sealed``
    holds the ciphertexts, the i-th exchanged with ``peers[i]``; receivers check it against
    the protocol's ciphertext size."""

    peers: tuple[int, ...] = ()
    sealed: bytes = b""
    _RECORD: ClassVar[Callable[[int, bytes], Any]] = SealedShare

    def _columns(self) -> tuple[tuple[int, ...], bytes]:
        return self.peers, self.sealed


@dataclass(frozen=True, slots=True)
class Shares(_Columns[Share]):
    """Shamir shares the sender holds of several owners' secrets (:class:`_Columns`):
    ``values`` holds them, the i-th of ``owners[i]``'s secret; receivers check it against
    :data:`secagg.shamir.SHARE_SIZE`."""

    owners: tuple[int, ...] = ()
    values: bytes = b""
    _RECORD: ClassVar[Callable[[int, bytes], Any]] = Share

    def _columns(self) -> tuple[tuple[int, ...], bytes]:
        return self.owners, self.values


@dataclass(frozen=True, slots=True)
class Signed:
    """A client's signature (active variant)."""

    client: int
    signature: bytes


@wire.register(0x0201)
@dataclass(frozen=True, slots=True)
class KeyRequest(Message):
    KIND: ClassVar[enum.Enum] = Kind.KEY_REQUEST


@wire.register(0x0202)
@dataclass(frozen=True, slots=True)
class AdvertiseKeys(Message):
    c_pk: bytes
    s_pk: bytes
    signature: bytes = b""  # active variant only
    commitment: bytes = b""  # SHA-256 commitment to the self-mask seed
    nonce: bytes = b""  # the client's fresh contribution to the transcript
    KIND: ClassVar[enum.Enum] = Kind.ADVERTISE_KEYS


@wire.register(0x0203)
@dataclass(frozen=True, slots=True)
class KeyBroadcast(Message):
    """The roster of every advertisement the server included (the graph and the transcript
    are computed from it), and the full advertisements of the recipient's neighbours in that
    graph and of itself."""

    keys: tuple[PublicKeys, ...]
    roster: Roster = Roster()
    KIND: ClassVar[enum.Enum] = Kind.KEY_BROADCAST


@wire.register(0x0204)
@dataclass(frozen=True, slots=True)
class ShareKeys(Message):
    shares: SealedShares  # to each neighbour: peers are the recipients
    KIND: ClassVar[enum.Enum] = Kind.SHARE_KEYS


@wire.register(0x0205)
@dataclass(frozen=True, slots=True)
class ShareForward(Message):
    shares: SealedShares  # from each neighbour that shared: peers are the senders
    KIND: ClassVar[enum.Enum] = Kind.SHARE_FORWARD


@wire.register(0x0206)
@dataclass(frozen=True, slots=True)
class MaskedInput(Message):
    masked: np.ndarray
    KIND: ClassVar[enum.Enum] = Kind.MASKED_INPUT


@wire.register(0x0207)
@dataclass(frozen=True, slots=True)
class UnmaskRequest(Message):
    """Which of the recipient's neighbours survived (and itself), and which dropped."""

    survivors: tuple[int, ...]
    dropped: tuple[int, ...]
    signatures: tuple[Signed, ...] = ()  # active variant: signatures on the survivor list
    KIND: ClassVar[enum.Enum] = Kind.UNMASK_REQUEST


@wire.register(0x0208)
@dataclass(frozen=True, slots=True)
class UnmaskResponse(Message):
    """Shares of the survivors' self-mask seeds and of the dropped clients' mask keys."""

    seed_shares: Shares
    key_shares: Shares
    KIND: ClassVar[enum.Enum] = Kind.UNMASK_RESPONSE


@wire.register(0x0209)
@dataclass(frozen=True, slots=True)
class ConsistencyRequest(Message):
    """Active variant: the list of every client whose masked input arrived."""

    survivors: tuple[int, ...]
    KIND: ClassVar[enum.Enum] = Kind.CONSISTENCY_REQUEST


@wire.register(0x020A)
@dataclass(frozen=True, slots=True)
class ConsistencyResponse(Message):
    """Active variant: the sender's signature on the survivor list."""

    signature: bytes
    KIND: ClassVar[enum.Enum] = Kind.CONSISTENCY_RESPONSE
