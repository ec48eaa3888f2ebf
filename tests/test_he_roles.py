"""The roles that ckks and paillier share (protocols._he): client, aggregator, decryptor.

Every test runs over both schemes. :class:`HeRound` is a small router: it starts the
aggregator, routes each message by recipient to a client, the decryptor or the aggregator,
and passes every message through the wire codec on the way (what a role receives is
``wire.decode(wire.encode(msg))``). test_ckks.py and test_paillier.py reuse it.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pytest

pytest.importorskip("tenseal")
pytest.importorskip("phe")

import protocols
from protocols import _he
from protocols._he import (
    ClientState,
    ContextRequest,
    DecryptorState,
    DecryptRequest,
    EncryptedInput,
    HeKind,
    InputRequest,
    Kind,
    PublicContext,
    ReleasedAggregate,
    ServerState,
)
from protocols.base import (
    DECRYPTOR,
    SERVER,
    AggregateResult,
    Message,
    NoiseHook,
    header,
)
from protocols.ckks import CkksDecryptor
from protocols.paillier import PaillierDecryptor
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


def random_inputs(n: int, dim: int, rng: Csprng, norm: float = 0.9) -> list[np.ndarray]:
    out = []
    for _ in range(n):
        v = rng.random(dim) - 0.5
        out.append(v * (norm / float(np.linalg.norm(v))))
    return out


class HeRound:
    """Every role of one HE round, joined through the wire codec.

    ``silent`` clients never get (so never answer) their input request: they have dropped.
    """

    def __init__(self, name: str, n: int = 5, dim: int | None = None, seed: int | str = 1, *,
                 silent: Iterable[int] = (), inputs: Sequence[np.ndarray] | None = None,
                 weights: Sequence[float] | None = None, decryptor: Any = None,
                 config: Any = None, **kw: Any) -> None:
        self.spec = protocols.get(name)
        kw.setdefault("workers", 1)
        self.config = config or self.spec.make_config(n, DIMS[name] if dim is None else dim, **kw)
        rng = Csprng.from_seed(f"he/{name}/{seed}")
        self.server = self.spec.server(self.config, rng.spawn("server"))
        self.decryptor = decryptor or self.spec.helpers(self.config, rng.spawn("helpers"))[DECRYPTOR]
        self.clients = [self.spec.client(self.config, u, rng.spawn(f"client/{u}"))
                        for u in range(n)]
        self.inputs = list(inputs) if inputs is not None else random_inputs(
            n, self.config.dim, rng.spawn("inputs"))
        self.weights = list(weights) if weights is not None else [1.0] * n
        for c, x, w in zip(self.clients, self.inputs, self.weights):
            c.set_input(x, w)
        self.encoded = [None if c.encoded is None else c.encoded.copy() for c in self.clients]
        self.silent = set(silent)
        self.log: list[Message] = []
        self.frames: list[bytes] = []

    def party(self, address: int) -> Any:
        if address == SERVER:
            return self.server
        if address == DECRYPTOR:
            return self.decryptor
        return self.clients[address]

    def send(self, msg: Message, to: int | None = None) -> list[Message]:
        """Deliver one message through the codec; returns what the role answers."""
        frame = wire.encode(msg)
        decoded: Message = wire.decode(frame)
        self.log.append(decoded)
        self.frames.append(frame)
        return self.party(msg.recipient if to is None else to).receive(decoded)

    def route(self, msgs: Iterable[Message]) -> None:
        queue = deque(msgs)
        while queue:
            msg = queue.popleft()
            if msg.recipient in self.silent:
                continue
            queue.extend(self.send(msg))

    def run(self) -> AggregateResult:
        self.route(self.server.start())
        if not self.server.finished:
            self.route(self.server.close_round())
        return self.server.result()

    def sent(self, kind: type[Message]) -> list[Any]:
        return [m for m in self.log if type(m) is kind]

    def float_sum(self, ids: Iterable[int]) -> tuple[np.ndarray, float]:
        clip = self.config.encoding.clip
        total, weight = np.zeros(self.config.dim), 0.0
        for u in ids:
            x = np.asarray(self.inputs[u], np.float64)
            norm = float(np.linalg.norm(x))
            total += self.weights[u] * (x * (clip / norm) if norm > clip else x)
            weight += self.weights[u]
        return total, weight

    def check(self, result: AggregateResult) -> None:
        """Paillier: exact integer sum. ckks: within the documented error bound."""
        ids = result.contributors
        want, weight = self.float_sum(ids)
        if self.spec.exact:
            exact = sum(self.config.encoding.centre(self.encoded[u]) for u in ids)
            np.testing.assert_array_equal(result.int_sum, exact)
            tol = len(ids) * 2.0 ** -self.config.encoding.frac_bits
        else:
            assert result.int_sum is None
            tol = self.config.max_abs_error(len(ids))
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
    (req,) = r.sent(DecryptRequest)  # one aggregate, one decryption
    assert req.contributors == (0, 1, 2, 3, 4)


def test_silent_clients_are_left_out_when_the_round_closes(name: str) -> None:
    r = HeRound(name, silent={1, 3})
    r.route(r.server.start())
    assert r.server.state is ServerState.COLLECTING and not r.sent(DecryptRequest)
    r.route(r.server.close_round())
    result = r.server.result()
    assert result.contributors == (0, 2, 4)
    r.check(result)
    assert r.server.close_round() == []  # idempotent once finished


def test_the_aggregator_refuses_to_ask_for_fewer_than_min_clients(name: str) -> None:
    r = HeRound(name, silent={0, 1, 2}, min_clients=3)
    r.route(r.server.start())
    with pytest.raises(DropoutError):
        r.server.close_round()
    assert r.server.state is ServerState.ABORTED and not r.sent(DecryptRequest)
    with pytest.raises(UsageError):
        r.server.result()


def test_a_silent_decryptor_aborts_the_round(name: str) -> None:
    r = HeRound(name, silent={DECRYPTOR})
    r.route(r.server.start())
    with pytest.raises(DropoutError):
        r.server.close_round()
    assert r.server.state is ServerState.ABORTED


# -- the decryptor's rules ----------------------------------------------------------------------
def test_the_decryptor_decrypts_at_most_once(name: str) -> None:
    r = HeRound(name)
    r.run()
    (req,) = r.sent(DecryptRequest)
    with pytest.raises(AlreadyFinalized) as info:
        r.send(req)
    assert isinstance(info.value, ProtocolError)  # a replay by the peer, too
    assert r.decryptor.state is DecryptorState.RELEASED
    assert r.decryptor._secret is None  # the key is gone after its one use


def test_the_decryptor_refuses_fewer_than_min_clients(name: str) -> None:
    # A cheating aggregator forwards one client's ciphertext and says so.
    r = HeRound(name, min_clients=3, silent={1, 2, 3, 4})
    r.route(r.server.start())
    (upload,) = [m for m in r.sent(EncryptedInput) if m.sender == 0]
    forged = DecryptRequest(**header(r.config, SERVER, DECRYPTOR), scheme=upload.scheme,
                            blocks=upload.blocks, contributors=(0,))
    with pytest.raises(DropoutError):
        r.send(forged)
    assert r.decryptor.state is DecryptorState.KEYED  # nothing was decrypted


@pytest.mark.parametrize("ids", [(0, 0, 1), (2, 1, 0), (0, 1, 7), ()])
def test_the_decryptor_refuses_malformed_contributor_lists(name: str, ids: tuple[int, ...]) -> None:
    r = HeRound(name, silent={4})
    r.route(r.server.start())
    (req,) = r.server.close_round()
    with pytest.raises(ProtocolError):
        r.send(dataclasses.replace(req, contributors=ids))
    assert r.decryptor.state is DecryptorState.KEYED
    r.route([req])
    r.check(r.server.result())


def test_a_tampered_aggregate_is_refused_after_its_one_decryption(name: str) -> None:
    # Adding one upload twice gives a slot sum no honest round produces (paillier: the
    # offsets no longer cancel; ckks: the weight slot exceeds what 2 contributors can send).
    # Two contributors: no protocol releases a sum of fewer (MIN_COHORT).
    r = HeRound(name, n=3, silent={2})
    r.route(r.server.start())
    upload = r.sent(EncryptedInput)[0]
    scheme = r.server.SCHEME
    public = scheme.load_public(r.config, r.sent(PublicContext)[0].context)
    acc = None
    for _ in range(3):
        acc = scheme.add(r.config, public, acc, scheme.open_blocks(r.config, public, upload.blocks))
    forged = DecryptRequest(**header(r.config, SERVER, DECRYPTOR), scheme=upload.scheme,
                            blocks=scheme.seal(r.config, public, acc), contributors=(0, 1))
    with pytest.raises(ProtocolError, match="out of range"):
        r.send(forged)
    assert r.decryptor.state is DecryptorState.ABORTED and r.decryptor.released is None
    with pytest.raises(ProtocolError):
        r.send(forged)


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
    want, weight = r.float_sum(result.contributors)
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
            r.send(bad)
        assert r.decryptor.state is DecryptorState.IDLE  # refused, nothing changed
    (ctx,) = r.send(first)
    for bad in (dataclasses.replace(ctx, sender=0), dataclasses.replace(ctx, scheme=other)):
        with pytest.raises(ProtocolError):
            r.send(bad)
        assert r.server.state is ServerState.AWAIT_CONTEXT
    requests = r.send(ctx)
    with pytest.raises(ProtocolError):
        r.send(dataclasses.replace(requests[0], scheme=other))
    assert r.clients[0].aborted
    r.route(requests[1:])
    with pytest.raises(ProtocolError):  # a duplicate upload is never counted twice
        r.send(r.sent(EncryptedInput)[0])
    r.route(r.server.close_round())
    assert r.server.result().contributors == (1, 2, 3, 4)


def test_forged_uploads_are_refused_and_change_nothing(name: str) -> None:
    r = HeRound(name)
    (ctx,) = r.send(r.server.start()[0])
    requests = r.send(ctx)
    (upload,) = r.send(requests[0])
    for blocks in ((), (b"",), (b"\x00" * 64,) * len(upload.blocks), upload.blocks + (b"x",)):
        with pytest.raises(ProtocolError):
            r.send(dataclasses.replace(upload, blocks=blocks))
        assert r.server.state is ServerState.COLLECTING and not r.server._seen
    r.send(upload)
    r.route(requests[1:])
    r.check(r.server.result())
    with pytest.raises(LateMessageError):
        r.send(upload)
    with pytest.raises(DecodeError):
        wire.decode(wire.encode(upload)[:-1])


def test_walk_every_state_and_message_kind(name: str) -> None:
    """Each (state, kind) pair a role's table lacks is refused and leaves the role where it
    was (clients abort); a second decryption request is AlreadyFinalized."""
    r = HeRound(name, n=2)
    r.run()
    sample = {m.KIND: m for m in r.log}
    roles = [(r.decryptor, _he.DECRYPTOR_TRANSITIONS, DecryptorState),
             (r.server, _he.SERVER_TRANSITIONS, ServerState),
             (r.clients[0], _he.CLIENT_TRANSITIONS, ClientState)]
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
    fresh = spec.client(r.config, 0, Csprng.from_seed(5))
    requests = r.send(r.send(r.server.start()[0])[0])
    with pytest.raises(UsageError):  # the input was never given
        fresh.receive(requests[0])
    with pytest.raises(ConfigError):
        spec.make_config(3, 4, workers=0)


# -- an authenticated decryptor ------------------------------------------------------------
def test_a_signed_context_defeats_a_substituted_one(name: str) -> None:
    spec = protocols.get(name)
    seed = sign.generate(Csprng.from_seed("decryptor identity"))
    config = spec.make_config(3, DIMS[name], workers=1, decryptor_key=sign.verify_key(seed))
    with pytest.raises(ConfigError):  # the decryptor needs its signing key
        spec.helpers(config, Csprng.from_seed(1))
    decryptor = DECRYPTORS[name]
    r = HeRound(name, n=3, config=config,
                decryptor=decryptor(config, Csprng.from_seed(2), signing_key=seed))
    r.check(r.run())

    # An aggregator that makes its own key pair cannot get clients to encrypt under it.
    r2 = HeRound(name, n=3, config=config, seed=2,
                 decryptor=decryptor(config, Csprng.from_seed(3), signing_key=seed))
    requests = r2.send(r2.send(r2.server.start()[0])[0])
    own, _ = r2.server.SCHEME.keygen(r2.config, Csprng.from_seed(4))
    for sig in (b"", requests[0].signature, b"\x01" * 64):
        with pytest.raises(ProtocolError):
            r2.send(dataclasses.replace(requests[0], context=own, signature=sig))
        assert r2.clients[0].aborted
        r2.clients[0].state = ClientState.WAITING
    # The aggregator checks the signature too.
    ctx = r2.sent(PublicContext)[0]
    r3 = HeRound(name, n=3, config=config, seed=3,
                 decryptor=decryptor(config, Csprng.from_seed(5), signing_key=seed))
    r3.server.start()
    for bad in (dataclasses.replace(ctx, context=own), dataclasses.replace(ctx, signature=b"")):
        with pytest.raises(ProtocolError):
            r3.server.receive(bad)
        assert r3.server.state is ServerState.AWAIT_CONTEXT
