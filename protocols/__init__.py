"""Sans-IO protocol cores: one state machine per protocol and role, one shared interface.

``protocols.get(name)`` returns a :class:`~protocols.base.ProtocolSpec`; ``protocols.names()``
lists what is available. Protocols whose optional dependencies are missing (tenseal, phe)
are simply not registered. Other packages add protocols through the entry-point group
``secagg.protocols`` (:mod:`protocols.registry`). ``protocols.aggregate`` runs one round in
one call; ``protocols.build_parties`` (:mod:`protocols.parties`) and ``protocols.Router``
(:mod:`protocols.harness`) are what every driver builds and runs a round with;
``protocols.testing`` is the testing kit.
"""

from __future__ import annotations

from protocols import plaintext as _plaintext
from protocols import secagg as _secagg
from protocols.base import (
    DECRYPTOR,
    MIN_CONTRIBUTORS,
    PROTOCOL_VERSION,
    SERVER,
    AggregateResult,
    ClientCore,
    Message,
    NoiseHook,
    Party,
    ProtocolSpec,
    RoundConfig,
    ServerCore,
    check_release,
)
from protocols.harness import Router, aggregate
from protocols.parties import build_parties
from protocols.policy import AnsweredRequests, ClientPolicy, MemoryAnsweredRequests
from protocols.registry import get, names, plugin_errors, register

register(_plaintext.SPEC)
register(_secagg.SECAGG)
register(_secagg.SECAGG_PLUS)

try:  # optional: needs tenseal
    from protocols import ckks as _ckks
except ImportError:
    pass
else:
    register(_ckks.SPEC)
try:  # optional: needs phe and gmpy2
    from protocols import paillier as _paillier
except ImportError:
    pass
else:
    register(_paillier.SPEC)

__all__ = [
    "DECRYPTOR", "MIN_CONTRIBUTORS", "PROTOCOL_VERSION", "SERVER", "AggregateResult",
    "AnsweredRequests", "ClientCore", "ClientPolicy", "MemoryAnsweredRequests", "Message",
    "NoiseHook", "Party", "ProtocolSpec", "RoundConfig", "Router", "ServerCore", "aggregate",
    "build_parties", "check_release", "get", "names", "plugin_errors", "register",
]
