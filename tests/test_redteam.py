"""Red-team variants of the issue 13 / 15 attacks, through the public API only.

Each test plays a cheating server, aggregator or client, and checks that the attack ends in a
typed :class:`SecAggError` (or the bounded behaviour SECURITY.md documents): never a wrong
sum, a release of fewer than 2 contributors, or a config weaker than the client's policy.
The attacks already covered by test_active_adversary.py, test_malicious_server.py,
test_client_policy.py and test_he_roles.py are not repeated; these are their variants.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from helpers import Router, adversary_round, roles_rng

import protocols
from protocols.base import DECRYPTOR, SERVER
from protocols.he.blind import open_envelope
from protocols.he.messages import EncryptedInput, PublicContext
from protocols.parties import party_rng
from protocols.policy import ClientPolicy
from protocols.secagg import ClientRegistry
from protocols.secagg._keys import graph_seed, transcript
from protocols.secagg._state import ClientState, Kind, ServerStage
from protocols.secagg.graph import derived_neighbourhoods
from protocols.secagg.messages import Roster, Share, Shares, UnmaskResponse
from secagg import shamir, sign
from secagg.errors import (
    ConfigError,
    ForgedShareError,
    PolicyError,
    ProtocolError,
    SecAggError,
    UsageError,
)
from secagg.rng import Csprng

DIM = 16


# -- helpers (the honest round, with hooks for the attacker) ------------------------------
def _build(name: str = "secagg", n: int = 6, *, seed: object = "redteam", active: bool = False,
           rng_seed: object | None = None, answered=None, silent=None, tamper=None,
           **kw: object) -> Router:
    """A round on the kit's harness (not started): clients in ``silent`` stop answering from
    the given kind of request on; ``tamper`` may rewrite any message on the wire."""
    return adversary_round(name, n, DIM, seed=seed, rng_seed=rng_seed, answered=answered,
                           drop_at=silent, tamper=tamper, active=active, session=b"red team",
                           **kw)


def _drive(r: Router) -> None:
    r.start()
    r.run()


def _until_kind(r: Router, kind: Kind):
    r.start()
    return r.until(kind)


def _shift(share: bytes, delta: int) -> bytes:
    return ((int.from_bytes(share, "big") + delta) % shamir.PRIME).to_bytes(len(share), "big")


def _forge(forgers: dict[int, int], owner: int):
    """Forgers shift their share of ``owner``'s seed, each by its own amount."""
    def tamper(m):
        if isinstance(m, UnmaskResponse) and m.sender in forgers:
            return dataclasses.replace(m, seed_shares=Shares.of(
                Share(s.owner, _shift(s.value, forgers[m.sender])) if s.owner == owner else s
                for s in m.seed_shares))
        return m
    return tamper


# == forged shares: more forgers than the good shares can outvote ==========================
@pytest.mark.parametrize("forgers", [{1: 1, 3: 2, 4: 3}, {1: 5, 3: 5, 4: 5}],
                         ids=["independent", "same shift"])
def test_too_many_forged_seed_shares_among_more_than_t_abort_never_a_wrong_sum(forgers) -> None:
    # n = 6 answer, t = 4: three forged shares leave 3 good ones, fewer than t.
    r = _build(tamper=_forge(forgers, owner=2))
    cfg, server = r.config, r.server
    assert cfg.threshold == 4
    with pytest.raises(ForgedShareError) as err:
        _drive(r)
    assert err.value.owner == 2 and set(forgers) <= set(err.value.suspects)
    assert server.stage is ServerStage.ABORTED
    with pytest.raises(UsageError):
        server.result()


def test_colluders_whose_forged_shares_agree_on_another_secret_are_caught() -> None:
    # Exactly t = 4 answer; two colluders shift their shares so that the 4 shares lie on a
    # polynomial of degree t - 1 with a different constant term (a consistent forgery, not
    # noise): the interpolation is well defined, but does not open the commitment.
    holders = [0, 1, 2, 3]  # 4 and 5 drop before unmasking
    xs = [h + 1 for h in holders]
    # The Lagrange coefficients at 0 of holders 0 and 1; shifts d0, d1 with l0*d0 + l1*d1 = 1
    # move the secret by 1 while a polynomial through all 4 shares still exists.
    def lag(i: int) -> int:
        num, den = 1, 1
        for j in xs:
            if j != i:
                num, den = num * (-j) % shamir.PRIME, den * (i - j) % shamir.PRIME
        return num * pow(den, -1, shamir.PRIME) % shamir.PRIME
    d0 = pow(lag(1), -1, shamir.PRIME)  # holder 0 (x = 1) moves the secret by one
    r = _build(seed="consistent", silent={4: Kind.UNMASK_REQUEST, 5: Kind.UNMASK_REQUEST},
               tamper=_forge({0: d0}, owner=3))
    server = r.server
    with pytest.raises(ForgedShareError) as err:
        _drive(r)
    assert err.value.owner == 3 and 0 in err.value.suspects
    with pytest.raises(UsageError):
        server.result()


# == replay across runs: a file-backed store shared by fresh cores =========================
def test_a_file_store_refuses_an_unmask_request_with_another_survivor_set(tmp_path) -> None:
    from fl.flower.replay import FileAnsweredRequests

    # Run 1: client 0 answers an honest unmask request (client 5 dropped before masking).
    store_dir = tmp_path / "node-0"
    r = _build(answered={0: FileAnsweredRequests(store_dir)}, silent={5: Kind.SHARE_FORWARD})
    cfg = r.config
    _drive(r)
    to0 = [m for m in r.log if m.recipient == 0]
    log = [m for m in to0 if m.KIND is not Kind.UNMASK_REQUEST]
    asked = [m for m in to0 if m.KIND is Kind.UNMASK_REQUEST]
    assert asked and asked[0].dropped == (5,)

    # Another process: a fresh core and a fresh store object on the same directory, replayed
    # to the same point, is asked for client 5's seed share instead.
    spec = protocols.get("secagg")
    again = spec.client(cfg, 0, party_rng(roles_rng("redteam"), 0),
                        answered=FileAnsweredRequests(store_dir))
    again.set_input(np.full(DIM, 0.01))
    for m in log:
        again.receive(m)
    flipped = dataclasses.replace(asked[0], survivors=tuple(sorted({*asked[0].survivors, 5})),
                                  dropped=())
    with pytest.raises(ProtocolError, match="already answered"):
        again.receive(flipped)
    assert again.state is ClientState.ABORTED


# == graph grinding by dropping honest advertisements ======================================
@pytest.mark.parametrize("active", [False, True], ids=["passive", "active"])
def test_a_server_that_drops_advertisements_cannot_keep_the_full_graph(active: bool) -> None:
    # The server leaves clients 10 and 11 out of the roster it sends, but gives the victim
    # the neighbours of another graph (the full roster's, or a ground one): refused. With the
    # neighbours the reduced roster really gives, the broadcast is accepted: dropping
    # advertisements only re-draws the graph (the bound SECURITY.md states).
    n = 12
    r = _build("secagg+", n, active=active, seed="grind", degree=4, threshold=3)
    cfg, clients = r.config, r.clients
    out = _until_kind(r, Kind.KEY_BROADCAST)
    assert len(r.log) == 2 * n  # one exchange: a key request and an advert per client
    broadcasts = {m.recipient: m for m in out}
    everyone = {k.client: k for m in broadcasts.values() for k in m.keys}
    victim = 0
    honest = broadcasts[victim]
    reduced = Roster.of(e for e in honest.roster if e.client not in (10, 11))
    ids = [e.client for e in reduced]
    graph = derived_neighbourhoods(ids, cfg.degree, graph_seed(
        transcript(cfg, reduced.clients, reduced.digests)))
    stale = dataclasses.replace(honest, roster=reduced)  # the full roster's neighbours
    assert {k.client for k in honest.keys} - {victim} != graph[victim]  # a re-drawn graph
    with pytest.raises(ProtocolError, match="may not choose the graph"):
        clients[victim].receive(stale)
    assert clients[victim].aborted
    # A fresh victim of the same round, given the reduced roster's own graph: accepted.
    fresh = _build("secagg+", n, active=active, seed="grind", degree=4, threshold=3).clients
    fresh[victim].receive(_key_request(cfg, victim))
    keys = tuple(everyone[u] for u in sorted(graph[victim] | {victim}))
    # the fresh core drew the same keys (same seed): its own entry is unchanged
    reply = fresh[victim].receive(dataclasses.replace(honest, keys=keys, roster=reduced))
    assert {sh.peer for sh in reply[0].shares} == graph[victim]


def _key_request(cfg, u):
    from protocols.base import header
    from protocols.secagg.messages import KeyRequest
    return KeyRequest(**header(cfg, SERVER, u))


# == weak configs from the server: variants ===============================================
def test_a_registry_that_keeps_the_clients_own_key_but_swaps_the_others_is_refused() -> None:
    spec = protocols.get("secagg")
    cfg = spec.make_config(8, DIM, active=True)
    cfg, creds = spec.provision(cfg, Csprng.from_seed("true registry"))
    pin = cfg.registry.fingerprint()
    sybils = {u: sign.verify_key(sign.generate(Csprng.from_seed(f"sybil/{u}"))) for u in range(8)}
    swapped = ClientRegistry({u: (cfg.registry.keys[u] if u == 0 else sybils[u])
                              for u in range(8)})
    forged = dataclasses.replace(cfg, registry=swapped)
    policy = ClientPolicy(require_active=True, registry_fingerprint=pin)
    with pytest.raises(PolicyError, match="registry_fingerprint"):
        spec.client(forged, 0, Csprng.from_seed("c0"), policy=policy, **creds[0])
    spec.client(cfg, 0, Csprng.from_seed("c0"), policy=policy, **creds[0])  # the true one


@pytest.mark.parametrize(("kw", "setting"), [
    ({"threshold": 2}, "threshold=2 is below the policy's minimum 3"),
    ({"degree": 10, "threshold": 3}, "min_threshold_fraction"),  # t kept, k raised
    ({"min_clients": 1}, "min_contributors"),
    ({"min_clients": 2}, "min_contributors"),
    ({"corruption": 0.0}, "min_corruption"),
])
def test_secagg_plus_configs_weakened_one_setting_at_a_time_are_refused(kw, setting) -> None:
    spec = protocols.get("secagg+")
    policy = ClientPolicy(protocols=("secagg+",), min_cohort=12, min_contributors=3,
                          min_threshold=2, min_threshold_fraction=0.5, min_corruption=0.1)
    base: dict[str, object] = {"degree": 4, "threshold": 3, "min_clients": 3}
    base.update(kw)
    cfg = spec.make_config(12, DIM, **base)
    with pytest.raises(PolicyError, match=setting):
        spec.client(cfg, 0, Csprng.from_seed("c0"), policy=policy)
    spec.client(spec.make_config(12, DIM, degree=4, threshold=3, min_clients=3), 0,
                Csprng.from_seed("c0"), policy=policy)  # the unweakened config is accepted


def test_an_active_config_with_t_below_the_active_bound_never_reaches_the_client() -> None:
    # t = 2 (or t = 3 with k raised to 10) cannot even be built as an active config: what a
    # server sends over the wire is decoded into the config class, which refuses it.
    spec = protocols.get("secagg+")
    for kw in ({"threshold": 2}, {"degree": 10, "threshold": 3}):
        with pytest.raises(ConfigError, match="active variant needs threshold"):
            spec.make_config(12, DIM, active=True, **{"degree": 4, **kw})


# == HE: the aggregator substitutes the decryptor ==========================================
HE = ["paillier", "ckks"]


def _he(name: str, *, decryptor_seed: object = "true decryptor", strip: bool = False):
    """A config whose decryptor_key is the true decryptor's (or none, with ``strip``)."""
    spec = protocols.get(name)
    if name == "ckks":
        pytest.importorskip("tenseal")
    key = sign.generate(Csprng.from_seed(decryptor_seed))
    cfg = spec.make_config(4, 8, decryptor_key=None if strip else sign.verify_key(key))
    cfg, creds = spec.provision(cfg, Csprng.from_seed("he enrol"))
    return spec, cfg, creds, key


def test_without_a_pin_an_aggregator_that_strips_the_decryptor_key_reads_uploads() -> None:
    """The attack the pin defeats: the documented warning, played out. The aggregator sends
    the client a config with no decryptor_key, runs its own decryptor, and opens the
    client's upload (blind and all). Shown on paillier, where it is exact."""
    spec, cfg, creds, _ = _he("paillier", strip=True)
    client = spec.client(cfg, 0, Csprng.from_seed("victim"), **creds[0])  # no policy
    x = np.linspace(-0.3, 0.3, cfg.dim)
    client.set_input(x)
    want = client.encoded.copy()
    rogue = spec.helpers(cfg, Csprng.from_seed("rogue"))[DECRYPTOR]
    agg = spec.server(cfg, Csprng.from_seed("agg"))
    ctx = rogue.receive(agg.start()[0])[0]
    ask = [m for m in agg.receive(ctx) if m.recipient == 0][0]
    up = client.receive(ask)[0]
    assert isinstance(up, EncryptedInput)
    seed = open_envelope(up.envelope, session=cfg.session, round_id=cfg.round_id,
                         scheme=ctx.scheme.value, client=0,
                         blind_secret=rogue._blind.secret, blind_key=rogue._blind.public,
                         verify_key=cfg.registry.verify_key(0))
    scheme = rogue.SCHEME
    stolen = scheme.decrypt(cfg, rogue._secret, scheme.open_blocks(cfg, rogue._secret, up.blocks),
                            [seed])
    np.testing.assert_array_equal(stolen, cfg.encoding.centre(want))


@pytest.mark.parametrize("name", HE)
@pytest.mark.parametrize("change", ["stripped", "substituted"])
def test_a_client_that_pins_the_decryptor_key_refuses_a_config_without_it(
        name: str, change: str) -> None:
    spec, cfg, creds, key = _he(name)
    policy = ClientPolicy(decryptor_key=sign.verify_key(key))
    if change == "stripped":
        bad = dataclasses.replace(cfg, decryptor_key=None)
    else:
        bad = dataclasses.replace(cfg, decryptor_key=sign.verify_key(
            sign.generate(Csprng.from_seed("aggregator's own"))))
    with pytest.raises(PolicyError, match="decryptor_key"):
        spec.client(bad, 0, Csprng.from_seed("c0"), policy=policy, **creds[0])
    spec.client(cfg, 0, Csprng.from_seed("c0"), policy=policy, **creds[0])  # the true one


@pytest.mark.parametrize("name", HE)
def test_he_clients_check_the_generic_policy_too(name: str) -> None:
    spec, cfg, creds, _ = _he(name)
    cases = {
        "protocol": ClientPolicy(protocols=("secagg",)),
        "min_cohort": ClientPolicy(min_cohort=10),
        "min_contributors": ClientPolicy(min_contributors=3),
        "require_active": ClientPolicy(require_active=True),
        "registry_fingerprint": ClientPolicy(registry_fingerprint="0" * 64),
    }
    for setting, policy in cases.items():
        with pytest.raises(PolicyError, match=setting):
            spec.client(cfg, 0, Csprng.from_seed("c0"), policy=policy, **creds[0])
    spec.client(cfg, 0, Csprng.from_seed("c0"), **creds[0],
                policy=ClientPolicy(protocols=(name,), min_cohort=4,
                                    registry_fingerprint=cfg.registry.fingerprint()))


def test_policy_decryptor_key_from_settings() -> None:
    vk = sign.verify_key(sign.generate(Csprng.from_seed("d")))
    assert ClientPolicy.from_settings({"policy-decryptor-key": vk.hex()}).decryptor_key == vk
    with pytest.raises(ConfigError, match="decryptor"):
        ClientPolicy.from_settings({"policy-decryptor-key": "abcd"})
    with pytest.raises(ConfigError, match="decryptor"):
        ClientPolicy(decryptor_key=b"short")


# == HE: a lying aggregator steers paillier's identification ===============================
def _framed(min_clients: int):
    """Paillier, 5 clients: the aggregator forces identification with one upload claimed as
    5, then answers the test request so that clients 1, 2 (and 3) are found culprits: it
    tests client 0's upload under their names."""
    from test_he_roles import _ask, _collect, _uploads

    from protocols.base import header
    from protocols.he.messages import IdentifyRequest, TestRequest, Verdict

    r = _collect("paillier", n=5, min_clients=min_clients, seed=f"framed/{min_clients}")
    up = _uploads(r)
    (ask,) = r.hand(_ask(r, _aggregate5(r, up), range(5)))
    assert type(ask) is IdentifyRequest
    scheme, public = r.server.SCHEME, r.server._public
    framed = (1, 2) if min_clients > 2 else (1, 2, 3)
    tests = tuple(scheme.test_blocks(r.config, public, scheme.open_blocks(
        r.config, public, up[0 if u in framed else u].blocks), Csprng.from_seed(u))
        for u in range(5))
    (verdict,) = r.hand(TestRequest(**header(r.config, SERVER, DECRYPTOR), scheme=ask.scheme,
                                    contributors=ask.contributors, tests=tests))
    assert type(verdict) is Verdict and verdict.culprits == framed
    return r, up, framed


def _aggregate5(r, up):
    from test_he_roles import _aggregate
    return _aggregate(r, [up[0].blocks] * 5)


def test_framing_honest_clients_cannot_push_a_paillier_release_below_min_clients() -> None:
    from test_he_roles import _aggregate, _ask

    from secagg.errors import DropoutError

    r, up, framed = _framed(min_clients=4)
    rest = [u for u in range(5) if u not in framed]
    with pytest.raises(DropoutError):
        r.hand(_ask(r, _aggregate(r, [up[u].blocks for u in rest]), rest))
    with pytest.raises(ProtocolError):  # nor may it ask for any other set instead
        r.hand(_ask(r, _aggregate(r, [up[u].blocks for u in range(4)]), range(4)))
    assert r.decryptor.released is None


def test_framing_honest_clients_only_drops_them_the_release_is_the_rest_once_each() -> None:
    from test_he_roles import _aggregate, _ask

    r, up, framed = _framed(min_clients=2)
    rest = [u for u in range(5) if u not in framed]
    r.hand(_ask(r, _aggregate(r, [up[u].blocks for u in rest]), rest))
    released = r.decryptor.released
    assert released is not None and released.contributors == tuple(rest)
    r.check(released)  # exactly the sum of clients 0 and 4: as if the others had dropped
    r, up, framed = _framed(min_clients=2)  # the same round again, fresh roles
    with pytest.raises(ProtocolError):  # the rest, but one of them twice: refused
        r.hand(_ask(r, _aggregate(r, [up[0].blocks] * 2), rest))
    assert r.decryptor.released is None


# == t = 1: one share is the secret ========================================================
@pytest.mark.parametrize(("name", "kw"), [
    ("secagg+", {"degree": 2, "threshold": 1}),
    ("secagg+", {"degree": 0, "threshold": 1}),
    ("secagg", {"threshold": 1}),
])
def test_a_threshold_of_one_is_refused_by_every_config(name: str, kw) -> None:
    """The attack (found by this red team, before the fix): secagg+ with k = 2, t = 1 and
    an honest-but-curious server. Victim 0's two neighbours drop after sharing; the honest
    server asks 0 for its own seed share and its neighbours' key shares, and with t = 1 each
    share *is* the secret: y_0 minus PRG(b_0) and both pair masks gave 0's encoded input
    exactly, with no colluder. (k = 0 is worse: nothing but the self mask, every input.)"""
    with pytest.raises(ConfigError, match="threshold >= 2"):
        protocols.get(name).make_config(8, DIM, **kw)


def test_no_derivation_gives_a_threshold_of_one() -> None:
    from protocols.secagg.config import derive_graph_parameters

    for n in (3, 10, 100, 1000):  # corruption 0 used to derive t = 1
        assert derive_graph_parameters(n, 0.1, 0.0)[1] >= 2
        cfg = protocols.get("secagg+").make_config(n, DIM, corruption=0.0)
        assert cfg.threshold >= 2
    assert protocols.get("secagg").make_config(2, DIM).threshold == 2


def test_a_threshold_of_one_over_the_wire_is_refused_when_decoded() -> None:
    codec = pytest.importorskip("fl.flower.codec")
    from protocols.base import RoundConfig

    cfg = protocols.get("secagg+").make_config(8, DIM, degree=2, threshold=2)
    blob = codec.dumps(cfg).replace(b'"threshold":2', b'"threshold":1').replace(
        b'"threshold": 2', b'"threshold": 1')
    assert blob != codec.dumps(cfg)
    with pytest.raises(SecAggError, match="threshold >= 2"):  # DecodeError, naming why
        codec.loads(blob, RoundConfig)


# == the release floor, checked by the clients too =========================================
def test_an_active_survivor_list_below_min_clients_is_not_signed() -> None:
    # min_clients = 7 of 8 (the client's policy insists on it). A malicious server that
    # ignores its own floor tells the survivors that clients 6 and 7 dropped: 6 survivors
    # is at least signature_threshold = 5, but fewer than the floor every party agreed on.
    policy = ClientPolicy(min_contributors=7)
    r = _build(n=8, active=True, seed="floor", min_clients=7)
    cfg, clients = r.config, r.clients
    assert cfg.signature_threshold <= 6 and policy.min_contributors == 7
    policy.check("secagg", cfg)
    out = sorted(_until_kind(r, Kind.CONSISTENCY_REQUEST), key=lambda m: m.recipient)
    short = dataclasses.replace(out[0], survivors=tuple(range(6)))
    with pytest.raises(ProtocolError, match="min_clients"):
        clients[0].receive(short)
    assert clients[0].aborted
    # the honest list is signed
    assert clients[1].receive(out[1])


def test_a_complete_graph_unmask_request_below_min_clients_is_refused() -> None:
    # Passive secagg (complete graph): the survivor list of an unmask request is the global
    # one, so a client checks the floor itself.
    r = _build(n=8, seed="floor/passive", min_clients=7)
    clients = r.clients
    out = sorted(_until_kind(r, Kind.UNMASK_REQUEST), key=lambda m: m.recipient)
    short = dataclasses.replace(out[0], survivors=tuple(range(6)), dropped=(6, 7))
    with pytest.raises(ProtocolError, match="min_clients"):
        clients[0].receive(short)
    assert clients[0].aborted
    assert isinstance(clients[1].receive(out[1])[0], UnmaskResponse)


# == HE: ciphertexts of another round, a re-used envelope ==================================
@pytest.mark.parametrize("name", HE)
def test_an_old_rounds_ciphertext_under_this_rounds_envelope_releases_nothing(name: str) -> None:
    from test_he_roles import _aggregate, _ask, _collect, _refused_after_decryption, _uploads

    if name == "ckks":
        pytest.importorskip("tenseal")
    old = _collect(name, seed="red/old")
    r = _collect(name, seed="red/new", config=dataclasses.replace(old.config, round_id=1),
                 credentials=old.credentials)
    up, stale = _uploads(r), _uploads(old)
    # client 0's upload of round 0 (another key, another blind), its envelope of round 1
    if name == "paillier":  # the attacker multiplies the integers itself, mod this n^2
        scheme = r.server.SCHEME
        public = scheme.load_public(r.config, r.emitted(PublicContext)[0].context)
        n2, width = public.nsquare, r.config.ciphertext_bytes
        old_ints = [int.from_bytes(stale[0].blocks[0][i:i + width], "big") % n2
                    for i in range(0, len(stale[0].blocks[0]), width)]
        acc = scheme.open_blocks(r.config, public, _aggregate(r, [up[u].blocks
                                                                   for u in range(1, 5)]))
        agg = (b"".join((a * c % n2).to_bytes(width, "big") for a, c in zip(acc, old_ints)),)
    else:
        agg = _aggregate(r, [stale[0].blocks] + [up[u].blocks for u in range(1, 5)])
    _refused_after_decryption(r, _ask(r, agg, range(5)))


@pytest.mark.parametrize("name", HE)
def test_one_envelope_under_two_names_is_refused_before_decryption(name: str) -> None:
    from test_he_roles import _aggregate, _ask, _collect, _uploads

    from protocols.he.state import DecryptorState

    if name == "ckks":
        pytest.importorskip("tenseal")
    r = _collect(name, seed="red/reuse")
    up = _uploads(r)
    agg = _aggregate(r, [up[u].blocks for u in (0, 0, 2, 3, 4)])  # 0 counted as 0 and 1
    envs = [up[0].envelope, up[0].envelope] + [up[u].envelope for u in (2, 3, 4)]
    with pytest.raises(ProtocolError):
        r.hand(_ask(r, agg, range(5), envs))
    assert r.decryptor.state is DecryptorState.KEYED and r.decryptor.released is None


# == a cheating client: shares of its committed seed, masks with another ===================
def test_a_client_that_masks_with_another_seed_than_it_shared_gives_a_range_error() -> None:
    from secagg.errors import RangeCheckError

    def lie(m):
        if type(m).__name__ == "ShareKeys" and m.sender == 3:
            r.clients[3]._seed = bytes(32)  # white box: after its shares of b went out
        return m
    r = _build(seed="mask-lie", tamper=lie)
    server = r.server
    with pytest.raises(RangeCheckError):  # b rebuilds and opens its commitment, but the
        _drive(r)  # sum is off by PRG(b') - PRG(b): refused
    assert server.stage is ServerStage.ABORTED
    with pytest.raises(UsageError):
        server.result()


def test_a_survivor_list_padded_to_the_floor_with_clients_who_never_shared_is_refused() -> None:
    # Complete graph, active, min_clients = 7 of 8. Clients 6 and 7 advertise (so they are in
    # the roster) but never share. A malicious server that ignores its own floor pads the
    # survivor list of the 6 real survivors with client 7 to reach 7 names: a client counts
    # only the survivors it masked with (everyone live, in the complete graph).
    r = _build(n=8, active=True, seed="floor/pad", min_clients=7,
               silent={6: Kind.KEY_BROADCAST, 7: Kind.KEY_BROADCAST})
    clients = r.clients
    r.server._need = lambda alive, what: None  # the server ignores its floor (white box)
    out = sorted(_until_kind(r, Kind.CONSISTENCY_REQUEST), key=lambda m: m.recipient)
    assert out[0].survivors == tuple(range(6))
    padded = dataclasses.replace(out[0], survivors=(*range(6), 7))
    with pytest.raises(ProtocolError, match="min_clients"):
        clients[0].receive(padded)
    with pytest.raises(ProtocolError, match="min_clients"):
        clients[1].receive(out[1])  # and the unpadded list is below the floor anyway
