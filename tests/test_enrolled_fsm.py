"""Every (state x message kind) pair of the enrolled mode's transition tables, h2-style.

For each variant (passive, active) and each client state reachable in a real round, every
message kind is sent to client 0: a pair in the table moves it to the table's next state and
it answers once; any other pair is a ProtocolError, the client aborts, emits nothing, and
stays aborted. The server is walked the same way over its stages.
"""

from __future__ import annotations

import dataclasses
from functools import cache

import pytest
from helpers import Router

import protocols
from protocols.base import SERVER, Message, stage_names
from protocols.secagg._enrolled_state import (
    ClientState,
    Event,
    Kind,
    ServerStage,
    client_stages,
    tables,
)
from secagg.errors import ProtocolError
from secagg.rng import Csprng

N, DIM = 5, 4
VARIANTS = {"passive": False, "active": True}


def _router(variant: str) -> Router:
    spec = protocols.get("secagg")
    config = spec.make_config(N, DIM, enrolled=True, active=VARIANTS[variant],
                              session=f"efsm/{variant}".encode())
    return Router(spec, config, Csprng.from_seed(f"efsm/{variant}"))


@cache
def _log(variant: str) -> tuple[Message, ...]:
    router = _router(variant)
    router.check_result(router.run())
    return tuple(router.log)


def _message(kind: Kind, sender: int, recipient: int) -> Message:
    for v in VARIANTS:
        for msg in _log(v):
            if msg.KIND is kind:
                return dataclasses.replace(msg, sender=sender, recipient=recipient)
    raise AssertionError(f"no reference round sends {kind.name}")


def test_tables_are_one_path_and_the_active_one_adds_only_the_consistency_exchange() -> None:
    (pc, ps), (ac, as_) = tables(False), tables(True)
    assert client_stages(False) == ("UPLOAD_REQUEST", "UNMASK_REQUEST")
    assert client_stages(True) == ("UPLOAD_REQUEST", "CONSISTENCY_REQUEST", "UNMASK_REQUEST")
    assert set(ac) - set(pc) == {(ClientState.UPLOADED, Kind.CONSISTENCY_REQUEST),
                                 (ClientState.SIGNED, Kind.UNMASK_REQUEST)}
    assert {k for (_, k) in as_} - {k for (_, k) in ps} == {Kind.CONSISTENCY_RESPONSE}
    for table in (ps, as_):
        assert all((stage, Event.DEADLINE) in table for stage in {s for (s, _) in table})
    config = protocols.get("secagg+").make_config(10, 3, enrolled=True)
    spec = protocols.get("secagg+")
    assert stage_names(spec.client_stages(config)) == client_stages(False)


def _client_cases() -> list[object]:
    out = []
    for variant, active in VARIANTS.items():
        states = [s for (s, _) in tables(active)[0]] + [ClientState.DONE]
        for state in states:
            for kind in Kind:
                out.append(pytest.param(variant, state, kind,
                                        id=f"{variant}-{state.name}-{kind.name}"))
    return out


@pytest.mark.parametrize(("variant", "state", "kind"), _client_cases())
def test_client_state_times_kind(variant: str, state: ClientState, kind: Kind) -> None:
    table = tables(VARIANTS[variant])[0]
    router = _router(variant)
    client = router.clients[0]
    if (state, kind) in table:
        router.run_until(lambda: router.find(lambda e: e.recipient == 0 and e.kind is kind)
                         is not None)
        assert client.state is state
        genuine = router.take(lambda e: e.recipient == 0 and e.kind is kind)
        assert genuine is not None
        out = router.send(genuine)
        assert client.state is table[(state, kind)]
        assert len(out) == 1 and out[0].recipient == SERVER
        return
    router.run_until(lambda: client.state is state)
    sent = len(router.sent.get(0, []))
    with pytest.raises(ProtocolError):
        router.send(_message(kind, SERVER, 0), to=0)
    assert client.state is ClientState.ABORTED
    assert len(router.sent.get(0, [])) == sent, "a refusing client must emit nothing"
    with pytest.raises(ProtocolError):
        router.send(_message(Kind.UPLOAD_REQUEST, SERVER, 0), to=0)


def _server_cases() -> list[object]:
    return [pytest.param(variant, stage, kind, id=f"{variant}-{stage.name}-{kind.name}")
            for variant, active in VARIANTS.items()
            for stage in {s for (s, _) in tables(active)[1]}
            for kind in Kind]


@pytest.mark.parametrize(("variant", "stage", "kind"), _server_cases())
def test_server_stage_times_kind(variant: str, stage: ServerStage, kind: Kind) -> None:
    table = tables(VARIANTS[variant])[1]
    router = _router(variant)
    msg = _message(kind, 0 if kind.name.endswith(("UPLOAD", "RESPONSE")) else SERVER, SERVER)
    if (stage, kind) in table:
        router.run_until(lambda: router.server.stage is stage
                         and router.find(lambda e: e.kind is kind) is not None)
        genuine = router.take(lambda e: e.kind is kind)
        assert genuine is not None
        router.send(genuine)
        assert router.server.stage in (stage, table[(stage, Event.DEADLINE)])
        return
    router.run_until(lambda: router.server.stage is stage)
    with pytest.raises(ProtocolError):
        router.send(msg, to=SERVER)
    assert router.server.stage is stage, "a refused message changes nothing"
    router.check_result(router.run())
