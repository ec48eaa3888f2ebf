"""The active-adversary variant against a scripted malicious server.

Each attack must be refused with a typed error, leave the attacked client ABORTED, and let no
share leave it (no UnmaskResponse is ever produced for the attacker). The second half (issue
13) covers what a cheating server or client gets now, in both variants: forged shares (an
error or a sum rebuilt from good shares, never a wrong one), range-checked releases of at
least two contributors, no replay across runs of one (session, round), a graph the server
cannot choose, and the active thresholds. The client's own policy is in
test_client_policy.py.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable as _Callable

import numpy as np
import pytest

import protocols
from protocols.base import SERVER, check_release
from protocols.policy import MemoryAnsweredRequests
from protocols.secagg import active_min_threshold
from protocols.secagg._keys import graph_seed, transcript
from protocols.secagg._state import ClientState, Kind, ServerStage
from protocols.secagg.graph import derived_neighbourhoods
from protocols.secagg.messages import (
    ConsistencyRequest,
    RosterEntry,
    Share,
    ShareForward,
    Signed,
    UnmaskRequest,
    UnmaskResponse,
)
from secagg import shamir, sign, wire
from secagg.errors import (
    ConfigError,
    DropoutError,
    ForgedShareError,
    ProtocolError,
    RangeCheckError,
    UsageError,
)
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
    from fl.engines.simulation import plan_dropouts, run_round
    from protocols.base import stages_of

    spec = protocols.get(name)
    cfg = spec.make_config(30, 200, active=True, dropout_tolerance=0.2)
    rng = Csprng.from_seed(4)
    inputs = [np.full(200, 0.001 * u) for u in range(30)]
    drop = plan_dropouts(30, 0.15, stages_of(spec, cfg), rng.spawn("d"))
    rep = run_round(spec, cfg, inputs, rng, drop_at=drop)
    assert rep.error is None and rep.exact is True
    assert "CONSISTENCY_REQUEST" in rep.dropped_by_stage


# == issue 13: what a cheating server (or client) gets now ================================
def _build(name: str = "secagg", n: int = 6, *, seed: object = "i13", active: bool = False,
           session: bytes = b"issue 13", rng_seed: object | None = None, answered=None,
           **kw: object):
    spec = protocols.get(name)
    cfg = spec.make_config(n, DIM, active=active, session=session, **kw)
    cfg, creds = spec.provision(cfg, Csprng.from_seed(f"{seed}/enrol"))
    rng = Csprng.from_seed(f"{seed if rng_seed is None else rng_seed}/roles")
    server = spec.server(cfg, rng.spawn("server"))
    stores = answered if answered is not None else {}
    clients = [spec.client(cfg, u, rng.spawn(f"c{u}"), answered=stores.get(u), **creds.get(u, {}))
               for u in range(n)]
    for c in clients:
        c.set_input(np.full(DIM, 0.01 * (c.client_id + 1)))
    encoded = [c.encoded.copy() for c in clients]
    return cfg, server, clients, encoded


def _drive(server, clients, *, silent: dict[int, Kind] | None = None,
           tamper: _Callable[[object], object] | None = None, sent: list | None = None) -> None:
    """The honest round, except that clients in ``silent`` stop answering from the given
    kind of request on, and ``tamper`` may rewrite any client's reply. Every server message
    is appended to ``sent``."""
    silent = silent or {}
    stops: dict[int, bool] = {}
    sent = [] if sent is None else sent
    out = server.start()
    while out or not server.finished:
        sent.extend(out)
        nxt = []
        for m in out:
            u = m.recipient
            if u in silent and (stops.get(u) or m.KIND is silent[u]):
                stops[u] = True
                continue
            for reply in clients[u].receive(wire.decode(wire.encode(m))):
                reply = tamper(reply) if tamper else reply
                nxt += server.receive(wire.decode(wire.encode(reply)))
        if not nxt and not server.finished:
            nxt = server.close_round()
        out = nxt


def _shift(share: bytes, delta: int = 1) -> bytes:
    v = (int.from_bytes(share, "big") + delta) % shamir.PRIME
    return v.to_bytes(len(share), "big")


def _forge_seed_share(forger: int, owner: int):
    def tamper(m):
        if isinstance(m, UnmaskResponse) and m.sender == forger:
            return dataclasses.replace(m, seed_shares=tuple(
                Share(s.owner, _shift(s.value)) if s.owner == owner else s for s in m.seed_shares))
        return m
    return tamper


# -- forged shares are caught ------------------------------------------------------------
@pytest.mark.parametrize(("forger", "owner"), [(1, 2), (1, 1), (0, 3), (5, 0)])
def test_a_forged_seed_share_with_exactly_t_responders_aborts_naming_the_suspects(
        forger: int, owner: int) -> None:
    # n = 6, t = 4; clients 2 and 4 (or 3 and 4) drop before unmasking: exactly t answer.
    droppers = [u for u in (2, 3, 4) if u not in (forger, owner)][:2]
    cfg, server, clients, _ = _build()
    assert cfg.threshold == 4
    with pytest.raises(ForgedShareError) as err:
        _drive(server, clients, silent={u: Kind.UNMASK_REQUEST for u in droppers},
               tamper=_forge_seed_share(forger, owner))
    assert forger in err.value.suspects and err.value.owner == owner
    assert server.stage is ServerStage.ABORTED
    with pytest.raises(UsageError):
        server.result()  # never a silently wrong sum


@pytest.mark.parametrize("forgers", [(1,), (1, 3)])
def test_forged_seed_shares_among_more_than_t_are_found_and_left_out(forgers) -> None:
    cfg, server, clients, encoded = _build()  # n = 6 answer, t = 4
    owner = 2
    tampers = [_forge_seed_share(f, owner) for f in forgers]

    def tamper(m):
        for f in tampers:
            m = f(m)
        return m
    _drive(server, clients, tamper=tamper)
    res = server.result()
    assert np.array_equal(res.int_sum, sum(cfg.encoding.centre(e) for e in encoded))
    assert server.suspects == {owner: tuple(sorted(forgers))}


def test_a_forged_key_share_of_a_dropped_client_is_caught() -> None:
    def forge_key(m):
        if isinstance(m, UnmaskResponse) and m.sender == 1:
            return dataclasses.replace(m, key_shares=tuple(
                Share(s.owner, _shift(s.value, 7)) for s in m.key_shares))
        return m
    # Client 5 drops before masking: its mask key is rebuilt from the others' key shares.
    cfg, server, clients, encoded = _build()
    _drive(server, clients, silent={5: Kind.SHARE_FORWARD}, tamper=forge_key)
    res = server.result()  # 5 key shares, t = 4: the forged one is left out
    assert np.array_equal(res.int_sum, sum(cfg.encoding.centre(e) for e in encoded[:5]))
    assert server.suspects == {5: (1,)}
    cfg, server, clients, _ = _build(seed="i13-b")
    with pytest.raises(ForgedShareError) as err:  # exactly t = 4 answer
        _drive(server, clients, silent={5: Kind.SHARE_FORWARD, 4: Kind.UNMASK_REQUEST},
               tamper=forge_key)
    assert 1 in err.value.suspects and err.value.owner == 5
    assert server.stage is ServerStage.ABORTED


def test_an_owner_that_commits_to_another_seed_is_caught() -> None:
    # A cheating client deals (and masks with) another seed than the one it committed to.
    def lie(m):
        if type(m).__name__ == "AdvertiseKeys" and m.sender == 3:
            clients[3]._seed = bytes(32)  # white box: after the commitment went out
        return m
    cfg, server, clients, _ = _build()
    with pytest.raises(ForgedShareError) as err:
        _drive(server, clients, tamper=lie)
    assert 3 in err.value.suspects


# -- a range check before release, and never a sum of one --------------------------------
def test_check_release_refuses_what_contributors_cannot_produce() -> None:
    cfg = protocols.get("plaintext").make_config(4, 3)
    enc = cfg.encoding
    m = int(np.ceil(enc.max_weight * max(enc.clip, 1.0) * enc.scale))
    ok = np.array([3 * m, -3 * m, 0, 3 * 2**enc.frac_bits], np.int64)
    check_release(ok, 3.0, (0, 1, 2), cfg)
    with pytest.raises(RangeCheckError, match="coordinate 1"):
        check_release(ok - np.array([0, 1, 0, 0]), 3.0, (0, 1, 2), cfg)
    with pytest.raises(RangeCheckError, match="total weight"):
        check_release(ok, -21050.0, (0, 1, 2), cfg)
    with pytest.raises(DropoutError, match="fewer than 2"):
        check_release(ok, 1.0, (0,), cfg)
    raised = protocols.get("plaintext").make_config(4, 3, min_clients=3)
    with pytest.raises(DropoutError, match="fewer than 3"):
        check_release(ok, 2.0, 2, raised)


def test_a_forged_plaintext_input_is_range_checked() -> None:
    spec = protocols.get("plaintext")
    cfg = spec.make_config(3, 2)
    server = spec.server(cfg, Csprng.from_seed(1))
    clients = [spec.client(cfg, u, Csprng.from_seed(u + 10)) for u in range(3)]
    for c in clients:
        c.set_input(np.zeros(2))
    replies = [clients[m.recipient].receive(m)[0] for m in server.start()]
    huge = replies[0].encoded.copy()
    huge[0] = 2**30
    server.receive(dataclasses.replace(replies[0], encoded=huge))
    server.receive(replies[1])
    with pytest.raises(RangeCheckError):
        server.receive(replies[2])
    with pytest.raises(UsageError):
        server.result()


@pytest.mark.parametrize("name", ["plaintext", "secagg", "secagg+"])
def test_a_cohort_of_one_is_refused_by_every_config(name: str) -> None:
    with pytest.raises(ConfigError, match=">= 2"):
        protocols.get(name).make_config(1, 4)


def test_a_round_left_with_one_contributor_releases_nothing() -> None:
    cfg, server, clients, _ = _build(n=3)  # t = 2
    with pytest.raises(DropoutError):
        _drive(server, clients, silent={1: Kind.SHARE_FORWARD, 2: Kind.SHARE_FORWARD})
    assert server.stage is ServerStage.ABORTED


def test_simulate_with_one_client_is_refused_with_one_typed_line(capsys) -> None:
    from fl.cli import main

    code = main(["simulate", "--protocol", "secagg+", "--clients", "1"])
    out, err = capsys.readouterr()
    assert code != 0 and '"exact": true' not in out
    assert len(err.strip().splitlines()) == 1 and ">= 2" in err


# -- no replay across runs of one (session, round) ---------------------------------------
def test_a_shared_answer_store_refuses_a_second_run_of_the_same_round() -> None:
    stores = {u: MemoryAnsweredRequests() for u in range(6)}
    cfg, server, clients, _ = _build(answered=stores)
    _drive(server, clients)
    # The server runs the same (session, round) again: fresh cores, same stores.
    cfg2, server2, clients2, _ = _build(answered=stores, rng_seed="run2")
    req = server2.start()[0]
    with pytest.raises(ProtocolError, match="already answered"):
        clients2[req.recipient].receive(req)
    assert clients2[req.recipient].state is ClientState.ABORTED


def test_a_rebuilt_core_replaying_its_log_is_answered_but_not_a_different_request() -> None:
    # A stateless driver rebuilds the core from its log for every message (the Flower mod):
    # the same answers again are fine, a different unmask request is a replay attack.
    store = MemoryAnsweredRequests()
    cfg, server, clients, _ = _build(answered={0: store})
    log: list = []
    out = server.start()
    honest = None
    while out:
        nxt = []
        for m in out:
            if m.recipient == 5 and m.KIND is Kind.SHARE_FORWARD:
                continue  # client 5 drops before masking
            if m.recipient == 0:
                if m.KIND is Kind.UNMASK_REQUEST:
                    honest = m
                log.append(m)
            nxt += [r for reply in clients[m.recipient].receive(m) for r in server.receive(reply)]
        if not nxt and not server.finished:
            nxt = server.close_round()
        out = nxt
    assert honest is not None and honest.dropped == (5,)

    def rebuilt():
        spec = protocols.get("secagg")
        c = spec.client(cfg, 0, Csprng.from_seed("i13/roles").spawn("c0"), answered=store)
        c.set_input(np.full(DIM, 0.01))
        for m in log[:-1]:
            c.receive(m)
        return c
    again = rebuilt().receive(honest)  # the very same request: the very same answer
    assert isinstance(again[0], UnmaskResponse)
    flipped = dataclasses.replace(honest, survivors=tuple(sorted({*honest.survivors, 5})),
                                  dropped=())
    c = rebuilt()
    with pytest.raises(ProtocolError, match="already answered"):
        c.receive(flipped)  # would reveal client 5's seed share after its key share


def test_signatures_of_one_run_do_not_top_up_another_run_of_the_same_round() -> None:
    # The reviewed attack: run one (session, round) twice, and pad the second run's
    # inconsistent survivor lists with signatures from the first.
    n, victim = 8, 7
    cfg1, server1, clients1, _ = _build(n=n, active=True, seed="top-up")
    out = server1.start()
    while out and out[0].KIND is not Kind.CONSISTENCY_REQUEST:
        out = [r for m in out for reply in clients1[m.recipient].receive(m)
               for r in server1.receive(reply)]
    without = tuple(u for u in range(n) if u != victim)
    old = {m.recipient: clients1[m.recipient].receive(dataclasses.replace(m, survivors=without))[0]
           for m in out if m.recipient != victim}
    cfg2, server2, clients2, _ = _build(n=n, active=True, seed="top-up", rng_seed="second run")
    assert cfg2.session == cfg1.session and cfg2.round_id == cfg1.round_id
    out = server2.start()
    while out[0].KIND is not Kind.CONSISTENCY_REQUEST:
        out = [r for m in out for reply in clients2[m.recipient].receive(m)
               for r in server2.receive(reply)]
    group_a = [0, 1]  # told the victim dropped, in the second run
    new = {u: clients2[u].receive(dataclasses.replace(out[u], survivors=without))[0]
           for u in group_a}
    sigs = tuple(Signed(u, (new[u] if u in new else old[u]).signature) for u in without)
    assert len(sigs) >= cfg2.signature_threshold
    ask = UnmaskRequest(version=1, round=cfg2.round_id, sender=SERVER, recipient=0,
                        survivors=without, dropped=(victim,), signatures=sigs)
    _refused(clients2[0], ask)
    with pytest.raises(ProtocolError):  # nor does the server take a first-run signature
        server2.receive(dataclasses.replace(old[3], sender=3))


# -- a graph the server cannot choose ----------------------------------------------------
def _at_broadcast(n: int = 12, *, active: bool = False, seed: object = "graph", **kw: object):
    cfg, server, clients, _ = _build("secagg+", n, active=active, seed=seed, degree=4,
                                     threshold=3, **kw)
    out = server.start()
    out = [r for m in out for reply in clients[m.recipient].receive(m)
           for r in server.receive(reply)]
    assert all(m.KIND is Kind.KEY_BROADCAST for m in out)
    return cfg, server, clients, {m.recipient: m for m in out}


def test_the_servers_randomness_does_not_choose_the_graph() -> None:
    graphs = []
    for server_seed in ("s1", "s2"):
        spec = protocols.get("secagg+")
        cfg = spec.make_config(12, DIM, degree=4, threshold=3, session=b"fixed")
        server = spec.server(cfg, Csprng.from_seed(server_seed))
        clients = [spec.client(cfg, u, Csprng.from_seed(f"same/{u}")) for u in range(12)]
        out = [r for m in server.start() for reply in clients[m.recipient].receive(m)
               for r in server.receive(reply)]
        graphs.append({m.recipient: tuple(k.client for k in m.keys) for m in out})
    assert graphs[0] == graphs[1]
    # ... and the clients' fresh nonces do: another run draws another graph.
    _, _, _, b1 = _at_broadcast(seed="g1")
    _, _, _, b2 = _at_broadcast(seed="g2")
    assert {u: tuple(k.client for k in m.keys) for u, m in b1.items()} != \
        {u: tuple(k.client for k in m.keys) for u, m in b2.items()}


@pytest.mark.parametrize("active", [False, True], ids=["passive", "active"])
def test_a_neighbourhood_chosen_by_the_server_is_refused(active: bool) -> None:
    cfg, _, clients, broadcasts = _at_broadcast(active=active)
    victim = 0
    honest = broadcasts[victim]
    everyone = {k.client: k for m in broadcasts.values() for k in m.keys}
    corrupt = [u for u in sorted(everyone) if u not in {k.client for k in honest.keys}][:4]
    chosen = tuple(everyone[u] for u in sorted([victim, *corrupt]))
    _refused(clients[victim], dataclasses.replace(honest, keys=chosen))


@pytest.mark.parametrize("active", [False, True], ids=["passive", "active"])
def test_a_roster_that_does_not_name_the_graph_is_refused(active: bool) -> None:
    cfg, _, clients, broadcasts = _at_broadcast(active=active)
    m = broadcasts[0]
    entries = list(m.roster)
    forgeries = {
        "own entry missing": tuple(e for e in entries if e.client != 0),
        "own digest changed": tuple(dataclasses.replace(e, digest=bytes(32)) if e.client == 0
                                    else e for e in entries),
        "unsorted": tuple(reversed(entries)),
        "a client twice": (*entries, entries[-1]),
        "too few for t": tuple(e for e in entries if e.client in (0, 1)),
        "a neighbour's digest changed": tuple(
            dataclasses.replace(e, digest=bytes(32)) if e.client == m.keys[1].client else e
            for e in entries),
    }
    for what, roster in forgeries.items():
        _, _, clients, broadcasts = _at_broadcast(active=active)
        with pytest.raises(ProtocolError):
            clients[0].receive(dataclasses.replace(broadcasts[0], roster=roster))
        assert clients[0].aborted, what


def test_a_phantom_advertisement_in_the_roster_is_refused_in_the_active_variant() -> None:
    # Grinding the graph with made-up advertisements: every roster entry must be signed by
    # its (enrolled) owner. Client 11 never advertised; the server invents its entry and
    # recomputes the victim's neighbourhood so that everything else is consistent.
    cfg, server, clients, broadcasts = _at_broadcast(active=True, n=12)
    m = broadcasts[0]
    everyone = {k.client: k for b in broadcasts.values() for k in b.keys}
    for i in range(64):  # grind the phantom's digest until it is not the victim's neighbour
        phantom = RosterEntry(11, bytes([i]) * 32, bytes(64))
        roster = tuple(sorted([*(e for e in m.roster if e.client != 11), phantom],
                              key=lambda e: e.client))
        graph = derived_neighbourhoods([e.client for e in roster], cfg.degree, graph_seed(
            transcript(cfg, [(e.client, e.digest) for e in roster])))
        if 11 not in graph[0]:
            break
    assert 11 not in graph[0]
    keys = tuple(everyone[u] for u in sorted(graph[0] | {0}))
    with pytest.raises(ProtocolError, match="client 11's roster entry is not signed"):
        clients[0].receive(dataclasses.replace(m, keys=keys, roster=roster))
    assert clients[0].aborted


# -- active thresholds ---------------------------------------------------------------------
def test_active_thresholds_are_derived_and_enforced() -> None:
    spec = protocols.get("secagg")
    cfg = spec.make_config(20, 4, active=True, corruption=0.2)  # c = 4: t > 12
    assert cfg.threshold == 13 == active_min_threshold(20, 0.2)
    with pytest.raises(ConfigError, match=r"t > \(m \+ c\)/2 = 12 .*use threshold >= 13"):
        spec.make_config(20, 4, active=True, corruption=0.2, threshold=12)
    spec.make_config(20, 4, active=False, corruption=0.2, threshold=12)  # passive: t > n/2
    plus = protocols.get("secagg+").make_config(100, 4, active=True)
    m = plus.degree + 1
    assert plus.threshold > (m + int(0.1 * m)) / 2


def test_the_honest_server_does_not_ask_for_signatures_it_cannot_get() -> None:
    # secagg+ active: t = 3 of 5 share holders, but 7 signatures of 12 are needed; 6 clients
    # never advertise, so 6 mask, and no consistency request is sent.
    cfg, server, clients, _ = _build("secagg+", 12, active=True, degree=4, threshold=3)
    assert cfg.signature_threshold == 7
    sent: list = []
    with pytest.raises(DropoutError, match="signature_threshold"):
        _drive(server, clients, silent={u: Kind.KEY_REQUEST for u in range(6, 12)}, sent=sent)
    assert server.stage is ServerStage.ABORTED
    assert sum(isinstance(m, ShareForward) for m in sent) == 6  # it got as far as masking
    assert not any(isinstance(m, ConsistencyRequest) for m in sent)


def test_the_file_store_remembers_answers_across_processes(tmp_path) -> None:
    import subprocess
    import sys

    from fl.flower.replay import FileAnsweredRequests

    store = FileAnsweredRequests(tmp_path / "answered")
    assert store.claim(b"s", 3, "secagg/key/client=0", b"A")
    assert store.claim(b"s", 3, "secagg/key/client=0", b"A")  # the same answer again
    assert not store.claim(b"s", 3, "secagg/key/client=0", b"B")
    assert store.claim(b"s", 4, "secagg/key/client=0", b"B")  # another round
    code = ("import sys; from fl.flower.replay import FileAnsweredRequests as F; "
            "s = F(sys.argv[1]); "
            "sys.exit(0 if (not s.claim(b's', 3, 'secagg/key/client=0', b'B') and "
            "s.claim(b's', 3, 'secagg/unmask/client=0', b'C')) else 1)")
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "answered")], check=True)
    assert not FileAnsweredRequests(tmp_path / "answered").claim(
        b"s", 3, "secagg/unmask/client=0", b"D")
    with pytest.raises(ConfigError):
        FileAnsweredRequests(tmp_path / "answered" / next(iter(
            p.name for p in (tmp_path / "answered").iterdir())))


def test_a_survivor_list_padded_with_clients_outside_the_roster_is_refused() -> None:
    cfg, server, clients, _ = _build(n=8, active=True, seed="pad")
    out = [m for m in server.start() if m.recipient != 7]  # client 7 never advertises
    out = [r for m in out for reply in clients[m.recipient].receive(m)
           for r in server.receive(reply)] or server.close_round()
    while out[0].KIND is not Kind.CONSISTENCY_REQUEST:
        out = [r for m in out for reply in clients[m.recipient].receive(m)
               for r in server.receive(reply)]
    assert out[0].survivors == tuple(range(7))
    _refused(clients[0], dataclasses.replace(out[0], survivors=tuple(range(8))))


def test_too_few_advertisements_for_t_abort_before_any_key_broadcast() -> None:
    cfg, server, clients, _ = _build(n=6)  # t = 4
    for m in server.start()[:3]:
        server.receive(clients[m.recipient].receive(m)[0])
    with pytest.raises(DropoutError, match="t=4"):
        server.close_round()
    assert server.stage is ServerStage.ABORTED
