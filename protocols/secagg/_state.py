"""Every state change of SecAgg / SecAgg+ lives in this file, as data.

The tables say which message kind each role may receive in each state, and where that
leads. Roles consult them and never re-encode the rules; tests walk every (state, kind) pair;
docs can draw the diagram from them. This file does not know which role it plays for.

Rounds (Bonawitz et al. 2017, section 4; Bell et al. 2020 for the sparse graph)::

    server                          client
    KEY_REQUEST          ------->   IDLE -> ADVERTISED
    COLLECT_KEYS         <-------   ADVERTISE_KEYS
    KEY_BROADCAST        ------->   ADVERTISED -> SHARED
    COLLECT_SHARES       <-------   SHARE_KEYS
    SHARE_FORWARD        ------->   SHARED -> MASKED
    COLLECT_MASKED       <-------   MASKED_INPUT
    UNMASK_REQUEST       ------->   MASKED -> DONE
    COLLECT_UNMASK       <-------   UNMASK_RESPONSE
    FINISHED

The server moves to its next stage when everyone it waits for has answered, or on
``DEADLINE`` (``close_round()``): whoever has not answered by then has dropped.

The active-adversary variant (Bonawitz et al. 2017, section 4, "ConsistencyCheck") inserts
one round between masking and unmasking: the server sends every survivor the list of
survivors, each signs it, and a client unmasks only after checking t valid signatures on the
same list::

    CONSISTENCY_REQUEST  ------->   MASKED -> SIGNED
    COLLECT_SIGNATURES   <-------   CONSISTENCY_RESPONSE
    UNMASK_REQUEST       ------->   SIGNED -> DONE

A passive client refuses a consistency request, an active one refuses to unmask without it.
"""

from __future__ import annotations

import enum

__all__ = [
    "ACTIVE_CLIENT_TRANSITIONS", "ACTIVE_SERVER_TRANSITIONS", "CLIENT_TRANSITIONS",
    "SERVER_TRANSITIONS", "ClientState", "Event", "Kind", "ServerStage", "tables",
]


class Kind(enum.Enum):
    """Message kinds of the masking protocols."""

    KEY_REQUEST = 1
    ADVERTISE_KEYS = 2
    KEY_BROADCAST = 3
    SHARE_KEYS = 4
    SHARE_FORWARD = 5
    MASKED_INPUT = 6
    UNMASK_REQUEST = 7
    UNMASK_RESPONSE = 8
    CONSISTENCY_REQUEST = 9
    CONSISTENCY_RESPONSE = 10


class Event(enum.Enum):
    """Server events that are not messages."""

    DEADLINE = 1


class ClientState(enum.Enum):
    IDLE = 1
    ADVERTISED = 2
    SHARED = 3
    MASKED = 4
    SIGNED = 7
    DONE = 5
    ABORTED = 6


class ServerStage(enum.Enum):
    COLLECT_KEYS = 1
    COLLECT_SHARES = 2
    COLLECT_MASKED = 3
    COLLECT_SIGNATURES = 4
    COLLECT_UNMASK = 5
    FINISHED = 6
    ABORTED = 7


CLIENT_TRANSITIONS: dict[tuple[ClientState, enum.Enum], ClientState] = {
    (ClientState.IDLE, Kind.KEY_REQUEST): ClientState.ADVERTISED,
    (ClientState.ADVERTISED, Kind.KEY_BROADCAST): ClientState.SHARED,
    (ClientState.SHARED, Kind.SHARE_FORWARD): ClientState.MASKED,
    (ClientState.MASKED, Kind.UNMASK_REQUEST): ClientState.DONE,
}

SERVER_TRANSITIONS: dict[tuple[ServerStage, enum.Enum], ServerStage] = {
    (ServerStage.COLLECT_KEYS, Kind.ADVERTISE_KEYS): ServerStage.COLLECT_KEYS,
    (ServerStage.COLLECT_KEYS, Event.DEADLINE): ServerStage.COLLECT_SHARES,
    (ServerStage.COLLECT_SHARES, Kind.SHARE_KEYS): ServerStage.COLLECT_SHARES,
    (ServerStage.COLLECT_SHARES, Event.DEADLINE): ServerStage.COLLECT_MASKED,
    (ServerStage.COLLECT_MASKED, Kind.MASKED_INPUT): ServerStage.COLLECT_MASKED,
    (ServerStage.COLLECT_MASKED, Event.DEADLINE): ServerStage.COLLECT_UNMASK,
    (ServerStage.COLLECT_UNMASK, Kind.UNMASK_RESPONSE): ServerStage.COLLECT_UNMASK,
    (ServerStage.COLLECT_UNMASK, Event.DEADLINE): ServerStage.FINISHED,
}

ACTIVE_CLIENT_TRANSITIONS: dict[tuple[ClientState, enum.Enum], ClientState] = {
    (ClientState.IDLE, Kind.KEY_REQUEST): ClientState.ADVERTISED,
    (ClientState.ADVERTISED, Kind.KEY_BROADCAST): ClientState.SHARED,
    (ClientState.SHARED, Kind.SHARE_FORWARD): ClientState.MASKED,
    (ClientState.MASKED, Kind.CONSISTENCY_REQUEST): ClientState.SIGNED,
    (ClientState.SIGNED, Kind.UNMASK_REQUEST): ClientState.DONE,
}

ACTIVE_SERVER_TRANSITIONS: dict[tuple[ServerStage, enum.Enum], ServerStage] = {
    (ServerStage.COLLECT_KEYS, Kind.ADVERTISE_KEYS): ServerStage.COLLECT_KEYS,
    (ServerStage.COLLECT_KEYS, Event.DEADLINE): ServerStage.COLLECT_SHARES,
    (ServerStage.COLLECT_SHARES, Kind.SHARE_KEYS): ServerStage.COLLECT_SHARES,
    (ServerStage.COLLECT_SHARES, Event.DEADLINE): ServerStage.COLLECT_MASKED,
    (ServerStage.COLLECT_MASKED, Kind.MASKED_INPUT): ServerStage.COLLECT_MASKED,
    (ServerStage.COLLECT_MASKED, Event.DEADLINE): ServerStage.COLLECT_SIGNATURES,
    (ServerStage.COLLECT_SIGNATURES, Kind.CONSISTENCY_RESPONSE): ServerStage.COLLECT_SIGNATURES,
    (ServerStage.COLLECT_SIGNATURES, Event.DEADLINE): ServerStage.COLLECT_UNMASK,
    (ServerStage.COLLECT_UNMASK, Kind.UNMASK_RESPONSE): ServerStage.COLLECT_UNMASK,
    (ServerStage.COLLECT_UNMASK, Event.DEADLINE): ServerStage.FINISHED,
}


def tables(active: bool) -> tuple[
    dict[tuple[ClientState, enum.Enum], ClientState],
    dict[tuple[ServerStage, enum.Enum], ServerStage],
]:
    """(client table, server table) of the passive or the active variant."""
    if active:
        return ACTIVE_CLIENT_TRANSITIONS, ACTIVE_SERVER_TRANSITIONS
    return CLIENT_TRANSITIONS, SERVER_TRANSITIONS
