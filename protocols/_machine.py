"""Table-driven state handling shared by every role.

A role owns a transition table ``{(state, message kind): next state}``: data, not if-chains.
:func:`step` looks the pair up; a pair that is not in the table is a protocol violation.
Clients abort for good on any violation (their only peer is the server, and a server that
misbehaves must get nothing more); servers refuse the one message and carry on.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import TypeVar

from secagg.errors import ProtocolError

__all__ = ["transition"]

S = TypeVar("S", bound=enum.Enum)


def transition(table: Mapping[tuple[S, enum.Enum], S], state: S, kind: enum.Enum) -> S:
    """The state after a message of ``kind`` arrives in ``state``.

    Raises:
        ProtocolError: the table has no such transition.
    """
    nxt = table.get((state, kind))
    if nxt is None:
        raise ProtocolError(f"{kind.name} is not allowed in state {state.name}")
    return nxt
