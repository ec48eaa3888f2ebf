"""Every state change of the enrolled mode of SecAgg / SecAgg+ lives in this file, as data.

Enrolled clients hold long-term X25519 keys listed in a registry (see
:mod:`protocols.secagg.enrolled_keys`), so a round needs no key setup: it is two client
exchanges (three with the active variant's consistency check)::

    server                          client
    UPLOAD_REQUEST       ------->   IDLE -> UPLOADED
    COLLECT_UPLOADS      <-------   UPLOAD          (masked input + sealed shares + escrow)
    UNMASK_REQUEST       ------->   UPLOADED -> DONE
    COLLECT_UNMASK       <-------   UNMASK_RESPONSE
    FINISHED

The active variant inserts the signed survivor list between the two::

    CONSISTENCY_REQUEST  ------->   UPLOADED -> SIGNED
    COLLECT_SIGNATURES   <-------   CONSISTENCY_RESPONSE
    UNMASK_REQUEST       ------->   SIGNED -> DONE

The active tables are derived from the passive ones, not retyped. This file does not know
which role it plays for.
"""

from __future__ import annotations

import enum

__all__ = [
    "ACTIVE_CLIENT_TRANSITIONS", "ACTIVE_SERVER_TRANSITIONS", "CLIENT_TRANSITIONS",
    "SERVER_TRANSITIONS", "ClientState", "Event", "Kind", "ServerStage", "client_stages",
    "tables",
]


class Kind(enum.Enum):
    """Message kinds of the enrolled mode."""

    UPLOAD_REQUEST = 1
    UPLOAD = 2
    CONSISTENCY_REQUEST = 3
    CONSISTENCY_RESPONSE = 4
    UNMASK_REQUEST = 5
    UNMASK_RESPONSE = 6


class Event(enum.Enum):
    """Server events that are not messages."""

    DEADLINE = 1


class ClientState(enum.Enum):
    IDLE = 1
    UPLOADED = 2
    SIGNED = 3
    DONE = 4
    ABORTED = 5


class ServerStage(enum.Enum):
    COLLECT_UPLOADS = 1
    COLLECT_SIGNATURES = 2
    COLLECT_UNMASK = 3
    FINISHED = 4
    ABORTED = 5


CLIENT_TRANSITIONS: dict[tuple[ClientState, enum.Enum], ClientState] = {
    (ClientState.IDLE, Kind.UPLOAD_REQUEST): ClientState.UPLOADED,
    (ClientState.UPLOADED, Kind.UNMASK_REQUEST): ClientState.DONE,
}

SERVER_TRANSITIONS: dict[tuple[ServerStage, enum.Enum], ServerStage] = {
    (ServerStage.COLLECT_UPLOADS, Kind.UPLOAD): ServerStage.COLLECT_UPLOADS,
    (ServerStage.COLLECT_UPLOADS, Event.DEADLINE): ServerStage.COLLECT_UNMASK,
    (ServerStage.COLLECT_UNMASK, Kind.UNMASK_RESPONSE): ServerStage.COLLECT_UNMASK,
    (ServerStage.COLLECT_UNMASK, Event.DEADLINE): ServerStage.FINISHED,
}


def _with_consistency_client() -> dict[tuple[ClientState, enum.Enum], ClientState]:
    table = {key: nxt for key, nxt in CLIENT_TRANSITIONS.items()
             if key != (ClientState.UPLOADED, Kind.UNMASK_REQUEST)}
    table[(ClientState.UPLOADED, Kind.CONSISTENCY_REQUEST)] = ClientState.SIGNED
    table[(ClientState.SIGNED, Kind.UNMASK_REQUEST)] = ClientState.DONE
    return table


def _with_consistency_server() -> dict[tuple[ServerStage, enum.Enum], ServerStage]:
    table = dict(SERVER_TRANSITIONS)
    table[(ServerStage.COLLECT_UPLOADS, Event.DEADLINE)] = ServerStage.COLLECT_SIGNATURES
    table[(ServerStage.COLLECT_SIGNATURES, Kind.CONSISTENCY_RESPONSE)] = (
        ServerStage.COLLECT_SIGNATURES)
    table[(ServerStage.COLLECT_SIGNATURES, Event.DEADLINE)] = ServerStage.COLLECT_UNMASK
    return table


ACTIVE_CLIENT_TRANSITIONS = _with_consistency_client()
ACTIVE_SERVER_TRANSITIONS = _with_consistency_server()


def tables(active: bool) -> tuple[
    dict[tuple[ClientState, enum.Enum], ClientState],
    dict[tuple[ServerStage, enum.Enum], ServerStage],
]:
    """(client table, server table) of the passive or the active variant."""
    if active:
        return ACTIVE_CLIENT_TRANSITIONS, ACTIVE_SERVER_TRANSITIONS
    return CLIENT_TRANSITIONS, SERVER_TRANSITIONS


def client_stages(active: bool) -> tuple[str, ...]:
    """The kinds of message a client receives, in order (for drivers that drop clients)."""
    return tuple(kind.name for (_, kind) in tables(active)[0])
