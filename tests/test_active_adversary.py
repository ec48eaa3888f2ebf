"""The active-adversary variant against a scripted malicious server.

Each attack must be refused with a typed error, leave the attacked client ABORTED, and let no
share leave it (no UnmaskResponse is ever produced for the attacker).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import protocols
from protocols.secagg._state import ClientState, Kind
from protocols.secagg.messages import (
    ConsistencyRequest, KeyBroadcast, Signed, UnmaskRequest, UnmaskResponse,
)
from secagg import sign, wire
from secagg.errors import ProtocolError, UsageError
from secagg.kex import KeyPair
from secagg.rng import Csprng

N, DIM = 8, 16


def _round(name: str = "secagg", seed: int = 1, round_id: int = 0, rng_seed: int | None = None):
    spec = protocols.get(name)
    cfg = spec.make_config(N, DIM, active=True, round_id=round_id)
    rng = Csprng.from_seed(seed)
    cfg, creds = spec.provision(cfg, rng.spawn("enrol"))
    r2 = Csprng.from_seed(rng_seed if rng_seed is not None else seed)
    server = spec.server(cfg, r2.spawn("server"))
    clients = [spec.client(cfg, u, r2.spawn(f"c{u}"), **creds[u]) for u in range(N)]
    for c in clients:
        c.set_input(np.full(DIM, 0.01 * (c.client_id + 1)))
    return cfg, creds, server, clients


def _until(server, clients, kind: Kind):
    """Run the honest protocol until the server emits messages of ``kind``; return them."""
    out = server.start()
    while out:
        if out[0].KIND is kind:
            return out
        nxt = []
        for m in out:
            for reply in clients[m.recipient].receive(wire.decode(wire.encode(m))):
                nxt += server.receive(reply)
        out = nxt
    raise AssertionError(f"the round never reached {kind}")


def _refused(client, msg) -> None:
    with pytest.raises(ProtocolError):
        client.receive(msg)
    assert client.state is ClientState.ABORTED
    with pytest.raises(ProtocolError):  # and it stays aborted: nothing more leaves it
        client.receive(msg)


def test_honest_active_round_is_exact() -> None:
    cfg, _, server, clients = _round()
    encoded = [c.encoded.copy() for c in clients]
    out = server.start()
    while out:
        nxt = []
        for m in out:
            for reply in clients[m.recipient].receive(m):
                nxt += server.receive(wire.decode(wire.encode(reply)))
        out = nxt
    res = server.result()
    assert res.contributors == tuple(range(N))
    expected = sum(cfg.encoding.centre(e) for e in encoded)
    assert np.array_equal(res.int_sum, expected)


def test_swapped_public_key_is_refused() -> None:
    _, _, server, clients = _round()
    broadcasts = _until(server, clients, Kind.KEY_BROADCAST)
    to0 = next(m for m in broadcasts if m.recipient == 0)
    evil = KeyPair.generate(Csprng.from_seed(99))
    keys = tuple(dataclasses.replace(k, s_pk=evil.public) if k.client == 3 else k for k in to0.keys)
    _refused(clients[0], dataclasses.replace(to0, keys=keys))


def test_server_cannot_sign_for_a_client() -> None:
    _, _, server, clients = _round()
    broadcasts = _until(server, clients, Kind.KEY_BROADCAST)
    to0 = next(m for m in broadcasts if m.recipient == 0)
    server_seed = sign.generate(Csprng.from_seed(5))
    evil = KeyPair.generate(Csprng.from_seed(98))
    keys = tuple(
        dataclasses.replace(k, c_pk=evil.public, signature=sign.sign(server_seed, b"forged"))
        if k.client == 2 else k for k in to0.keys
    )
    _refused(clients[0], dataclasses.replace(to0, keys=keys))


def test_forged_advertisement_is_refused_by_the_server() -> None:
    cfg, _, server, clients = _round()
    req = server.start()[0]
    advert = clients[req.recipient].receive(req)[0]
    forged = dataclasses.replace(advert, signature=bytes(64))
    with pytest.raises(ProtocolError):
        server.receive(forged)
    server.receive(advert)  # the honest one is still accepted: the refusal changed nothing


def test_equivocation_on_the_survivor_list_is_caught() -> None:
    cfg, _, server, clients = _round()
    requests = _until(server, clients, Kind.CONSISTENCY_REQUEST)
    victim = 7
    everyone = requests[0].survivors
    without_victim = tuple(u for u in everyone if u != victim)
    group_a = [0, 1, 2, 3]  # told the victim dropped: they would reveal its mask key shares
    group_b = [4, 5, 6, 7]  # told it survived: they would reveal its seed shares
    sigs: dict[int, Signed] = {}
    for m in requests:
        lst = without_victim if m.recipient in group_a else everyone
        resp = clients[m.recipient].receive(dataclasses.replace(m, survivors=lst))[0]
        sigs[m.recipient] = Signed(m.recipient, resp.signature)
    assert len(group_a) < cfg.signature_threshold  # the quorum is what protects the victim
    target = clients[0]
    survivors = tuple(u for u in without_victim)
    ask_a = UnmaskRequest(version=1, round=cfg.round_id, sender=-1, recipient=0,
                          survivors=survivors, dropped=(victim,),
                          signatures=tuple(sigs[u] for u in group_a))
    _refused(target, ask_a)
    # padding the quorum with signatures on the other list does not verify either
    padded = dataclasses.replace(ask_a, recipient=1,
                                 signatures=tuple(sigs[u] for u in group_a + group_b))
    _refused(clients[1], padded)


def test_unmask_without_consistency_round_is_refused() -> None:
    cfg, _, server, clients = _round()
    requests = _until(server, clients, Kind.CONSISTENCY_REQUEST)
    c = clients[requests[0].recipient]
    ask = UnmaskRequest(version=1, round=cfg.round_id, sender=-1, recipient=c.client_id,
                        survivors=tuple(range(N)), dropped=())
    _refused(c, ask)


def test_request_for_both_shares_is_refused() -> None:
    cfg, _, server, clients = _round()
    requests = _until(server, clients, Kind.UNMASK_REQUEST)
    m = requests[0]
    other = next(u for u in m.survivors if u != m.recipient)
    _refused(clients[m.recipient], dataclasses.replace(m, dropped=(other,)))


def test_honest_unmask_request_with_valid_quorum_is_answered() -> None:
    cfg, _, server, clients = _round()
    requests = _until(server, clients, Kind.UNMASK_REQUEST)
    m = requests[0]
    assert len(m.signatures) >= cfg.signature_threshold
    out = clients[m.recipient].receive(m)
    assert isinstance(out[0], UnmaskResponse)
    with pytest.raises(ProtocolError):  # a second request in the same round
        clients[m.recipient].receive(m)


def test_replayed_message_from_another_round_is_refused() -> None:
    _, _, old_server, old_clients = _round(round_id=0)
    old_requests = _until(old_server, old_clients, Kind.CONSISTENCY_REQUEST)
    _, _, server, clients = _round(round_id=1, rng_seed=7)
    _until(server, clients, Kind.CONSISTENCY_REQUEST)
    old = old_requests[0]
    _refused(clients[old.recipient], old)  # round 0's message in round 1
    # even relabelled as round 1, a signature made in round 0 does not verify in round 1
    cfg1, _, server1, clients1 = _round(round_id=1, rng_seed=8)
    reqs1 = _until(server1, clients1, Kind.CONSISTENCY_REQUEST)
    resp = clients1[0].receive(reqs1[0])[0]
    replayed = dataclasses.replace(resp, signature=old_clients[0].receive(old_requests[0])[0].signature)
    with pytest.raises(ProtocolError):
        server1.receive(replayed)


def test_active_client_needs_matching_signing_key() -> None:
    cfg, creds, _, _ = _round()
    with pytest.raises(UsageError):
        protocols.get("secagg").client(cfg, 0, Csprng.from_seed(1))
    with pytest.raises(ValueError):  # ConfigError: the key is someone else's
        protocols.get("secagg").client(cfg, 0, Csprng.from_seed(1), **creds[1])


@pytest.mark.parametrize("name", ["secagg", "secagg+"])
def test_active_round_with_dropouts_via_simulate(name: str) -> None:
    from fl.simulation import plan_dropouts, run_round
    from protocols.base import stages_of

    spec = protocols.get(name)
    cfg = spec.make_config(30, 200, active=True, dropout_tolerance=0.2)
    rng = Csprng.from_seed(4)
    inputs = [np.full(200, 0.001 * u) for u in range(30)]
    drop = plan_dropouts(30, 0.15, stages_of(spec, cfg), rng.spawn("d"))
    rep = run_round(spec, cfg, inputs, rng, drop_at=drop)
    assert rep.error is None and rep.exact is True
    assert "CONSISTENCY_REQUEST" in rep.dropped_by_stage
