"""The messages of SecAgg / SecAgg+ (frozen, slotted, wire-registered under 0x02xx)."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import ClassVar, overload

import numpy as np

from protocols.base import Message
from protocols.secagg._state import Kind
from secagg import wire
from secagg.errors import ProtocolError

__all__ = [
    "ConsistencyRequest", "ConsistencyResponse", "Signed",
    "AdvertiseKeys", "KeyBroadcast", "KeyRequest", "MaskedInput", "PublicKeys", "RosterEntry",
    "SealedShare", "SealedShares",
    "ShareForward", "ShareKeys", "Share", "UnmaskRequest", "UnmaskResponse",
]


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
class SealedShare:
    """An AEAD ciphertext holding the shares one client sends another."""

    peer: int  # the other party: recipient in ShareKeys, sender in ShareForward
    ciphertext: bytes


@dataclass(frozen=True, slots=True)
class SealedShares:
    """The sealed shares of one client's neighbourhood, in two columns: ``sealed`` holds the
    ciphertexts back to back, all of one size, the i-th exchanged with ``peers[i]``.

    A server relays n·k of them in a round: as one byte string per message, neither side of
    the wire builds an object per share. Receivers check ``sealed`` against the protocol's
    ciphertext size; iterating (for tools and tests) yields :class:`SealedShare` records.
    """

    peers: tuple[int, ...] = ()
    sealed: bytes = b""

    @classmethod
    def of(cls, shares: Iterable[SealedShare]) -> SealedShares:
        """The columns of ``shares`` (their ciphertexts joined as they are)."""
        items = tuple(shares)
        return cls(tuple(s.peer for s in items), b"".join(s.ciphertext for s in items))

    def __len__(self) -> int:
        return len(self.peers)

    def _size(self) -> int:
        if not self.peers:
            return 0
        size, rest = divmod(len(self.sealed), len(self.peers))
        if rest:
            raise ProtocolError(f"{len(self.sealed)} bytes of sealed shares do not split into "
                                f"{len(self.peers)} equal ciphertexts")
        return size

    def __iter__(self) -> Iterator[SealedShare]:
        size, blob = self._size(), self.sealed
        for i, peer in enumerate(self.peers):
            yield SealedShare(peer, blob[i * size:(i + 1) * size])

    @overload
    def __getitem__(self, index: int) -> SealedShare: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[SealedShare, ...]: ...
    def __getitem__(self, index: int | slice) -> SealedShare | tuple[SealedShare, ...]:
        records = tuple(self)
        return records[index]


@dataclass(frozen=True, slots=True)
class Share:
    """One Shamir share of ``owner``'s secret, held by the message's sender."""

    owner: int
    value: bytes


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
    roster: tuple[RosterEntry, ...] = ()
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

    seed_shares: tuple[Share, ...]
    key_shares: tuple[Share, ...]
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
