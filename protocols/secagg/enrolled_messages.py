"""The messages of the enrolled mode (frozen, slotted, wire-registered under 0x025x).

Parts shared with the per-round-setup protocol (:class:`SealedShare`, :class:`Share`,
:class:`Shares`, :class:`Signed`) come from :mod:`protocols.secagg.messages`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from protocols.base import Message
from protocols.secagg._enrolled_state import Kind
from protocols.secagg.messages import SealedShare, Share, Shares, Signed
from secagg import wire

__all__ = [
    "ConsistencyRequest", "ConsistencyResponse", "Escrow", "EscrowRequest", "Partial",
    "RoundSeed", "SealedShare", "Share", "Shares", "Signed", "Upload", "UploadRequest",
    "UnmaskRequest", "UnmaskResponse",
]


@dataclass(frozen=True, slots=True)
class Escrow:
    """The sender's round seed with ``peer``, encrypted to a key that t of the sender's
    share holders can rebuild for this one (sender, peer) label (:mod:`secagg.threshold`)."""

    peer: int
    ciphertext: bytes  # AEAD of the 32-byte round seed


@dataclass(frozen=True, slots=True)
class EscrowRequest:
    """Asks a holder for its partial of ``owner``'s escrow with ``dropped`` (the holder
    derives the escrow's point from the pair itself)."""

    owner: int
    dropped: int


@dataclass(frozen=True, slots=True)
class Partial:
    """A holder's partial decryption for (owner, dropped)."""

    owner: int
    dropped: int
    value: bytes


@dataclass(frozen=True, slots=True)
class RoundSeed:
    """The sender's own round seed with ``peer``, a neighbour the server says dropped."""

    peer: int
    seed: bytes


@wire.register(0x0251)
@dataclass(frozen=True, slots=True)
class UploadRequest(Message):
    """Opens the round: the cohort (sorted), which with session and round fixes the graph."""

    cohort: tuple[int, ...]
    KIND: ClassVar[enum.Enum] = Kind.UPLOAD_REQUEST


@wire.register(0x0252)
@dataclass(frozen=True, slots=True)
class Upload(Message):
    """Masked input, one sealed share per neighbour, one escrowed round seed per neighbour,
    and the SHA-256 commitment to the self-mask seed the shares are of (the server checks the
    seed it rebuilds against it, so a forged share is caught, never a wrong sum)."""

    masked: np.ndarray
    shares: tuple[SealedShare, ...]
    escrow: tuple[Escrow, ...]
    commitment: bytes
    KIND: ClassVar[enum.Enum] = Kind.UPLOAD


@wire.register(0x0253)
@dataclass(frozen=True, slots=True)
class ConsistencyRequest(Message):
    """Active variant: every client whose upload arrived."""

    survivors: tuple[int, ...]
    KIND: ClassVar[enum.Enum] = Kind.CONSISTENCY_REQUEST


@wire.register(0x0254)
@dataclass(frozen=True, slots=True)
class ConsistencyResponse(Message):
    """Active variant: the sender's signature on the survivor list."""

    signature: bytes
    KIND: ClassVar[enum.Enum] = Kind.CONSISTENCY_RESPONSE


@wire.register(0x0255)
@dataclass(frozen=True, slots=True)
class UnmaskRequest(Message):
    """For the recipient's neighbours: who survived (with itself) and who dropped; the
    survivors' sealed shares for it; the escrows it should help open."""

    survivors: tuple[int, ...]
    dropped: tuple[int, ...]
    shares: tuple[SealedShare, ...]
    escrow: tuple[EscrowRequest, ...]
    signatures: tuple[Signed, ...] = ()
    KIND: ClassVar[enum.Enum] = Kind.UNMASK_REQUEST


@wire.register(0x0256)
@dataclass(frozen=True, slots=True)
class UnmaskResponse(Message):
    """Shares of survivors' self-mask seeds, own round seeds with dropped neighbours, and
    partial decryptions of survivors' escrows with dropped clients."""

    seed_shares: Shares
    round_seeds: tuple[RoundSeed, ...]
    partials: tuple[Partial, ...]
    KIND: ClassVar[enum.Enum] = Kind.UNMASK_RESPONSE
