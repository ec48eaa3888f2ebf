"""The roles that ckks and paillier share (protocols.he): client, aggregator, decryptor.

Every test runs over both schemes. :class:`HeRound` is the kit's harness
(:class:`protocols.harness.Router`) for one HE round: every message passes through the wire
codec on the way (what a role receives is ``wire.decode(wire.encode(msg))``), and a test can
hand messages to a role itself (:meth:`HeRound.hand`) to play a lying aggregator.
test_ckks.py, test_paillier.py and test_redteam.py reuse it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pytest

pytest.importorskip("tenseal")
pytest.importorskip("phe")

import protocols
from fl.engines.pool import process_map
from protocols.base import (
    DECRYPTOR,
    SERVER,
    AggregateResult,
    Message,
    NoiseHook,
    header,
)
from protocols.ckks import CkksDecryptor
from protocols.harness import Router
from protocols.he import (
    ContextRequest,
    DecryptRequest,
    EncryptedInput,
    HeDecryptor,
    HeKind,
    IdentifyRequest,
    InputRequest,
    PublicContext,
    ReleasedAggregate,
    TestRequest,
    Verdict,
)
from protocols.he import state as _state
from protocols.he.blind import seal_envelope
from protocols.he.state import ClientState, DecryptorState, Kind, ServerState
from protocols.paillier import PaillierDecryptor
from protocols.parties import party_rng
from secagg import sign, wire
from secagg.errors import (
    AlreadyFinalized,
    ConfigError,
    DecodeError,
    DropoutError,
    LateMessageError,
    ProtocolError,
    UsageError,
)
from secagg.rng import Csprng

NAMES = ["ckks", "paillier"]
DIMS = {"ckks": 50, "paillier": 200}
DECRYPTORS = {"ckks": CkksDecryptor, "paillier": PaillierDecryptor}


class HeRound(Router):
    """Every role of one HE round on the kit's harness (:class:`protocols.harness.Router`),
    not started, plus what the HE tests read: the decryptor, each client's quantised input,
    the credentials, and an HE-specific result check.

    ``silent`` roles (clients or the decryptor) never get a message: they have dropped.
    ``decryptor``: a decryptor the test built itself (e.g. with its own signing key).
    """

    def __init__(self, name: str, n: int = 5, dim: int | None = None, seed: int | str = 1, *,
                 silent: Iterable[int] = (), inputs: Sequence[np.ndarray] | None = None,
                 weights: Sequence[float] | None = None, decryptor: Any = None,
                 config: Any = None, credentials: dict[int, dict[str, Any]] | None = None,
                 client_map: Any = None, **kw: Any) -> None:
        spec = protocols.get(name)
        rng = Csprng.from_seed(f"he/{name}/{seed}")
        config = config or spec.make_config(n, DIMS[name] if dim is None else dim, **kw)
        if credentials is None:  # enrolment first (every client's signing key), as a simulation
            config, credentials = spec.provision(config, party_rng(rng, "enrolment"))
        self.credentials = credentials
        super().__init__(spec, config, rng, inputs, weights, start=False,
                         credentials=credentials,
                         helpers=None if decryptor is None else {DECRYPTOR: decryptor},
                         client_kwargs=None if client_map is None else {"map": client_map})
        #: every client's quantised input (int64 grid units, weight last), both schemes
        self.prepared = [c._prepared.copy() for c in self.clients]
        for u in silent:
            self.kill(u)

    @property
    def decryptor(self) -> Any:
        return self.party(DECRYPTOR)

    def hand(self, msg: Message, to: int | None = None) -> list[Message]:
        """Deliver one message through the codec; returns what the role answers, which the
        test carries on itself (nothing is queued)."""
        return self.send(msg, to, queue=False)

    def route(self, msgs: Iterable[Message]) -> None:
        """Put these messages on the wire and deliver until nothing is in flight."""
        for msg in msgs:
            self.inject(msg)
        self.flush()

    def run(self, **kw: Any) -> AggregateResult:
        """Start the round if the test has not, then run it as a driver does."""
        if self.server.state is ServerState.NEW:
            self.start()
        return super().run(**kw)

    def emitted(self, kind: type[Message]) -> list[Any]:
        """Every message of class ``kind`` a role emitted."""
        return [m for out in self.sent.values() for m in out if type(m) is kind]

    def check(self, result: AggregateResult) -> None:
        """Paillier: exact integer sum. ckks: within the documented error bound."""
        ids = result.contributors
        want, weight = self.expected_float_sum(ids)
        if self.spec.exact:
            exact = sum(self.config.encoding.centre(self.encoded[u]) for u in ids)
            np.testing.assert_array_equal(result.int_sum, exact)
            tol = len(ids) * 2.0 ** -self.config.encoding.frac_bits
        else:
            assert result.int_sum is None
            tol = self.config.max_abs_error(len(ids))
            if self.config.noise is None:  # no CKKS error reaches a release: it is exact
                exact = sum(self.prepared[u] for u in ids)
                values, weight = self.config.encoding.decode(exact)
                np.testing.assert_array_equal(result.sum, values)
                assert result.total_weight == weight
        assert np.max(np.abs(result.sum - want)) <= tol
        assert abs(result.total_weight - weight) <= tol


@pytest.fixture(params=NAMES)
def name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# -- full rounds ---------------------------------------------------------------------------
def test_full_round_releases_the_sum_and_every_message_survives_the_codec(name: str) -> None:
    r = HeRound(name, weights=[1.0, 0.5, 1.0, 0.25, 0.75])
    result = r.run()
    assert result.contributors == (0, 1, 2, 3, 4)
    r.check(result)
    assert r.server.state is ServerState.FINISHED
    assert r.decryptor.state is DecryptorState.RELEASED
    assert all(c.state is ClientState.DONE for c in r.clients)
    assert {type(m) for m in r.log} == {ContextRequest, PublicContext, InputRequest,
                                        EncryptedInput, DecryptRequest, ReleasedAggregate}
    for msg, frame in zip(r.log, r.frames):
        assert wire.encode(msg) == frame
    (req,) = r.emitted(DecryptRequest)  # one aggregate, one decryption
    assert req.contributors == (0, 1, 2, 3, 4)


def test_silent_clients_are_left_out_when_the_round_closes(name: str) -> None:
    r = HeRound(name, silent={1, 3})
    r.start()
    r.flush()
    assert r.server.state is ServerState.COLLECTING and not r.emitted(DecryptRequest)
    r.close()
    r.flush()
    result = r.server.result()
    assert result.contributors == (0, 2, 4)
    r.check(result)
    assert r.server.close_round() == []  # idempotent once finished


def test_the_aggregator_refuses_to_ask_for_fewer_than_min_clients(name: str) -> None:
    r = HeRound(name, silent={0, 1, 2}, min_clients=3)
    r.start()
    r.flush()
    with pytest.raises(DropoutError):
        r.server.close_round()
    assert r.server.state is ServerState.ABORTED and not r.emitted(DecryptRequest)
    with pytest.raises(UsageError):
        r.server.result()


def test_a_silent_decryptor_aborts_the_round(name: str) -> None:
    r = HeRound(name, silent={DECRYPTOR})
    r.start()
    r.flush()
    with pytest.raises(DropoutError):
        r.server.close_round()
    assert r.server.state is ServerState.ABORTED


# -- the decryptor's rules ----------------------------------------------------------------------
def test_the_decryptor_decrypts_at_most_once(name: str) -> None:
    r = HeRound(name)
    r.run()
    (req,) = r.emitted(DecryptRequest)
    with pytest.raises(AlreadyFinalized) as info:
        r.hand(req)
    assert isinstance(info.value, ProtocolError)  # a replay by the peer, too
    assert r.decryptor.state is DecryptorState.RELEASED
    assert r.decryptor._secret is None  # the key is gone after its one use


def test_the_decryptor_refuses_fewer_than_min_clients(name: str) -> None:
    # A cheating aggregator forwards one client's ciphertext and says so.
    r = HeRound(name, min_clients=3, silent={1, 2, 3, 4})
    r.start()
    r.flush()
    (upload,) = [m for m in r.emitted(EncryptedInput) if m.sender == 0]
    forged = DecryptRequest(**header(r.config, SERVER, DECRYPTOR), scheme=upload.scheme,
                            blocks=upload.blocks, contributors=(0,), envelopes=(upload.envelope,))
    with pytest.raises(DropoutError):
        r.hand(forged)
    assert r.decryptor.state is DecryptorState.KEYED  # nothing was decrypted
    # min_clients=1 (the default) does not lower the floor: an HE round releases >= 2.
    r1 = HeRound(name, silent={1, 2, 3, 4})
    r1.start()
    r1.flush()
    (upload,) = r1.emitted(EncryptedInput)
    with pytest.raises(DropoutError):
        r1.server.close_round()
    with pytest.raises(DropoutError):
        r1.hand(dataclasses.replace(forged, **header(r1.config, SERVER, DECRYPTOR),
                                    blocks=upload.blocks, envelopes=(upload.envelope,)))
    assert r1.decryptor.state is DecryptorState.KEYED


@pytest.mark.parametrize("ids", [(0, 0, 1), (2, 1, 0), (0, 1, 7), ()])
def test_the_decryptor_refuses_malformed_contributor_lists(name: str, ids: tuple[int, ...]) -> None:
    r = HeRound(name, silent={4})
    r.start()
    r.flush()
    (req,) = r.server.close_round()
    with pytest.raises(ProtocolError):
        r.hand(dataclasses.replace(req, contributors=ids))
    assert r.decryptor.state is DecryptorState.KEYED
    r.route([req])
    r.check(r.server.result())


def test_a_tampered_aggregate_is_refused_after_its_one_decryption(name: str) -> None:
    # Adding one upload three times leaves twice its blind in the sum: no honest round
    # produces that (paillier: guard bits set; ckks: slots off the grid).
    r = HeRound(name, n=3, silent={2})
    r.start()
    r.flush()
    up0, up1 = sorted(r.emitted(EncryptedInput), key=lambda m: m.sender)
    scheme = r.server.SCHEME
    public = scheme.load_public(r.config, r.emitted(PublicContext)[0].context)
    acc = None
    for upload in (up0, up0, up0, up1):
        acc = scheme.add(r.config, public, acc, scheme.open_blocks(r.config, public, upload.blocks))
    forged = DecryptRequest(**header(r.config, SERVER, DECRYPTOR), scheme=up0.scheme,
                            blocks=scheme.seal(r.config, public, acc), contributors=(0, 1),
                            envelopes=(up0.envelope, up1.envelope))
    _refused_after_decryption(r, forged)
    with pytest.raises(ProtocolError):
        r.hand(forged)


class _CountingNoise(NoiseHook):
    def __init__(self) -> None:
        self.calls = 0

    def add_noise(self, int_sum: np.ndarray, rng: Csprng) -> tuple[np.ndarray, Any]:
        self.calls += 1
        return int_sum + 3, ("event", self.calls)


def test_the_noise_hook_runs_once_on_the_integer_sum_before_release(name: str) -> None:
    noise = _CountingNoise()
    r = HeRound(name, noise=noise)
    result = r.run()
    assert noise.calls == 1
    assert r.decryptor.released is not None
    assert r.decryptor.released.dp_event == ("event", 1)
    assert result.dp_event == ("event", 1)  # the aggregator's result carries the same event
    want, weight = r.expected_float_sum(result.contributors)
    shift = 3 / r.config.encoding.scale
    tol = r.config.max_abs_error(5) if name == "ckks" else 5 * 2.0**-16
    assert np.max(np.abs(result.sum - shift - want)) <= tol
    assert abs(result.total_weight - shift - weight) <= tol


# -- everyone refuses what is not theirs -----------------------------------------------------
def test_roles_refuse_bad_headers_and_the_other_schemes_messages(name: str) -> None:
    r = HeRound(name)
    first = r.server.start()[0]
    other = HeKind.PAILLIER if name == "ckks" else HeKind.CKKS
    for bad in (dataclasses.replace(first, scheme=other), dataclasses.replace(first, sender=0),
                dataclasses.replace(first, round=first.round + 1)):
        with pytest.raises(ProtocolError):
            r.hand(bad)
        assert r.decryptor.state is DecryptorState.IDLE  # refused, nothing changed
    (ctx,) = r.hand(first)
    for bad in (dataclasses.replace(ctx, sender=0), dataclasses.replace(ctx, scheme=other)):
        with pytest.raises(ProtocolError):
            r.hand(bad)
        assert r.server.state is ServerState.AWAIT_CONTEXT
    requests = r.hand(ctx)
    with pytest.raises(ProtocolError):
        r.hand(dataclasses.replace(requests[0], scheme=other))
    assert r.clients[0].aborted
    r.route(requests[1:])
    with pytest.raises(ProtocolError):  # a duplicate upload is never counted twice
        r.hand(r.emitted(EncryptedInput)[0])
    r.close()
    r.flush()
    assert r.server.result().contributors == (1, 2, 3, 4)


def test_forged_uploads_are_refused_and_change_nothing(name: str) -> None:
    r = HeRound(name)
    (ctx,) = r.hand(r.server.start()[0])
    requests = r.hand(ctx)
    (upload,) = r.hand(requests[0])
    for blocks in ((), (b"",), (b"\x00" * 64,) * len(upload.blocks), upload.blocks + (b"x",)):
        with pytest.raises(ProtocolError):
            r.hand(dataclasses.replace(upload, blocks=blocks))
        assert r.server.state is ServerState.COLLECTING and not r.server._seen
    r.hand(upload)
    r.route(requests[1:])
    r.check(r.server.result())
    with pytest.raises(LateMessageError):
        r.hand(upload)
    with pytest.raises(DecodeError):
        wire.decode(wire.encode(upload)[:-1])


def test_walk_every_state_and_message_kind(name: str) -> None:
    """Each (state, kind) pair a role's table lacks is refused and leaves the role where it
    was (clients abort); a second decryption request is AlreadyFinalized."""
    r = HeRound(name, n=2)
    r.run()
    sample = {m.KIND: m for m in r.log}
    kind = r.server.SCHEME.kind  # the identification messages, which an honest round skips
    sample[Kind.IDENTIFY_REQUEST] = IdentifyRequest(**header(r.config, DECRYPTOR, SERVER),
                                                    scheme=kind, contributors=(0, 1))
    sample[Kind.TEST_REQUEST] = TestRequest(**header(r.config, SERVER, DECRYPTOR), scheme=kind,
                                            contributors=(0, 1), tests=(b"", b""))
    sample[Kind.VERDICT] = Verdict(**header(r.config, DECRYPTOR, SERVER), scheme=kind,
                                   culprits=(0,))
    roles = [(r.decryptor, _state.DECRYPTOR_TRANSITIONS, DecryptorState),
             (r.server, _state.SERVER_TRANSITIONS, ServerState),
             (r.clients[0], _state.CLIENT_TRANSITIONS, ClientState)]
    for role, table, states in roles:
        for state in states:
            for kind in Kind:
                if (state, kind) in table:
                    continue
                role.state = state
                msg = sample[kind]
                expected: type[Exception] = ProtocolError
                if role is r.server and state is ServerState.NEW:
                    expected = UsageError
                elif (role is r.decryptor and state is DecryptorState.RELEASED
                      and kind is Kind.DECRYPT_REQUEST):
                    expected = AlreadyFinalized
                with pytest.raises(expected):
                    role.receive(msg)
                after = ClientState.ABORTED if role is r.clients[0] else state
                assert role.state is after, (state, kind)


def test_api_misuse_is_a_usage_error(name: str) -> None:
    r = HeRound(name)
    with pytest.raises(UsageError):
        r.server.close_round()
    with pytest.raises(UsageError):
        r.server.receive(ContextRequest(**header(r.config, SERVER, DECRYPTOR),
                                        scheme=r.server.SCHEME.kind))
    with pytest.raises(UsageError):
        r.clients[0].set_input(np.zeros(3))
    spec = protocols.get(name)
    with pytest.raises(ConfigError):  # a client needs its registry signing key
        spec.client(r.config, 0, Csprng.from_seed(5))
    fresh = spec.client(r.config, 0, Csprng.from_seed(5), **r.credentials[0])
    requests = r.hand(r.hand(r.server.start()[0])[0])
    with pytest.raises(UsageError):  # the input was never given
        fresh.receive(requests[0])
    with pytest.raises(ConfigError):
        process_map(0)
    with pytest.raises(ConfigError, match="n_clients must be an integer >= 2"):
        spec.make_config(1, 4)


# -- an authenticated decryptor ------------------------------------------------------------
def test_a_signed_context_defeats_a_substituted_one(name: str) -> None:
    spec = protocols.get(name)
    seed = sign.generate(Csprng.from_seed("decryptor identity"))
    config, creds = spec.provision(
        spec.make_config(3, DIMS[name], decryptor_key=sign.verify_key(seed)),
        Csprng.from_seed("enrol"))
    with pytest.raises(ConfigError):  # the decryptor needs its signing key
        spec.helpers(config, Csprng.from_seed(1))
    decryptor = DECRYPTORS[name]
    r = HeRound(name, n=3, config=config, credentials=creds,
                decryptor=decryptor(config, Csprng.from_seed(2), signing_key=seed))
    r.check(r.run())

    # An aggregator that makes its own key pair cannot get clients to encrypt under it.
    r2 = HeRound(name, n=3, config=config, seed=2, credentials=creds,
                 decryptor=decryptor(config, Csprng.from_seed(3), signing_key=seed))
    requests = r2.hand(r2.hand(r2.server.start()[0])[0])
    own, _ = r2.server.SCHEME.keygen(r2.config, Csprng.from_seed(4))
    for sig in (b"", requests[0].signature, b"\x01" * 64):
        with pytest.raises(ProtocolError):
            r2.hand(dataclasses.replace(requests[0], context=own, signature=sig))
        assert r2.clients[0].aborted
        r2.clients[0].state = ClientState.WAITING
    # The aggregator checks the signature too.
    ctx = r2.emitted(PublicContext)[0]
    r3 = HeRound(name, n=3, config=config, seed=3, credentials=creds,
                 decryptor=decryptor(config, Csprng.from_seed(5), signing_key=seed))
    r3.server.start()
    for bad in (dataclasses.replace(ctx, context=own), dataclasses.replace(ctx, signature=b"")):
        with pytest.raises(ProtocolError):
            r3.server.receive(bad)
        assert r3.server.state is ServerState.AWAIT_CONTEXT


# -- a lying aggregator (SECURITY.md, "HE: a lying aggregator") ------------------------------
def _collect(name: str, n: int = 5, **kw: Any) -> HeRound:
    """A round whose (lying) aggregator holds every upload and envelope, and has not asked
    the decryptor for anything yet: the test plays the aggregator from here."""
    r = HeRound(name, n=n, **kw)
    (ctx,) = r.hand(r.server.start()[0])
    for req in r.hand(ctx):
        r.hand(req)
    return r


def _uploads(r: HeRound) -> dict[int, Any]:
    return {m.sender: m for m in r.emitted(EncryptedInput)}


def _aggregate(r: HeRound, blocks: Sequence[tuple[bytes, ...]]) -> tuple[bytes, ...]:
    scheme = r.server.SCHEME
    public = scheme.load_public(r.config, r.emitted(PublicContext)[0].context)
    acc = None
    for b in blocks:
        acc = scheme.add(r.config, public, acc, scheme.open_blocks(r.config, public, b))
    return scheme.seal(r.config, public, acc)


def _ask(r: HeRound, blocks: tuple[bytes, ...], ids: Sequence[int],
         envelopes: Sequence[bytes] | None = None) -> DecryptRequest:
    up = _uploads(r)
    envs = tuple(up[u].envelope for u in ids) if envelopes is None else tuple(envelopes)
    return DecryptRequest(**header(r.config, SERVER, DECRYPTOR), scheme=r.server.SCHEME.kind,
                          blocks=blocks, contributors=tuple(ids), envelopes=envs)


def _refused_after_decryption(r: HeRound, req: DecryptRequest) -> None:
    """Nothing is released. ckks refuses at once. paillier cannot tell a lying aggregator
    from a client far out of range, so it first asks for a masked test of each named
    contributor's own upload: every honest upload passes, and then it refuses."""
    if r.spec.name == "paillier":
        (ask,) = r.hand(req)
        assert type(ask) is IdentifyRequest and ask.contributors == req.contributors
        assert r.decryptor.released is None and r.decryptor.state is DecryptorState.SUSPECT
        scheme, up = r.server.SCHEME, _uploads(r)
        public = scheme.load_public(r.config, r.emitted(PublicContext)[0].context)
        tests = tuple(scheme.test_blocks(r.config, public,
                                         scheme.open_blocks(r.config, public, up[u].blocks),
                                         Csprng.from_seed("masks"))
                      for u in ask.contributors)
        with pytest.raises(ProtocolError, match="nothing is released"):
            r.hand(TestRequest(**header(r.config, SERVER, DECRYPTOR), scheme=ask.scheme,
                               contributors=ask.contributors, tests=tests))
    else:
        with pytest.raises(ProtocolError, match="out of range"):
            r.hand(req)
    assert r.decryptor.state is DecryptorState.ABORTED and r.decryptor.released is None
    assert r.decryptor._secret is None


def test_one_upload_claimed_as_n_contributors_is_refused(name: str) -> None:
    r = _collect(name)
    up = _uploads(r)
    _refused_after_decryption(r, _ask(r, up[0].blocks, range(5)))


def test_one_upload_declared_as_a_single_contributor_is_refused(name: str) -> None:
    r = _collect(name)  # min_clients is 1, the default: the floor of 2 still holds
    up = _uploads(r)
    with pytest.raises(DropoutError):
        r.hand(_ask(r, up[0].blocks, (0,)))
    assert r.decryptor.state is DecryptorState.KEYED  # nothing was decrypted
    # The same upload named twice is not two contributors either.
    with pytest.raises(ProtocolError):
        r.hand(_ask(r, up[0].blocks, (0, 0)))
    assert r.decryptor.state is DecryptorState.KEYED


def test_one_upload_added_n_times_and_claimed_as_n_is_refused(name: str) -> None:
    r = _collect(name)
    up = _uploads(r)
    _refused_after_decryption(r, _ask(r, _aggregate(r, [up[0].blocks] * 5), range(5)))


@pytest.mark.parametrize("change", ["omit", "extra", "double"])
def test_an_aggregate_that_is_not_the_named_uploads_once_each_is_refused(
        name: str, change: str) -> None:
    r = _collect(name)
    up = _uploads(r)
    ids = [0, 1, 2, 3] if change == "extra" else [0, 1, 2, 3, 4]
    blocks = [up[u].blocks for u in range(5 if change != "omit" else 4)]
    if change == "double":
        blocks.append(up[2].blocks)
    _refused_after_decryption(r, _ask(r, _aggregate(r, blocks), ids))


def test_envelopes_the_aggregator_forges_or_moves_are_refused_before_decryption(
        name: str) -> None:
    r = _collect(name)
    up = _uploads(r)
    agg = _aggregate(r, [up[u].blocks for u in range(5)])
    envs = [up[u].envelope for u in range(5)]
    # A Sybil: the aggregator's own key pair for "client 4", with a seed it knows.
    own = sign.generate(Csprng.from_seed("aggregator"))
    ctx = r.emitted(PublicContext)[0]
    sybil = seal_envelope(
        session=r.config.session, round_id=r.config.round_id, scheme=r.server.SCHEME.kind.value,
        client=4, blind_key=ctx.blind_key, seed=b"\x00" * 32, signing_key=own,
        rng=Csprng.from_seed(1))
    flipped = bytearray(envs[4])
    flipped[40] ^= 1
    for bad in (envs[:4] + [sybil], envs[:4] + [bytes(flipped)], envs[:3] + [envs[4], envs[3]],
                envs[:4] + [envs[4][:-1]], envs[:4]):
        with pytest.raises(ProtocolError):
            r.hand(_ask(r, agg, range(5), bad))
        assert r.decryptor.state is DecryptorState.KEYED  # refused before any decryption
    r.hand(_ask(r, agg, range(5)))  # the honest request still works
    assert r.decryptor.released is not None
    r.check(r.decryptor.released)


def test_an_envelope_from_another_round_is_refused(name: str) -> None:
    old = _collect(name, seed="old")
    r = _collect(name, seed="new", config=dataclasses.replace(
        old.config, round_id=1, session=old.config.session), credentials=old.credentials)
    up, stale = _uploads(r), _uploads(old)
    agg = _aggregate(r, [up[u].blocks for u in range(5)])
    with pytest.raises(ProtocolError):
        r.hand(_ask(r, agg, range(5), [stale[0].envelope] + [up[u].envelope for u in range(1, 5)]))
    assert r.decryptor.state is DecryptorState.KEYED


def test_the_amplified_zero_attack_is_refused() -> None:
    """The aggregator encrypts 0 under the public context, doubles it 39 times (additions
    keep the scale) and claims 20 contributors, with DP off: once alone, and once on top of
    the honest aggregate. Either way the release would carry 2^39 times a fresh decryption
    error; the grid check refuses it."""
    ts = pytest.importorskip("tenseal")
    from protocols.ckks.config import SLOTS

    for on_top in (False, True):
        r = _collect("ckks", n=20, dim=30, seed=f"amp/{on_top}")
        up = _uploads(r)
        public = r.server._public
        zero = ts.ckks_vector(public, [0.0] * SLOTS, 2.0**r.config.scale_bits)
        for _ in range(39):
            zero = zero + zero
        blocks = [(zero.serialize(),)] + ([up[u].blocks for u in range(20)] if on_top else [])
        _refused_after_decryption(r, _ask(r, _aggregate(r, blocks), range(20)))


def test_a_small_crafted_addition_is_rounded_away_exactly() -> None:
    """What passes the grid check is rounded to it: an unamplified fresh encryption of 0 on
    top of the honest aggregate leaves the release exactly the honest one (no error bits)."""
    ts = pytest.importorskip("tenseal")
    from protocols.ckks.config import SLOTS

    r = _collect("ckks", n=4, dim=30)
    up = _uploads(r)
    zero = ts.ckks_vector(r.server._public, [0.0] * SLOTS, 2.0**r.config.scale_bits)
    blocks = [up[u].blocks for u in range(4)] + [(zero.serialize(),)]
    r.hand(_ask(r, _aggregate(r, blocks), range(4)))
    assert r.decryptor.released is not None
    r.check(r.decryptor.released)


# -- one DP event for every protocol -------------------------------------------------------------
class _SampledNoise(NoiseHook):
    """Central DP whose event is a Poisson-sampled discrete Gaussian (as ``secagg run``
    charges it), so the event that travels is a nested one."""

    def __init__(self, dim: int) -> None:
        from secagg.dp import CentralDiscreteGaussian
        from secagg.dp.events import PoissonSampledEvent
        from secagg.encoding import EncodingConfig

        self.mechanism = CentralDiscreteGaussian(1.5, EncodingConfig().l2_sensitivity(dim))
        self.event = PoissonSampledEvent(0.25, self.mechanism.event())
        self.calls = 0

    def add_noise(self, int_sum: np.ndarray, rng: Csprng) -> tuple[np.ndarray, Any]:
        self.calls += 1
        noised, _ = self.mechanism.add_noise(int_sum, rng)
        return noised, self.event


@pytest.mark.parametrize("protocol", [*protocols.names(), "secagg:active", "secagg+:active"])
def test_the_servers_result_carries_the_charged_dp_event_for_every_protocol(
        protocol: str) -> None:
    """``server.result().dp_event`` is the event the decoding party's noise hook charged,
    whichever party decodes (the server for masking, the decryptor for HE)."""
    from helpers import Router

    base, _, variant = protocol.partition(":")
    spec = protocols.get(base)
    noise = _SampledNoise(8)
    options: dict[str, Any] = {"active": True} if variant else {}
    config = spec.make_config(4, 8, noise=noise, **options)
    router = Router(spec, config, Csprng.from_seed(f"dp-event/{protocol}"))
    result = router.run()
    assert noise.calls == 1
    assert result.dp_event == noise.event
    assert result.dp_event.event.sigma == pytest.approx(noise.mechanism.sigma)
    for helper in router.helpers.values():
        if isinstance(helper, HeDecryptor):  # a third-party protocol's helpers keep their own
            assert helper.released is not None
            assert helper.released.dp_event == result.dp_event


def test_secagg_run_sets_he_min_clients_to_the_planned_survivors(name: str) -> None:
    from fl.training.loop import _round_config
    from secagg.encoding import EncodingConfig

    spec = protocols.get(name)
    enc = EncodingConfig(max_clients=10)
    assert _round_config(spec, 10, 5, enc, 0.2).min_clients == 8
    assert _round_config(spec, 10, 5, enc, 0.0).min_clients == 10
    assert _round_config(spec, 2, 5, enc, 0.5).min_clients == 2  # never below 2
