"""Every (state x message kind) pair of the SecAgg transition tables, h2-style.

``protocols/secagg/_state.py`` holds the client and server tables of both variants (passive,
and active with its consistency round). These tests:

1. check the tables are what the module's docs draw: one path through the client states,
   one ``DEADLINE`` chain through the server stages, each stage collecting one kind;
2. put a real client (and a real server) in each of its states by driving a seeded round up
   to it, then feed it a well-formed message of every kind. A pair in the table moves to the
   table's state and answers what the round would answer; any other pair raises
   ProtocolError, aborts the client for good (it emits nothing), and leaves the server's
   stage as it was, after which the round still finishes with the exact sum.

Well-formed messages come from a reference round run under the same seed and session: every
role is deterministic given its generator, so a round replayed up to a state is the reference
round's prefix (checked), and the reference's next messages are exactly what the real peer
would send.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from functools import cache

import pytest
from helpers import Router, assert_messages_equal
from hypothesis import given
from hypothesis import strategies as st

import protocols
from protocols.base import SERVER, Message, stages_of
from protocols.secagg import _state
from protocols.secagg._state import ClientState, Event, Kind, ServerStage, tables
from secagg.errors import DropoutError, LateMessageError, ProtocolError, UsageError
from secagg.rng import Csprng

N = 4  # t = 3 (passive), 3 signatures (active)
DIM = 3
VARIANTS = {"passive": False, "active": True}
TERMINAL_CLIENT = {ClientState.DONE, ClientState.ABORTED}
TERMINAL_SERVER = {ServerStage.FINISHED, ServerStage.ABORTED}

Table = dict[tuple[enum.Enum, enum.Enum], enum.Enum]


def _states(table: Table, aborted: enum.Enum) -> list[enum.Enum]:
    found = {s for (s, _) in table} | set(table.values()) | {aborted}
    return [s for s in type(aborted) if s in found]  # enum order


def _client_chain(table: Table) -> list[tuple[enum.Enum, enum.Enum]]:
    """(state, kind) pairs from IDLE along the table until a state with no way out."""
    chain, state = [], ClientState.IDLE
    while True:
        out = [(s, k) for (s, k) in table if s is state]
        if not out:
            return chain
        assert len(out) == 1
        chain.append(out[0])
        state = table[out[0]]


def _server_chain(table: Table) -> list[enum.Enum]:
    """Server stages along the DEADLINE transitions from COLLECT_KEYS."""
    chain, stage = [ServerStage.COLLECT_KEYS], ServerStage.COLLECT_KEYS
    while (stage, Event.DEADLINE) in table:
        stage = table[(stage, Event.DEADLINE)]
        chain.append(stage)
    return chain


# -- 1. the tables are what the docs say -----------------------------------------------
@pytest.mark.parametrize("variant", VARIANTS)
def test_client_table_is_one_path_from_idle_to_done(variant: str) -> None:
    table = tables(VARIANTS[variant])[0]
    states = _states(table, ClientState.ABORTED)
    for state in states:
        outgoing = [k for (s, k) in table if s is state]
        if state in TERMINAL_CLIENT:
            assert outgoing == [], f"{state.name} must be final"
        else:
            assert len(outgoing) == 1, f"{state.name} must have exactly one way on: {outgoing}"
    assert ClientState.ABORTED not in table.values()  # aborting is never a table move
    chain = _client_chain(table)
    assert table[chain[-1]] is ClientState.DONE
    assert [s for (s, _) in chain] == [s for s in states if s not in TERMINAL_CLIENT]
    assert all(isinstance(k, Kind) for (_, k) in chain)


@pytest.mark.parametrize("variant", VARIANTS)
def test_server_table_is_one_deadline_chain_of_collecting_stages(variant: str) -> None:
    table = tables(VARIANTS[variant])[1]
    chain = _server_chain(table)
    assert chain[-1] is ServerStage.FINISHED
    assert set(_states(table, ServerStage.ABORTED)) == set(chain) | {ServerStage.ABORTED}
    for stage in _states(table, ServerStage.ABORTED):
        outgoing = {k: table[(s, k)] for (s, k) in table if s is stage}
        if stage in TERMINAL_SERVER:
            assert outgoing == {}
            continue
        kinds = [k for k in outgoing if isinstance(k, Kind)]
        assert len(kinds) == 1 and outgoing[kinds[0]] is stage, "one kind, collected in place"
        assert set(outgoing) == {kinds[0], Event.DEADLINE}
    assert ServerStage.ABORTED not in table.values()


@pytest.mark.parametrize("variant", VARIANTS)
def test_client_and_server_kinds_alternate_stage_by_stage(variant: str) -> None:
    client, server = tables(VARIANTS[variant])
    requests = [k for (_, k) in _client_chain(client)]
    collected = [k for s in _server_chain(server)[:-1] for (t, k) in server
                 if t is s and isinstance(k, Kind)]
    assert len(requests) == len(collected)
    assert not set(requests) & set(collected), "a kind is either a request or a reply"
    # ... and a real client answers the i-th request with the i-th collected kind.
    ref = _reference(variant)
    assert [m.KIND for m in ref.sent[0]] == collected


def test_the_active_variant_inserts_exactly_the_consistency_round() -> None:
    (pc, ps), (ac, as_) = tables(False), tables(True)
    extra = {Kind.CONSISTENCY_REQUEST, Kind.CONSISTENCY_RESPONSE}
    assert {k for (_, k) in ac} - {k for (_, k) in pc} == {Kind.CONSISTENCY_REQUEST}
    assert {k for (_, k) in as_} - {k for (_, k) in ps} == {Kind.CONSISTENCY_RESPONSE}
    assert not extra & ({k for (_, k) in pc} | {k for (_, k) in ps})
    assert {k for (_, k) in pc} | {k for (_, k) in ps} | extra == set(Kind) | {Event.DEADLINE}


def test_the_module_diagram_matches_the_tables() -> None:
    doc = _state.__doc__ or ""
    client = set(re.findall(r"^\s*([A-Z_]+)\s+-+>\s+([A-Z_]+) -> ([A-Z_]+)\s*$", doc, re.MULTILINE))
    server = set(re.findall(r"^\s*([A-Z_]+)\s+<-+\s+([A-Z_]+)\s*$", doc, re.MULTILINE))
    both_client = {**tables(False)[0], **tables(True)[0]}
    both_server = {**tables(False)[1], **tables(True)[1]}
    drawn = {(ClientState[a], Kind[k]): ClientState[b] for (k, a, b) in client}
    assert set(drawn) == set(tables(False)[0]) | set(tables(True)[0])
    assert all(both_client[pair] is nxt for pair, nxt in drawn.items())
    assert {(ServerStage[s], Kind[k]) for (s, k) in server} == {
        (s, k) for (s, k) in both_server if isinstance(k, Kind)}


@pytest.mark.parametrize("variant", VARIANTS)
def test_drivers_drop_clients_by_the_table_stages(variant: str) -> None:
    ref = _reference(variant)
    assert ref.stage_names == tuple(k.name for (_, k) in _client_chain(tables(VARIANTS[variant])[0]))
    if variant == "passive":
        for name in ("secagg", "secagg+"):
            spec = protocols.get(name)
            assert stages_of(spec, spec.make_config(N, DIM)) == ref.stage_names


# -- 2. walking the pairs ----------------------------------------------------------------
def _router(variant: str, drop_at: dict[int, int] | None = None) -> Router:
    spec = protocols.get("secagg")
    # A fixed session: the replay below relies on every derived key being the same.
    config = spec.make_config(N, DIM, active=VARIANTS[variant], session=f"fsm/{variant}".encode())
    return Router(spec, config, Csprng.from_seed(f"fsm/{variant}"), drop_at=drop_at)


@cache
def _reference(variant: str) -> Router:
    router = _router(variant)
    result = router.run()
    router.check_result(result)
    return router


def _message(kind: Kind, variant: str, sender: int, recipient: int) -> Message:
    """A well-formed message of ``kind`` from the reference rounds, addressed as asked."""
    for v in (variant, *VARIANTS):
        for msg in _reference(v).log:
            if msg.KIND is kind and 1 in (msg.sender, msg.recipient):
                return dataclasses.replace(msg, sender=sender, recipient=recipient)
    raise AssertionError(f"no reference round sends {kind.name}")


def _genuine(kind: Kind, variant: str, u: int) -> Message:
    """The message of ``kind`` that client ``u`` really got in the reference round."""
    return next(m for m in _reference(variant).log if m.recipient == u and m.KIND is kind)


def _client_cases() -> list[object]:
    return [pytest.param(variant, state, kind, id=f"{variant}-{state.name}-{kind.name}")
            for variant, active in VARIANTS.items()
            for state in _states(tables(active)[0], ClientState.ABORTED)
            for kind in Kind]


def _client_in(variant: str, state: ClientState) -> Router:
    router = _router(variant)
    client = router.clients[0]
    if state is ClientState.ABORTED:
        env = router.take(lambda e: e.recipient == 0)
        assert env is not None
        with pytest.raises(ProtocolError):
            router.send(dataclasses.replace(env.open(), round=1), to=0)
    else:
        router.run_until(lambda: client.state is state)
    assert client.state is state
    # Deterministic replay: so far client 0 said exactly what it said in the reference.
    for got, want in zip(router.sent.get(0, []), _reference(variant).sent[0]):
        assert_messages_equal(got, want)
    return router


@pytest.mark.parametrize(("variant", "state", "kind"), _client_cases())
def test_client_state_times_kind(variant: str, state: ClientState, kind: Kind) -> None:
    table = tables(VARIANTS[variant])[0]
    router = _client_in(variant, state)
    client = router.clients[0]
    sent = len(router.sent.get(0, []))
    if kind in {k for (_, k) in table} | {Kind.CONSISTENCY_REQUEST}:  # sent to clients
        msg = _genuine(kind, variant, 0) if (state, kind) in table else _message(
            kind, variant, SERVER, 0)
    else:  # a reply kind, re-addressed so that only its kind is wrong
        msg = _message(kind, variant, SERVER, 0)
    if (state, kind) in table:
        out = router.send(msg, to=0)
        assert client.state is table[(state, kind)]
        assert len(out) == 1 and out[0].recipient == SERVER and out[0].sender == 0
        assert_messages_equal(out[0], _reference(variant).sent[0][sent])
    else:
        with pytest.raises(ProtocolError):
            router.send(msg, to=0)
        assert client.state is ClientState.ABORTED
        assert len(router.sent.get(0, [])) == sent, "a refusing client must emit nothing"
        # Aborted for good: not even the genuine next message gets an answer.
        nxt = [k for (s, k) in table if s is state]
        if nxt:
            with pytest.raises(ProtocolError):
                router.send(_genuine(nxt[0], variant, 0), to=0)
            assert len(router.sent.get(0, [])) == sent


def _server_cases() -> list[object]:
    return [pytest.param(variant, stage, kind, id=f"{variant}-{stage.name}-{kind.name}")
            for variant, active in VARIANTS.items()
            for stage in _states(tables(active)[1], ServerStage.ABORTED)
            for kind in Kind]


def _server_in(variant: str, stage: ServerStage) -> Router:
    """A round whose server is in ``stage``; in a collecting stage every client has been
    asked and every answer is still in flight."""
    if stage is ServerStage.ABORTED:
        router = _router(variant, drop_at={1: 0, 2: 0})  # 2 of 4 left, t = 3
        with pytest.raises(DropoutError):
            router.run()
    else:
        router = _router(variant)
        server = router.server
        router.run_until(lambda: server.stage is stage)
        while (i := router.find(lambda e: e.recipient >= 0)) is not None:
            router.deliver(i)
    assert router.server.stage is stage
    return router


def _finish_and_check(router: Router, stage: ServerStage, result_before: object) -> None:
    if stage is ServerStage.ABORTED:
        with pytest.raises(UsageError):
            router.server.result()
    elif stage is ServerStage.FINISHED:
        assert router.server.result() is result_before
    else:
        result = router.run()
        assert result.contributors == tuple(range(N))
        router.check_result(result)


@pytest.mark.parametrize(("variant", "stage", "kind"), _server_cases())
def test_server_stage_times_kind(variant: str, stage: ServerStage, kind: Kind) -> None:
    table = tables(VARIANTS[variant])[1]
    router = _server_in(variant, stage)
    server = router.server
    result_before = server.result() if stage is ServerStage.FINISHED else None
    if (stage, kind) in table:
        env = router.take(lambda e: e.recipient == SERVER and e.kind is kind)
        assert env is not None
        assert router.send(env) == []  # others are still awaited: no stage change yet
        assert server.stage is table[(stage, kind)]
    else:
        msg = _message(kind, variant, 1, SERVER)
        with pytest.raises(ProtocolError) as info:
            router.send(msg)
        assert server.stage is stage
        # A reply for a stage that has already closed is, more precisely, late.
        chain = _server_chain(table)
        own = [chain.index(s) for (s, k) in table if k is kind]
        if own and stage in chain and own[0] < chain.index(stage):
            assert isinstance(info.value, LateMessageError)
    _finish_and_check(router, stage, result_before)


@pytest.mark.parametrize(("variant", "stage"), [
    pytest.param(v, s, id=f"{v}-{s.name}") for v, a in VARIANTS.items()
    for s in _states(tables(a)[1], ServerStage.ABORTED)])
def test_server_deadline_in_every_stage(variant: str, stage: ServerStage) -> None:
    table = tables(VARIANTS[variant])[1]
    router = _server_in(variant, stage)
    server = router.server
    if stage in TERMINAL_SERVER:
        before = server.result() if stage is ServerStage.FINISHED else None
        assert server.close_round() == []
        assert server.stage is stage
        _finish_and_check(router, stage, before)
        return
    held = router.take(lambda e: e.recipient == SERVER)
    assert held is not None
    while (i := router.find(lambda e: e.recipient == SERVER)) is not None:
        router.deliver(i)
    assert server.stage is stage
    router.close()
    assert server.stage is table[(stage, Event.DEADLINE)]
    assert server.dropped_at[stage] == (held.sender,)
    result = router.run()
    router.check_result(result)


@given(st.sets(st.integers(0, 5000), max_size=60), st.integers(-3, 5100))
def test_an_id_set_is_the_set_of_its_ids(ids: set[int], probe: int) -> None:
    from protocols.secagg._roles import IdSet

    got = IdSet.of(ids)
    assert (probe in got) == (probe in ids)
    assert len(got) == len(ids) and list(got) == sorted(ids)
    assert "3" not in got  # only ints are members


def test_the_router_holds_server_frames_as_messages_and_client_frames_encoded() -> None:
    """A server's broadcast is encoded when delivered (so n of them share one roster), a
    client's frame when sent (its upload bytes are counted then); either way the recipient
    gets a fresh decoded copy."""
    spec = protocols.get("secagg+")
    router = Router(spec, spec.make_config(6, 4, degree=4, threshold=3), Csprng.from_seed(1))
    held = [env for env in router.pending]
    assert held and all(env.encoded is None and env.message is not None for env in held)
    first = held[0]
    assert first.open() == first.message and first.open() is not first.message
    router.deliver(0)
    sent = [env for env in router.pending if env.sender >= 0]
    assert sent and all(env.encoded is not None for env in sent)
    assert router.up[sent[0].sender] == len(sent[0].frame)


@given(st.lists(st.tuples(st.integers(-(2**63), 2**63 - 1), st.binary(min_size=32, max_size=32)),
                max_size=20))
def test_the_transcript_hashes_the_roster_columns(roster: list[tuple[int, bytes]]) -> None:
    """The roster transcript is sha256(label(tag, config) || u64 n || n i64 ids || n digests),
    all little-endian: fixed sizes, so two rosters never hash the same bytes."""
    import hashlib
    import struct

    from protocols.secagg._keys import config_fingerprint, transcript
    from secagg.kex import label

    config = protocols.get("secagg+").make_config(6, 4, degree=4, threshold=3)
    ids, digests = [u for u, _ in roster], b"".join(d for _, d in roster)
    want = hashlib.sha256(label(b"secagg/v1/transcript-columns", config_fingerprint(config)))
    want.update(struct.pack(f"<Q{len(ids)}q", len(ids), *ids) + digests)
    assert transcript(config, ids, digests) == want.digest()
    if len(roster) >= 2 and roster[0][1] != roster[1][1]:  # two clients swap digests
        swapped = roster[1][1] + roster[0][1] + digests[64:]
        assert transcript(config, ids, swapped) != want.digest()


@pytest.mark.parametrize(("ids", "digests"), [([1, 2], bytes(63)), ([1], bytes(33)),
                                              ([2**63], bytes(32)), ([1.5], bytes(32))],
                         ids=["short", "long", "id-too-big", "float-id"])
def test_a_transcript_of_malformed_columns_is_refused(ids: list, digests: bytes) -> None:
    from protocols.secagg._keys import transcript

    config = protocols.get("secagg+").make_config(6, 4, degree=4, threshold=3)
    with pytest.raises(ProtocolError):
        transcript(config, ids, digests)
