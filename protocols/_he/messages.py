"""The messages of the HE protocols (frozen, slotted, wire-registered under 0x03xx)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from protocols._he._state import HeKind, Kind
from protocols.base import Message
from secagg import wire

__all__ = ["ContextRequest", "DecryptRequest", "EncryptedInput", "InputRequest",
           "PublicContext", "ReleasedAggregate"]


@wire.register(0x0301)
@dataclass(frozen=True, slots=True)
class ContextRequest(Message):
    scheme: HeKind
    KIND: ClassVar[enum.Enum] = Kind.CONTEXT_REQUEST


@wire.register(0x0302)
@dataclass(frozen=True, slots=True)
class PublicContext(Message):
    """The round's public key material; ``signature`` is empty unless the decryptor signs."""

    scheme: HeKind
    context: bytes
    signature: bytes
    KIND: ClassVar[enum.Enum] = Kind.PUBLIC_CONTEXT


@wire.register(0x0303)
@dataclass(frozen=True, slots=True)
class InputRequest(Message):
    scheme: HeKind
    context: bytes
    signature: bytes
    KIND: ClassVar[enum.Enum] = Kind.INPUT_REQUEST


@wire.register(0x0304)
@dataclass(frozen=True, slots=True)
class EncryptedInput(Message):
    scheme: HeKind
    blocks: tuple[bytes, ...]
    KIND: ClassVar[enum.Enum] = Kind.ENCRYPTED_INPUT


@wire.register(0x0305)
@dataclass(frozen=True, slots=True)
class DecryptRequest(Message):
    """The one aggregate ciphertext, and whose inputs the aggregator says are in it."""

    scheme: HeKind
    blocks: tuple[bytes, ...]
    contributors: tuple[int, ...]
    KIND: ClassVar[enum.Enum] = Kind.DECRYPT_REQUEST


@wire.register(0x0306)
@dataclass(frozen=True, slots=True)
class ReleasedAggregate(Message):
    """The released sum (float64), its total weight, and for exact schemes the int64 sum."""

    scheme: HeKind
    values: np.ndarray
    total_weight: float
    int_sum: np.ndarray | None
    contributors: tuple[int, ...]
    KIND: ClassVar[enum.Enum] = Kind.RELEASED_AGGREGATE
