"""Every state change of the HE roles, as data, and the enums they use."""

from __future__ import annotations

import enum

__all__ = [
    "CLIENT_TRANSITIONS", "DECRYPTOR_TRANSITIONS", "SERVER_TRANSITIONS", "ClientState",
    "DecryptorState", "Event", "HeKind", "Kind", "ServerState",
]


class HeKind(enum.Enum):
    """Which scheme a message belongs to (a ckks message is refused by paillier roles)."""

    CKKS = 1
    PAILLIER = 2


Kind = enum.Enum("Kind", "CONTEXT_REQUEST PUBLIC_CONTEXT INPUT_REQUEST ENCRYPTED_INPUT "
                         "DECRYPT_REQUEST RELEASED_AGGREGATE IDENTIFY_REQUEST TEST_REQUEST "
                         "VERDICT")
Event = enum.Enum("Event", "START DEADLINE")
ClientState = enum.Enum("ClientState", "WAITING DONE ABORTED")
ServerState = enum.Enum("ServerState", "NEW AWAIT_CONTEXT COLLECTING AWAIT_RELEASE AWAIT_VERDICT "
                                       "AWAIT_RETRY FINISHED ABORTED")
DecryptorState = enum.Enum("DecryptorState", "IDLE KEYED SUSPECT RETRY RELEASED ABORTED")

# Every state change of the HE roles, as data. A DEADLINE in COLLECTING with fewer than
# min_clients contributions, or in a state waiting for the decryptor, aborts the round.
# Identification (schemes with ``identifies``, i.e. paillier): a decryption far out of range
# makes the decryptor ask for one masked test per contributor (SUSPECT); its verdict names
# the clients whose own upload is far out of range, and the aggregator asks once more for the
# sum without them (RETRY). A release happens at most once either way.
CLIENT_TRANSITIONS: dict[tuple[ClientState, enum.Enum], ClientState] = {
    (ClientState.WAITING, Kind.INPUT_REQUEST): ClientState.DONE,
}
SERVER_TRANSITIONS: dict[tuple[ServerState, enum.Enum], ServerState] = {
    (ServerState.NEW, Event.START): ServerState.AWAIT_CONTEXT,
    (ServerState.AWAIT_CONTEXT, Kind.PUBLIC_CONTEXT): ServerState.COLLECTING,
    (ServerState.AWAIT_CONTEXT, Event.DEADLINE): ServerState.ABORTED,
    (ServerState.COLLECTING, Kind.ENCRYPTED_INPUT): ServerState.COLLECTING,
    (ServerState.COLLECTING, Event.DEADLINE): ServerState.AWAIT_RELEASE,
    (ServerState.AWAIT_RELEASE, Kind.RELEASED_AGGREGATE): ServerState.FINISHED,
    (ServerState.AWAIT_RELEASE, Event.DEADLINE): ServerState.ABORTED,
    (ServerState.AWAIT_RELEASE, Kind.IDENTIFY_REQUEST): ServerState.AWAIT_VERDICT,
    (ServerState.AWAIT_VERDICT, Kind.VERDICT): ServerState.AWAIT_RETRY,
    (ServerState.AWAIT_VERDICT, Event.DEADLINE): ServerState.ABORTED,
    (ServerState.AWAIT_RETRY, Kind.RELEASED_AGGREGATE): ServerState.FINISHED,
    (ServerState.AWAIT_RETRY, Event.DEADLINE): ServerState.ABORTED,
}
DECRYPTOR_TRANSITIONS: dict[tuple[DecryptorState, enum.Enum], DecryptorState] = {
    (DecryptorState.IDLE, Kind.CONTEXT_REQUEST): DecryptorState.KEYED,
    (DecryptorState.KEYED, Kind.DECRYPT_REQUEST): DecryptorState.RELEASED,  # or SUSPECT
    (DecryptorState.SUSPECT, Kind.TEST_REQUEST): DecryptorState.RETRY,
    (DecryptorState.RETRY, Kind.DECRYPT_REQUEST): DecryptorState.RELEASED,
}
