"""The messages of the HE protocols (frozen, slotted, wire-registered under 0x03xx)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from protocols.base import Message
from protocols.he.state import HeKind, Kind
from secagg import wire

__all__ = ["ContextRequest", "DecryptRequest", "EncryptedInput", "IdentifyRequest", "InputRequest",
           "PublicContext", "ReleasedAggregate", "TestRequest", "Verdict"]


@wire.register(0x0301)
@dataclass(frozen=True, slots=True)
class ContextRequest(Message):
    scheme: HeKind
    KIND: ClassVar[enum.Enum] = Kind.CONTEXT_REQUEST


@wire.register(0x0302)
@dataclass(frozen=True, slots=True)
class PublicContext(Message):
    """The round's public key material and the decryptor's X25519 key for blind envelopes;
    ``signature`` (over both) is empty unless the decryptor signs."""

    scheme: HeKind
    context: bytes
    blind_key: bytes
    signature: bytes
    KIND: ClassVar[enum.Enum] = Kind.PUBLIC_CONTEXT


@wire.register(0x0303)
@dataclass(frozen=True, slots=True)
class InputRequest(Message):
    scheme: HeKind
    context: bytes
    blind_key: bytes
    signature: bytes
    KIND: ClassVar[enum.Enum] = Kind.INPUT_REQUEST


@wire.register(0x0304)
@dataclass(frozen=True, slots=True)
class EncryptedInput(Message):
    """The blinded ciphertext, and the blind's seed sealed to the decryptor (``envelope``)."""

    scheme: HeKind
    blocks: tuple[bytes, ...]
    envelope: bytes
    KIND: ClassVar[enum.Enum] = Kind.ENCRYPTED_INPUT


@wire.register(0x0305)
@dataclass(frozen=True, slots=True)
class DecryptRequest(Message):
    """The one aggregate ciphertext, whose inputs the aggregator says are in it, and their
    blind envelopes (in the order of ``contributors``)."""

    scheme: HeKind
    blocks: tuple[bytes, ...]
    contributors: tuple[int, ...]
    envelopes: tuple[bytes, ...]
    KIND: ClassVar[enum.Enum] = Kind.DECRYPT_REQUEST


@wire.register(0x0306)
@dataclass(frozen=True, slots=True)
class ReleasedAggregate(Message):
    """The released sum (float64), its total weight, for exact schemes the int64 sum, and
    the DP event the decryptor's noise hook charged (:func:`protocols.he.blind.encode_event`)."""

    scheme: HeKind
    values: np.ndarray
    total_weight: float
    int_sum: np.ndarray | None
    contributors: tuple[int, ...]
    dp_event: bytes
    KIND: ClassVar[enum.Enum] = Kind.RELEASED_AGGREGATE


@wire.register(0x0307)
@dataclass(frozen=True, slots=True)
class IdentifyRequest(Message):
    """The aggregate decrypted far out of range: send one masked test per contributor."""

    scheme: HeKind
    contributors: tuple[int, ...]
    KIND: ClassVar[enum.Enum] = Kind.IDENTIFY_REQUEST


@wire.register(0x0308)
@dataclass(frozen=True, slots=True)
class TestRequest(Message):
    """Each contributor's own upload, re-masked by the aggregator (one block each, in the
    order of ``contributors``)."""

    __test__ = False  # not a pytest class
    scheme: HeKind
    contributors: tuple[int, ...]
    tests: tuple[bytes, ...]
    KIND: ClassVar[enum.Enum] = Kind.TEST_REQUEST


@wire.register(0x0309)
@dataclass(frozen=True, slots=True)
class Verdict(Message):
    """The contributors whose own upload is far out of range (empty: none is)."""

    scheme: HeKind
    culprits: tuple[int, ...]
    KIND: ClassVar[enum.Enum] = Kind.VERDICT
