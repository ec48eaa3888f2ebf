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
from helpers import Router, adversary_round, roles_rng

import protocols
from protocols.base import SERVER, AggregateResult, check_release
from protocols.parties import party_rng
from protocols.policy import MemoryAnsweredRequests
from protocols.secagg import active_min_threshold
from protocols.secagg._keys import graph_seed, transcript
from protocols.secagg._state import ClientState, Kind, ServerStage
from protocols.secagg.graph import derived_neighbourhoods
from protocols.secagg.messages import (
    ConsistencyRequest,
    Roster,
    RosterEntry,
    Share,
    ShareForward,
    Shares,
    Signed,
    UnmaskRequest,
    UnmaskResponse,
)
from secagg import shamir, sign
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


def _round(name: str = "secagg", seed: int = 1, round_id: int = 0,
           rng_seed: int | None = None) -> Router:
    """An active round of N clients (not started), on the kit's harness."""
    return adversary_round(name, N, DIM, seed=seed, rng_seed=rng_seed, active=True,
                           round_id=round_id)


def _until(r: Router, kind: Kind):
    """Run the honest protocol until the server emits messages of ``kind``; return them
    (still in flight: the test plays the server from here)."""
    r.start()
    return r.until(kind)


def _refused(client, msg) -> None:
    with pytest.raises(ProtocolError):
        client.receive(msg)
    assert client.state is ClientState.ABORTED
    with pytest.raises(ProtocolError):  # and it stays aborted: nothing more leaves it
        client.receive(msg)


def test_honest_active_round_is_exact() -> None:
    r = _round()
    cfg, encoded = r.config, list(r.encoded)
    r.start()
    res = r.run()
    assert res.contributors == tuple(range(N))
    expected = sum(cfg.encoding.centre(e) for e in encoded)
    assert np.array_equal(res.int_sum, expected)
    assert any(m.KIND is Kind.CONSISTENCY_REQUEST for m in r.log)  # the active variant's


def test_swapped_public_key_is_refused() -> None:
    r = _round()
    clients = r.clients
    broadcasts = _until(r, Kind.KEY_BROADCAST)
    to0 = next(m for m in broadcasts if m.recipient == 0)
    evil = KeyPair.generate(Csprng.from_seed(99))
    keys = tuple(dataclasses.replace(k, s_pk=evil.public) if k.client == 3 else k for k in to0.keys)
    _refused(clients[0], dataclasses.replace(to0, keys=keys))


def test_server_cannot_sign_for_a_client() -> None:
    r = _round()
    clients = r.clients
    broadcasts = _until(r, Kind.KEY_BROADCAST)
    to0 = next(m for m in broadcasts if m.recipient == 0)
    server_seed = sign.generate(Csprng.from_seed(5))
    evil = KeyPair.generate(Csprng.from_seed(98))
    keys = tuple(
        dataclasses.replace(k, c_pk=evil.public, signature=sign.sign(server_seed, b"forged"))
        if k.client == 2 else k for k in to0.keys
    )
    _refused(clients[0], dataclasses.replace(to0, keys=keys))


def test_forged_advertisement_is_refused_by_the_server() -> None:
    r = _round()
    server, clients = r.server, r.clients
    req = server.start()[0]
    advert = clients[req.recipient].receive(req)[0]
    forged = dataclasses.replace(advert, signature=bytes(64))
    with pytest.raises(ProtocolError):
        server.receive(forged)
    server.receive(advert)  # the honest one is still accepted: the refusal changed nothing


def test_equivocation_on_the_survivor_list_is_caught() -> None:
    r = _round()
    cfg, clients = r.config, r.clients
    requests = _until(r, Kind.CONSISTENCY_REQUEST)
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
    r = _round()
    cfg, clients = r.config, r.clients
    requests = _until(r, Kind.CONSISTENCY_REQUEST)
    c = clients[requests[0].recipient]
    ask = UnmaskRequest(version=1, round=cfg.round_id, sender=-1, recipient=c.client_id,
                        survivors=tuple(range(N)), dropped=())
    _refused(c, ask)


def test_request_for_both_shares_is_refused() -> None:
    r = _round()
    clients = r.clients
    requests = _until(r, Kind.UNMASK_REQUEST)
    m = requests[0]
    other = next(u for u in m.survivors if u != m.recipient)
    _refused(clients[m.recipient], dataclasses.replace(m, dropped=(other,)))


def test_honest_unmask_request_with_valid_quorum_is_answered() -> None:
    r = _round()
    cfg, clients = r.config, r.clients
    requests = _until(r, Kind.UNMASK_REQUEST)
    m = requests[0]
    assert len(m.signatures) >= cfg.signature_threshold
    out = clients[m.recipient].receive(m)
    assert isinstance(out[0], UnmaskResponse)
    with pytest.raises(ProtocolError):  # a second request in the same round
        clients[m.recipient].receive(m)


def test_replayed_message_from_another_round_is_refused() -> None:
    old_round = _round(round_id=0)
    old_clients = old_round.clients
    old_requests = _until(old_round, Kind.CONSISTENCY_REQUEST)
    r = _round(round_id=1, rng_seed=7)
    clients = r.clients
    _until(r, Kind.CONSISTENCY_REQUEST)
    old = old_requests[0]
    _refused(clients[old.recipient], old)  # round 0's message in round 1
    # even relabelled as round 1, a signature made in round 0 does not verify in round 1
    r1 = _round(round_id=1, rng_seed=8)
    server1, clients1 = r1.server, r1.clients
    reqs1 = _until(r1, Kind.CONSISTENCY_REQUEST)
    resp = clients1[0].receive(reqs1[0])[0]
    replayed = dataclasses.replace(resp, signature=old_clients[0].receive(old_requests[0])[0].signature)
    with pytest.raises(ProtocolError):
        server1.receive(replayed)


def test_active_client_needs_matching_signing_key() -> None:
    spec = protocols.get("secagg")
    cfg, creds = spec.provision(spec.make_config(N, DIM, active=True), Csprng.from_seed(1))
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
           silent: dict[int, Kind] | None = None,
           tamper: _Callable[[object], object] | None = None, **kw: object) -> Router:
    """A round on the kit's harness (not started). Clients in ``silent`` stop answering from
    the given kind of request on, and ``tamper`` may rewrite any message on the wire."""
    return adversary_round(name, n, DIM, seed=seed, rng_seed=rng_seed, answered=answered,
                           drop_at=silent, tamper=tamper, active=active, session=session, **kw)


def _drive(r: Router) -> AggregateResult:
    """The round to its end, as a driver runs it; what a role raises propagates."""
    r.start()
    return r.run()


def _shift(share: bytes, delta: int = 1) -> bytes:
    v = (int.from_bytes(share, "big") + delta) % shamir.PRIME
    return v.to_bytes(len(share), "big")


def _forge_seed_share(forger: int, owner: int):
    def tamper(m):
        if isinstance(m, UnmaskResponse) and m.sender == forger:
            return dataclasses.replace(m, seed_shares=Shares.of(
                Share(s.owner, _shift(s.value)) if s.owner == owner else s for s in m.seed_shares))
        return m
    return tamper


# -- forged shares are caught ------------------------------------------------------------
@pytest.mark.parametrize(("forger", "owner"), [(1, 2), (1, 1), (0, 3), (5, 0)])
def test_a_forged_seed_share_with_exactly_t_responders_aborts_naming_the_suspects(
        forger: int, owner: int) -> None:
    # n = 6, t = 4; clients 2 and 4 (or 3 and 4) drop before unmasking: exactly t answer.
    droppers = [u for u in (2, 3, 4) if u not in (forger, owner)][:2]
    r = _build(silent={u: Kind.UNMASK_REQUEST for u in droppers},
               tamper=_forge_seed_share(forger, owner))
    cfg, server = r.config, r.server
    assert cfg.threshold == 4
    with pytest.raises(ForgedShareError) as err:
        _drive(r)
    assert forger in err.value.suspects and err.value.owner == owner
    assert server.stage is ServerStage.ABORTED
    with pytest.raises(UsageError):
        server.result()  # never a silently wrong sum


@pytest.mark.parametrize("forgers", [(1,), (1, 3)])
def test_forged_seed_shares_among_more_than_t_are_found_and_left_out(forgers) -> None:
    owner = 2
    tampers = [_forge_seed_share(f, owner) for f in forgers]

    def tamper(m):
        for f in tampers:
            m = f(m)
        return m
    r = _build(tamper=tamper)  # n = 6 answer, t = 4
    cfg, server, encoded = r.config, r.server, list(r.encoded)
    res = _drive(r)
    assert np.array_equal(res.int_sum, sum(cfg.encoding.centre(e) for e in encoded))
    assert server.suspects == {owner: tuple(sorted(forgers))}


def test_a_forged_key_share_of_a_dropped_client_is_caught() -> None:
    def forge_key(m):
        if isinstance(m, UnmaskResponse) and m.sender == 1:
            return dataclasses.replace(m, key_shares=Shares.of(
                Share(s.owner, _shift(s.value, 7)) for s in m.key_shares))
        return m
    # Client 5 drops before masking: its mask key is rebuilt from the others' key shares.
    r = _build(silent={5: Kind.SHARE_FORWARD}, tamper=forge_key)
    cfg, server, encoded = r.config, r.server, list(r.encoded)
    res = _drive(r)  # 5 key shares, t = 4: the forged one is left out
    assert np.array_equal(res.int_sum, sum(cfg.encoding.centre(e) for e in encoded[:5]))
    assert server.suspects == {5: (1,)}
    r = _build(seed="i13-b", silent={5: Kind.SHARE_FORWARD, 4: Kind.UNMASK_REQUEST},
               tamper=forge_key)
    server = r.server
    with pytest.raises(ForgedShareError) as err:  # exactly t = 4 answer
        _drive(r)
    assert 1 in err.value.suspects and err.value.owner == 5
    assert server.stage is ServerStage.ABORTED


def test_an_owner_that_commits_to_another_seed_is_caught() -> None:
    # A cheating client deals (and masks with) another seed than the one it committed to.
    def lie(m):
        if type(m).__name__ == "AdvertiseKeys" and m.sender == 3:
            r.clients[3]._seed = bytes(32)  # white box: after the commitment went out
        return m
    r = _build(tamper=lie)
    with pytest.raises(ForgedShareError) as err:
        _drive(r)
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

    def huge(m):
        if m.sender == 0 and m.recipient == SERVER:
            encoded = m.encoded.copy()
            encoded[0] = 2**30
            return dataclasses.replace(m, encoded=encoded)
        return m
    r = Router(spec, cfg, Csprng.from_seed(1), [np.zeros(2)] * 3, tamper=huge)
    with pytest.raises(RangeCheckError):
        r.run()
    assert not r.pending and len(r.log) == 6  # refused at the last upload, when it sums
    with pytest.raises(UsageError):
        r.server.result()


@pytest.mark.parametrize("name", ["plaintext", "secagg", "secagg+"])
def test_a_cohort_of_one_is_refused_by_every_config(name: str) -> None:
    with pytest.raises(ConfigError, match=">= 2"):
        protocols.get(name).make_config(1, 4)


def test_a_round_left_with_one_contributor_releases_nothing() -> None:
    r = _build(n=3, silent={1: Kind.SHARE_FORWARD, 2: Kind.SHARE_FORWARD})  # t = 2
    server = r.server
    with pytest.raises(DropoutError):
        _drive(r)
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
    _drive(_build(answered=stores))
    # The server runs the same (session, round) again: fresh cores, same stores.
    r2 = _build(answered=stores, rng_seed="run2")
    clients2 = r2.clients
    req = r2.server.start()[0]
    with pytest.raises(ProtocolError, match="already answered"):
        clients2[req.recipient].receive(req)
    assert clients2[req.recipient].state is ClientState.ABORTED


def test_a_rebuilt_core_replaying_its_log_is_answered_but_not_a_different_request() -> None:
    # A stateless driver rebuilds the core from its log for every message (the Flower mod):
    # the same answers again are fine, a different unmask request is a replay attack.
    store = MemoryAnsweredRequests()
    r = _build(answered={0: store}, silent={5: Kind.SHARE_FORWARD})  # 5 drops before masking
    cfg = r.config
    _drive(r)
    log = [m for m in r.log if m.recipient == 0]
    honest = log[-1]
    assert honest.KIND is Kind.UNMASK_REQUEST and honest.dropped == (5,)

    def rebuilt():
        spec = protocols.get("secagg")
        c = spec.client(cfg, 0, party_rng(roles_rng("i13"), 0), answered=store)
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
    r1 = _build(n=n, active=True, seed="top-up")
    cfg1, clients1 = r1.config, r1.clients
    out = _until(r1, Kind.CONSISTENCY_REQUEST)
    without = tuple(u for u in range(n) if u != victim)
    old = {m.recipient: clients1[m.recipient].receive(dataclasses.replace(m, survivors=without))[0]
           for m in out if m.recipient != victim}
    r2 = _build(n=n, active=True, seed="top-up", rng_seed="second run")
    cfg2, server2, clients2 = r2.config, r2.server, r2.clients
    assert cfg2.session == cfg1.session and cfg2.round_id == cfg1.round_id
    out2 = {m.recipient: m for m in _until(r2, Kind.CONSISTENCY_REQUEST)}
    group_a = [0, 1]  # told the victim dropped, in the second run
    new = {u: clients2[u].receive(dataclasses.replace(out2[u], survivors=without))[0]
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
    r = _build("secagg+", n, active=active, seed=seed, degree=4, threshold=3, **kw)
    out = _until(r, Kind.KEY_BROADCAST)
    assert len(out) == n and len(r.log) == 2 * n  # one request and one advert per client
    return r.config, r.server, r.clients, {m.recipient: m for m in out}


def test_the_servers_randomness_does_not_choose_the_graph() -> None:
    graphs = []
    for server_seed in ("s1", "s2"):  # the same clients, servers of other randomness
        spec = protocols.get("secagg+")
        cfg = spec.make_config(12, DIM, degree=4, threshold=3, session=b"fixed")
        r = Router(spec, cfg, Csprng.from_seed("same"),
                   server=spec.server(cfg, Csprng.from_seed(server_seed)))
        out = r.until(Kind.KEY_BROADCAST)
        assert len(out) == 12 and len(r.log) == 24  # one exchange with every client
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
    forgeries = {what: Roster.of(roster) for what, roster in {
        "own entry missing": [e for e in entries if e.client != 0],
        "own digest changed": [dataclasses.replace(e, digest=bytes(32)) if e.client == 0
                               else e for e in entries],
        "unsorted": list(reversed(entries)),
        "a client twice": [*entries, entries[-1]],
        "too few for t": [e for e in entries if e.client in (0, 1)],
        "a neighbour's digest changed": [
            dataclasses.replace(e, digest=bytes(32)) if e.client == m.keys[1].client else e
            for e in entries],
        "a digest cut short": [dataclasses.replace(e, digest=e.digest[:31]) if e.client == 5
                               else e for e in entries],
    }.items()}
    forgeries["a signature too many"] = dataclasses.replace(
        m.roster, signatures=m.roster.signatures + bytes(64))
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
        roster = Roster.of(sorted([*(e for e in m.roster if e.client != 11), phantom],
                                  key=lambda e: e.client))
        graph = derived_neighbourhoods([e.client for e in roster], cfg.degree, graph_seed(
            transcript(cfg, roster.clients, roster.digests)))
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
    r = _build("secagg+", 12, active=True, degree=4, threshold=3,
               silent={u: Kind.KEY_REQUEST for u in range(6, 12)})
    cfg, server = r.config, r.server
    assert cfg.signature_threshold == 7
    with pytest.raises(DropoutError, match="signature_threshold"):
        _drive(r)
    sent = r.sent[SERVER]
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
    r = _build(n=8, active=True, seed="pad", silent={7: 0})  # client 7 never advertises
    out = _until(r, Kind.CONSISTENCY_REQUEST)
    assert out[0].survivors == tuple(range(7))
    _refused(r.clients[0], dataclasses.replace(out[0], survivors=tuple(range(8))))


def test_too_few_advertisements_for_t_abort_before_any_key_broadcast() -> None:
    r = _build(n=6, silent={3: 0, 4: 0, 5: 0})  # t = 4
    server = r.server
    r.start()
    r.flush()
    assert len(r.sent.get(SERVER, [])) == 6 and not r.pending  # three answered
    with pytest.raises(DropoutError, match="t=4"):
        r.close()
    assert server.stage is ServerStage.ABORTED
