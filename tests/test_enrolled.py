"""The enrolled mode of secagg / secagg+: dropouts at both exchanges, a malicious server,
replays across processes, different cohorts per round, enrolment files."""

from __future__ import annotations

import dataclasses
import itertools
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import Router

import protocols
from protocols.base import stage_names
from protocols.parties import party_rng
from protocols.policy import ClientPolicy
from protocols.secagg import EnrolledRegistry, EnrolledServer, Identity, enroll_clients
from protocols.secagg._enrolled_keys import escrow_ad, escrow_key, round_graph, round_seed
from protocols.secagg._enrolled_state import ClientState, Kind
from protocols.secagg._keys import mask_sign
from protocols.secagg.enrolled_client import EnrolledClient
from protocols.secagg.enrolled_messages import UnmaskRequest, UnmaskResponse, Upload
from protocols.secagg.enrolled_store import AnswerStore, FileStore, MemoryStore
from secagg import aead, threshold
from secagg.errors import (
    ConfigError,
    DropoutError,
    LateMessageError,
    PolicyError,
    ProtocolError,
    UsageError,
)
from secagg.prg import add_masks
from secagg.rng import Csprng


def _config(name: str = "secagg+", n: int = 12, dim: int = 8,
            **kw: object):  # type: ignore[no-untyped-def]
    kw.setdefault("session", b"enrolled-tests")
    return protocols.get(name).make_config(n, dim, enrolled=True, **kw)


def _router(name: str = "secagg+", seed: int = 1, **kw: object) -> Router:
    drop_at = kw.pop("drop_at", None)
    config = _config(name, **kw)
    return Router(protocols.get(name), config, Csprng.from_seed(f"enrolled/{name}/{seed}"),
                  drop_at=drop_at)  # type: ignore[arg-type]


# -- dropouts at both exchanges ------------------------------------------------------------
def _late_drops(config, early: set[int]) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """Two clients that can vanish after uploading while every uploader's seed keeps t live
    holders (the first such pair in id order: the graph is the round's, not chosen)."""
    graph = round_graph(config, tuple(range(config.n_clients)))
    uploaders = [u for u in range(config.n_clients) if u not in early]
    for pair in itertools.combinations(uploaders, 2):
        gone = early | set(pair)
        if all(len((graph[w] | {w}) - gone) >= config.threshold for w in uploaders):
            return pair
    raise AssertionError("no two clients can vanish after uploading in this graph")


@pytest.mark.parametrize("name", ["secagg", "secagg+"])
@pytest.mark.parametrize("active", [False, True])
def test_dropouts_at_both_exchanges_give_the_exact_sum(name: str, active: bool) -> None:
    # 12 clients (t=4 of k=6 in secagg+): two vanish before uploading, two after.
    kw: dict[str, object] = {"degree": 6, "threshold": 4} if name == "secagg+" else {}
    last = 2 if active else 1
    late = _late_drops(_config(name, active=active, **kw), {1, 4})
    drop_at = {1: 0, 4: 0, late[0]: last, late[1]: last}
    router = _router(name, active=active, drop_at=drop_at, **kw)
    result = router.run()
    router.check_result(result)
    assert result.contributors == tuple(u for u in range(12) if u not in (1, 4))


def _escrowed_router() -> tuple[Router, int]:
    """A router where client 0 never uploads and its neighbour u (returned) uploads, then
    vanishes: the pairwise mask of (u, 0) can only come from t partials of u's escrow."""
    kw: dict[str, object] = {"degree": 6, "threshold": 4}
    u = min(round_graph(_config(**kw), tuple(range(12)))[0])
    return _router(drop_at={0: 0, u: 1}, **kw), u


def test_a_survivor_that_vanishes_is_recovered_from_its_escrow() -> None:
    router, u = _escrowed_router()
    assert 0 in round_graph(router.config, tuple(range(12)))[u]
    result = router.run()
    router.check_result(result)
    assert u in result.contributors and 0 not in result.contributors
    partials = [p for m in router.log if isinstance(m, UnmaskResponse) for p in m.partials
                if (p.owner, p.dropped) == (u, 0)]
    assert len(partials) >= router.config.threshold


def test_too_few_holders_abort_with_a_dropout_error_never_a_wrong_sum() -> None:
    router = _router(n=6, degree=5, threshold=5, drop_at={0: 0, 1: 1, 2: 1})
    with pytest.raises(DropoutError):
        router.run()
    assert not router.server.finished


def test_two_exchanges_per_round_and_upload_carries_o_k_shares() -> None:
    router = _router(degree=6, threshold=4)
    router.run()
    assert router.stage_names == ("UPLOAD_REQUEST", "UNMASK_REQUEST")
    ups = [m for m in router.log if isinstance(m, Upload)]
    assert all(len(m.shares) == len(m.escrow) == 6 for m in ups)


# -- a malicious server --------------------------------------------------------------------
def _at_unmask(router: Router, u: int = 0) -> UnmaskRequest:
    router.run_until(lambda: router.find(lambda e: e.recipient == u
                                         and e.kind is Kind.UNMASK_REQUEST) is not None)
    env = router.take(lambda e: e.recipient == u and e.kind is Kind.UNMASK_REQUEST)
    assert env is not None
    msg = env.open()
    assert isinstance(msg, UnmaskRequest)
    return msg


def _refused(router: Router, msg: UnmaskRequest, u: int = 0) -> None:
    with pytest.raises(ProtocolError):
        router.send(msg, to=u)
    assert router.clients[u].aborted and router.sent.get(u, [])[-1].KIND is Kind.UPLOAD


def test_asking_for_both_kinds_of_secret_is_refused() -> None:
    router = _router(drop_at={5: 0}, degree=6, threshold=4)
    graph = round_graph(router.config, tuple(range(12)))
    u = next(w for w in graph[5] if w != 5)
    msg = _at_unmask(router, u)
    assert 5 in msg.dropped
    _refused(router, dataclasses.replace(msg, survivors=tuple(sorted({*msg.survivors, 5}))), u)


def test_opening_a_survivors_seed_through_the_escrow_is_refused() -> None:
    router = _router(drop_at={5: 0}, degree=6, threshold=4)
    msg = _at_unmask(router, 0)
    assert msg.escrow, "client 0's neighbours neighbour the dropped client"
    e = msg.escrow[0]
    survivor = next(v for v in msg.survivors if v != 0 and v in
                    round_graph(router.config, tuple(range(12)))[e.owner])
    forged = dataclasses.replace(e, dropped=survivor)
    _refused(router, dataclasses.replace(msg, escrow=(forged, *msg.escrow[1:])))


def test_partials_for_one_escrow_open_no_other_escrow_of_the_owner() -> None:
    """The holders derive each escrow's point from (owner, dropped) themselves, so the
    partials a server collects for u's escrow with a dropped v rebuild the key of that one
    escrow: with them it opens (u, v) and none of u's escrows with its survivors. (When the
    server relayed the point, it could aim the partials for (u, v) at u's escrow with a
    survivor and strip u's pairwise masks.)"""
    router, u = _escrowed_router()
    result = router.run()
    router.check_result(result)
    cfg, t = router.config, router.config.threshold
    upload = next(m for m in router.log if isinstance(m, Upload) and m.sender == u)
    escrow = {e.peer: e.ciphertext for e in upload.escrow}
    partials = {p_.sender + 1: p.value for p_ in router.log if isinstance(p_, UnmaskResponse)
                for p in p_.partials if (p.owner, p.dropped) == (u, 0)}
    assert len(partials) >= t
    k = threshold.combined_key(partials, t)
    seed = aead.open_(escrow_key(cfg, k, u, 0), escrow[0], escrow_ad(cfg, u, 0))
    assert seed == round_seed(cfg, router.clients[u].identity.agree(  # type: ignore[attr-defined]
        router.config.registry.kex_key(0)), u, 0)  # type: ignore[union-attr]
    others = [v for v in escrow if v != 0]
    assert others
    for v in others:
        for owner, peer in ((u, v), (u, 0)):
            with pytest.raises(ProtocolError):
                aead.open_(escrow_key(cfg, k, owner, peer), escrow[v], escrow_ad(cfg, owner, peer))


def test_a_late_client_declared_dropped_keeps_its_input_masked() -> None:
    """The server holds client 2's upload back, declares it dropped, and collects every
    round seed and escrow partial: the late upload is still masked by its fresh self mask."""
    router = _router(n=6, dim=16, degree=5, threshold=3)
    router.run_until(lambda: router.find(lambda e: e.sender == 2 and e.kind is Kind.UPLOAD)
                     is not None)
    late = router.take(lambda e: e.sender == 2 and e.kind is Kind.UPLOAD)
    assert late is not None
    result = router.run()  # the server closes the upload stage without it
    assert 2 not in result.contributors
    router.check_result(result)
    responses = [m for m in router.log if isinstance(m, UnmaskResponse)]
    assert all(s.owner != 2 for m in responses for s in m.seed_shares)
    seeds = {m.sender: {r.peer: r.seed for r in m.round_seeds} for m in responses}
    y = np.array(late.open().masked, copy=True)  # type: ignore[attr-defined]
    add_masks(y, [(seeds[v][2], mask_sign(2, v)) for v in range(6) if v != 2])
    # All pairwise masks are gone; what is left is encode(x_2) + PRG(b_2), not encode(x_2).
    assert not np.array_equal(y, router.encoded[2])
    with pytest.raises(LateMessageError):
        router.server.receive(late.open())


@pytest.mark.parametrize("store_kind", ["memory", "file"])
def test_a_restarted_client_never_answers_the_same_round_twice(
        tmp_path: Path, store_kind: str) -> None:
    router = _router(degree=6, threshold=4)
    router.send(_at_unmask(router, 0), to=0)  # client 0 has uploaded and unmasked
    client0 = router.clients[0]
    assert isinstance(client0, EnrolledClient)
    identity = client0.identity
    request = next(m for m in router.log if m.recipient == 0 and m.KIND is Kind.UPLOAD_REQUEST)

    def restart(store: AnswerStore) -> EnrolledClient:
        c = EnrolledClient(router.config, 0, Csprng.from_seed("restart"), identity, store)
        c.set_input(router.inputs[0])
        return c

    if store_kind == "file":
        d = tmp_path / "answers"
        first = restart(FileStore(d))
        first.receive(request)  # the first process answers ...
        again = restart(FileStore(d))  # ... a second one, on the same disk, does not
    else:
        again = restart(identity.answers)
    with pytest.raises(ProtocolError, match="already answered"):
        again.receive(request)
    assert again.state is ClientState.ABORTED


def test_file_store_claims_are_atomic_across_processes(tmp_path: Path) -> None:
    d = tmp_path / "s"
    code = ("import sys; from protocols.secagg.enrolled_store import FileStore; "
            "print(FileStore(sys.argv[1]).claim(b'sess', 3, 7, 'unmask'))")
    outs = [subprocess.run([sys.executable, "-c", code, str(d)], capture_output=True, text=True,
                           check=True, env={**os.environ}).stdout.strip() for _ in range(2)]
    assert outs == ["True", "False"]
    assert FileStore(d).claim(b"sess", 4, 7, "unmask") is True
    assert MemoryStore().claim(b"sess", 3, 7, "unmask") is True


# -- rounds, cohorts, keys -------------------------------------------------------------
def test_one_pairs_round_seed_differs_per_round_and_per_session() -> None:
    reg, ids = enroll_clients(2, Csprng.from_seed("k"))
    dh = ids[0].agree(reg.kex_key(1))
    assert dh == ids[1].agree(reg.kex_key(0))
    seeds = {round_seed(_config(n=2, round_id=r, session=s), dh, 0, 1)
             for r in (0, 1) for s in (b"a", b"b")}
    assert len(seeds) == 4


def test_rounds_with_different_cohorts_reuse_the_enrolment() -> None:
    spec = protocols.get("secagg+")
    reg, ids = enroll_clients(10, Csprng.from_seed("cohorts"))
    for r, cohort in enumerate([(0, 1, 2, 3, 4, 5, 6), (2, 3, 4, 5, 6, 7, 8, 9)]):
        config = spec.make_config(10, 4, enrolled=True, registry=reg, round_id=r,
                                  session=b"run", degree=4, threshold=3)
        rng = Csprng.from_seed(f"cohort/{r}")
        # The harness builds every enrolled client; the server asks only its cohort.
        xs = {u: np.full(4, 0.02 * (u + 1)) for u in range(10)}
        router = Router(spec, config, rng, [xs[u] for u in range(10)],
                        credentials={u: {"identity": ids[u]} for u in range(10)},
                        server=EnrolledServer(config, party_rng(rng, "server"), cohort=cohort))
        res = router.run()
        assert {m.recipient for m in router.log if m.recipient >= 0} == set(cohort)
        assert res.contributors == cohort
        xs = {u: xs[u] for u in cohort}
        np.testing.assert_allclose(res.sum, sum(xs.values()), atol=1e-3)


def test_enrolment_files_round_trip_with_private_key_files(tmp_path: Path) -> None:
    reg, ids = enroll_clients(3, Csprng.from_seed("files"))
    reg.save(tmp_path / "registry.json")
    loaded = EnrolledRegistry.load(tmp_path / "registry.json")
    assert loaded == reg
    path = tmp_path / "client-1.key"
    ids[1].save(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again = Identity.load(path)
    again.check_against(loaded)
    with pytest.raises(ConfigError):
        ids[1].save(path)  # never overwrites a key file
    with pytest.raises(ConfigError, match="does not match"):
        Identity.load(path).check_against(EnrolledRegistry(
            {1: ids[0].verify_key}, {1: ids[0].kex_public}))


def test_a_client_without_identity_or_registry_is_refused_up_front() -> None:
    config = _config()
    with pytest.raises(UsageError, match="identity"):
        EnrolledClient(config, 0, Csprng.from_seed("x"))
    reg, ids = enroll_clients(12, Csprng.from_seed("y"))
    with pytest.raises(UsageError, match="EnrolledRegistry"):
        EnrolledClient(config, 0, Csprng.from_seed("x"), ids[0])
    with pytest.raises(UsageError, match="EnrolledRegistry"):
        EnrolledServer(config, Csprng.from_seed("x"))
    good = dataclasses.replace(config, registry=reg)
    with pytest.raises(ConfigError, match="too small"):
        EnrolledServer(good, Csprng.from_seed("x"), cohort=(0, 1))


def test_the_enrolled_client_applies_its_own_policy_like_the_per_round_client() -> None:
    reg, ids = enroll_clients(12, Csprng.from_seed("policy"))
    config = dataclasses.replace(_config(threshold=2, degree=6), registry=reg)
    strict = ClientPolicy(min_threshold=4)
    with pytest.raises(PolicyError, match="threshold=2"):
        EnrolledClient(config, 0, Csprng.from_seed("x"), ids[0], policy=strict)
    with pytest.raises(PolicyError, match="not allowed"):
        protocols.get("secagg+").client(config, 0, Csprng.from_seed("x"), identity=ids[0],
                                        policy=ClientPolicy(protocols=("secagg",)))
    ok = EnrolledClient(config, 0, Csprng.from_seed("x"), ids[0], policy=ClientPolicy(
        min_threshold=2, protocols=("secagg+",)))
    assert ok.protocol == "secagg+" and ok.state is ClientState.IDLE


def test_enroll_command_writes_files_the_simulator_uses(tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    import json

    import fl.cli

    out = tmp_path / "enrolment"
    assert fl.cli.main(["enroll", "--clients", "6", "--out", str(out), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(doc["key_files"]) == 6
    assert all(stat.S_IMODE(os.stat(f).st_mode) == 0o600 for f in doc["key_files"])
    assert fl.cli.main(["enroll", "--clients", "6", "--out", str(out)]) == 2  # never overwrites
    capsys.readouterr()
    assert fl.cli.main(["simulate", "--protocol", "secagg+", "--enrolled", "--enrolment",
                        str(out), "--clients", "6", "--dim", "5", "--dropout", "0.34",
                        "--seed", "2", "--json"]) == 0
    sim = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert sim["exact"] is True and sim["client_exchanges"] == 2 and sim["dropped"] == 2
    assert fl.cli.main(["simulate", "--protocol", "secagg+", "--enrolled", "--enrolment",
                        str(out), "--clients", "7", "--dim", "5", "--json"]) == 2
    assert "enrols 6 clients" in capsys.readouterr().err


@pytest.mark.parametrize(("name", "flags", "want"), [
    ("plaintext", [], 1), ("secagg", [], 4), ("secagg", ["--active"], 5),
    ("secagg+", ["--enrolled"], 2), ("secagg+", ["--enrolled", "--active"], 3),
])
def test_simulate_reports_client_exchanges(name: str, flags: list[str], want: int,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    import json

    import fl.cli

    assert fl.cli.main(["simulate", "--protocol", name, *flags, "--clients", "5", "--dim", "3",
                        "--seed", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["client_exchanges"] == want


def test_secagg_run_enrolled_trains_through_the_enrolled_mode() -> None:
    from fl import RunConfig, run_training
    from fl.engines import SimulationEngine

    seen: list[tuple[bool, tuple[str, ...]]] = []

    class Recording(SimulationEngine):
        def run_round(self, spec, config, inputs, weights, rng):  # type: ignore[no-untyped-def]
            seen.append((config.enrolled, stage_names(spec.client_stages(config))))
            return super().run_round(spec, config, inputs, weights, rng)

    cfg = RunConfig(protocol="secagg+", clients=6, rounds=2, dp=False, dropout=0.2, seed=3,
                    enrolled=True)
    result = run_training(cfg, engine=Recording(dropout=0.2))
    assert seen == [(True, ("UPLOAD_REQUEST", "UNMASK_REQUEST"))] * 2
    assert all(r.error is None and r.contributors >= 4 for r in result.history)
    with pytest.raises(ConfigError, match="--enrolled needs"):
        run_training(RunConfig(protocol="plaintext", enrolled=True, rounds=1))


# -- forged self-mask seed shares: caught against the upload's commitment ----------------
def _forge_enrolled_share(forger: int, owner: int):
    import dataclasses as dc

    from protocols.secagg.enrolled_messages import Share, Shares, UnmaskResponse

    def tamper(m):
        if isinstance(m, UnmaskResponse) and m.sender == forger:
            def shift(b: bytes) -> bytes:
                from secagg import shamir
                return ((int.from_bytes(b, "big") + 1) % shamir.PRIME).to_bytes(len(b), "big")
            return dc.replace(m, seed_shares=Shares.of(
                Share(s.owner, shift(s.value)) if s.owner == owner else s
                for s in m.seed_shares))
        return m
    return tamper


def test_enrolled_forged_seed_share_with_exactly_t_answers_aborts_naming_the_suspects():
    from helpers import adversary_round

    from protocols.secagg._enrolled_state import Kind, ServerStage
    from secagg.errors import ForgedShareError, UsageError

    # n = 6 on the complete graph; two clients vanish before unmasking: exactly t answer.
    r = adversary_round("secagg", 6, enrolled=True, threshold=4,
                        drop_at={3: Kind.UNMASK_REQUEST, 4: Kind.UNMASK_REQUEST},
                        tamper=_forge_enrolled_share(1, 2))
    r.start()
    with pytest.raises(ForgedShareError) as err:
        r.run()
    assert 1 in err.value.suspects and err.value.owner == 2
    assert r.server.stage is ServerStage.ABORTED
    with pytest.raises(UsageError):
        r.server.result()  # never a silently wrong sum


@pytest.mark.parametrize("name", ["secagg", "secagg+"])
def test_enrolled_forged_seed_shares_among_more_than_t_are_found_and_left_out(name):
    from helpers import adversary_round

    r = adversary_round(name, 8, enrolled=True, threshold=4,
                        tamper=_forge_enrolled_share(1, 2))
    cfg, encoded = r.config, list(r.encoded)
    r.start()
    res = r.run()
    if 1 in r.server._graph.of(2):  # client 1 holds a share of client 2's seed
        assert r.server.suspects == {2: (1,)}
    assert np.array_equal(res.int_sum, sum(cfg.encoding.centre(e) for e in encoded))


def test_an_upload_without_a_seed_commitment_is_refused():
    import dataclasses as dc

    from helpers import adversary_round

    from protocols.secagg.enrolled_messages import Upload

    def strip(m):
        return dc.replace(m, commitment=b"") if isinstance(m, Upload) and m.sender == 0 else m

    from secagg.errors import ProtocolError

    r = adversary_round("secagg", 4, enrolled=True, tamper=strip)
    r.start()
    with pytest.raises(ProtocolError, match="seed commitment"):
        r.run()  # a driver counts the sender as dropped (the Flower driver does)
    assert 0 not in r.server._uploaded


def _forge_partial(forger: int, owner: int):
    import dataclasses as dc

    from protocols.secagg.enrolled_messages import Partial, UnmaskResponse
    from secagg import threshold

    def tamper(m):
        if isinstance(m, UnmaskResponse) and m.sender == forger:
            fake = threshold.partial(12345, threshold.hash_point(b"not this escrow"))
            return dc.replace(m, partials=tuple(
                Partial(p.owner, p.dropped, fake) if p.owner == owner else p
                for p in m.partials))
        return m
    return tamper


@pytest.mark.parametrize("n,released", [(8, True), (6, False)])
def test_a_forged_escrow_partial_is_left_out_or_aborts_naming_the_suspects(n, released):
    """Client n-1 never uploads; client 2 uploads, then vanishes: the server opens 2's escrow
    with n-1 from its holders' partials, one of which (client 1's) is forged. With more than
    t partials the escrow still opens and client 1 is named; with exactly t the round aborts
    with ForgedShareError, never a wrong sum."""
    from helpers import adversary_round

    from protocols.secagg._enrolled_state import Kind
    from secagg.errors import ForgedShareError

    r = adversary_round("secagg", n, enrolled=True, threshold=4,
                        drop_at={n - 1: Kind.UPLOAD_REQUEST, 2: Kind.UNMASK_REQUEST},
                        tamper=_forge_partial(1, 2))
    cfg, encoded = r.config, list(r.encoded)
    r.start()
    if released:
        res = r.run()
        assert res.contributors == tuple(u for u in range(n) if u != n - 1)
        want = sum(cfg.encoding.centre(encoded[u]) for u in res.contributors)
        assert np.array_equal(res.int_sum, want)
        assert r.server.suspects == {2: (1,)}
    else:
        with pytest.raises(ForgedShareError) as err:
            r.run()
        assert 1 in err.value.suspects and err.value.owner == 2
