"""One conformance suite that every registered protocol runs: the kit's
:class:`protocols.testing.ProtocolConformance` (dp_accounting's shared base test).

A class per registered protocol (ckks and paillier register when tenseal / phe import), plus
the active-adversary variant of secagg and secagg+ (a config option rather than a protocol of
its own), is generated below, so a protocol that registers itself is held to the same
contract with no change here. What the contract checks is listed in
:mod:`protocols.testing.conformance`.
"""

from __future__ import annotations

import protocols
from protocols.testing import ProtocolConformance

_ACTIVE = ("secagg", "secagg+")
CASES = [(name, {}) for name in protocols.names()] + [
    (f"{name}:{variant}", {v: True for v in variant.split("+")})
    for name in _ACTIVE if name in protocols.names()
    for variant in ("active", "enrolled", "enrolled+active")
]

for _case, _options in CASES:
    _name = _case.partition(":")[0]
    _ident = "".join(ch if ch.isalnum() else "_" for ch in _case.replace("+", "plus"))
    _cls = type(f"TestConformance_{_ident}", (ProtocolConformance,),
                {"protocol": _name, "options": _options, "__module__": __name__})
    globals()[_cls.__name__] = _cls
del _cls
