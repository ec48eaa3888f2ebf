"""he: what the homomorphic protocols (ckks, paillier) share, public.

A scheme (:class:`HeScheme`) supplies the cryptography; :mod:`protocols.he.roles` runs it as
three sans-IO roles: :class:`HeClient`, :class:`HeAggregator` (the server) and
:class:`HeDecryptor` (the helper at address ``DECRYPTOR``), with one-time blinds that make
the aggregator's claim checkable (:mod:`protocols.he.blind`). The state machines are data in
:mod:`protocols.he.state`; the messages are in :mod:`protocols.he.messages`. The cores never
start a process or a thread: a driver that wants encryption spread over processes passes an
executor-like ``map`` to the client (:func:`fl.engines.pool.process_map`).
"""

from __future__ import annotations

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
from protocols.he.roles import (
    DecryptionSpent,
    FarOutOfRange,
    HeAggregator,
    HeClient,
    HeConfig,
    HeDecryptor,
    HeScheme,
    MapFn,
    provision,
)
from protocols.he.state import HeKind

__all__ = [
    "ContextRequest", "DecryptRequest", "DecryptionSpent", "EncryptedInput", "FarOutOfRange",
    "HeAggregator", "HeClient", "HeConfig", "HeDecryptor", "HeKind", "HeScheme",
    "IdentifyRequest", "InputRequest", "MapFn", "PublicContext", "ReleasedAggregate",
    "TestRequest", "Verdict", "provision",
]
