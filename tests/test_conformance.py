"""One conformance suite that every registered protocol runs (dp_accounting's shared base test).

Each test is parametrized over ``protocols.names()`` (plus the active-adversary variant of
secagg and secagg+), so a protocol that registers itself (ckks and paillier do when tenseal /
phe import) is held to the same contract as the others, with no change here:

- a full round releases the sum over its contributors: exactly in fixed-point units for an
  exact protocol, within the stochastic rounding (and the scheme's own error) otherwise;
- weighted rounds release sum(w*x) and sum(w) through the same secure sum;
- clients that drop before sending their input are left out, and the round goes on;
- fewer than ``min_clients`` contributors is refused with a typed error, never released;
- ``result()`` before the round finished is a UsageError;
- a message with the wrong version, round, recipient or sender is a ProtocolError; a client
  that gets one aborts, the server and helpers refuse it and stay where they were;
- a message for a stage that has closed is a LateMessageError and changes nothing;
- a duplicate is a ProtocolError, changes nothing, and is never counted twice;
- every message a round sends survives the wire codec unchanged.

Sizes stay small (5 clients, 16 values) so the homomorphic protocols run quickly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pytest
from helpers import Envelope, Router, assert_messages_equal, server_state

import protocols
from protocols.base import DECRYPTOR, PROTOCOL_VERSION, SERVER, Message
from secagg import wire
from secagg.encoding import EncodingConfig
from secagg.errors import DropoutError, LateMessageError, ProtocolError, UsageError
from secagg.rng import Csprng

N = 5
DIM = 16

# Every registered protocol, plus the active-adversary variant of the masking protocols
# (a config option rather than a protocol of its own).
_ACTIVE = ("secagg", "secagg+")
CASES = [pytest.param(name, id=name) for name in protocols.names()] + [
    pytest.param(f"{name}:{v}", id=f"{name}-{v}") for name in _ACTIVE
    for v in ("active", "enrolled", "enrolled+active") if name in protocols.names()
]
pytestmark = pytest.mark.parametrize("name", CASES)


def _spec_and_options(name: str) -> tuple[protocols.ProtocolSpec, dict[str, object]]:
    base, _, variant = name.partition(":")
    # "enrolled+active": long-term keys, two exchanges, plus the signed survivor list
    return protocols.get(base), {v: True for v in variant.split("+") if v}


def _router(name: str, seed: int = 1, *, n: int = N, dim: int = DIM, start: bool = True,
            **kw: object) -> Router:
    spec, options = _spec_and_options(name)
    drop_at = kw.pop("drop_at", None)
    weights = kw.pop("weights", None)
    config = spec.make_config(n, dim, **options, **kw)
    return Router(spec, config, Csprng.from_seed(f"conformance/{name}/{seed}"),
                  weights=weights, drop_at=drop_at, start=start)  # type: ignore[arg-type]


def _to_server(env: Envelope) -> bool:
    return env.recipient == SERVER and env.sender >= 0


def _hold_first(router: Router, where: Callable[[Envelope], bool]) -> Envelope:
    """Deliver oldest first until a frame that ``where`` selects is in flight; take it."""
    router.run_until(lambda: router.find(where) is not None)
    env = router.take(where)
    assert env is not None
    return env


# -- the sum ---------------------------------------------------------------------------
def test_full_round_releases_the_sum(name: str) -> None:
    router = _router(name)
    result = router.run()
    assert result.contributors == tuple(range(N))
    router.check_result(result)
    assert router.server.finished


@pytest.mark.parametrize("seed", [2, 3])
def test_weighted_round_sums_w_times_x_and_w(name: str, seed: int) -> None:
    # Weights that are exact in 16 fraction bits make sum(w) exact as well.
    weights = [0.5, 2.0, 1.25, 0.75, 1.5]
    encoding = EncodingConfig(max_clients=N, max_weight=2.0)
    router = _router(name, seed, encoding=encoding, weights=weights)
    result = router.run()
    router.check_result(result)
    assert result.total_weight == pytest.approx(sum(weights), abs=N * 2.0**-16 + 1e-3)
    if _spec_and_options(name)[0].exact:
        assert result.total_weight == sum(weights)
    want, _ = router.expected_float_sum(range(N))
    np.testing.assert_allclose(result.mean, want / sum(weights), atol=1e-3)


def test_dropouts_before_input_are_left_out(name: str) -> None:
    router = _router(name, drop_at={1: 0, 3: 0})
    result = router.run()
    assert result.contributors == (0, 2, 4)
    router.check_result(result)


def test_a_dropout_at_any_stage_gives_the_sum_of_who_contributed(name: str) -> None:
    for stage in range(len(_router(name, start=False).stages)):
        router = _router(name, 10 + stage, drop_at={2: stage})
        result = router.run()
        router.check_result(result)
        assert set(result.contributors) >= {0, 1, 3, 4}
        if stage == 0:
            assert 2 not in result.contributors


def test_fewer_than_min_clients_is_refused(name: str) -> None:
    router = _router(name, min_clients=N, drop_at={0: 0})
    with pytest.raises(DropoutError):
        router.run()
    assert not router.server.finished
    with pytest.raises(UsageError):
        router.server.result()


# -- API misuse ------------------------------------------------------------------------
def test_result_before_the_round_finishes_is_a_usage_error(name: str) -> None:
    router = _router(name, start=False)
    with pytest.raises(UsageError):
        router.server.result()
    router.start()
    with pytest.raises(UsageError):
        router.server.result()
    router.deliver(0)
    while router.pending and not router.finished:
        router.deliver(0)
        if not router.finished:
            with pytest.raises(UsageError):
                router.server.result()


# -- headers ---------------------------------------------------------------------------
_BAD_HEADERS = {
    "version": lambda m, n: {"version": PROTOCOL_VERSION + 1},
    "round": lambda m, n: {"round": m.round + 1},
    "recipient": lambda m, n: {"recipient": 1 if m.recipient != 1 else 2},
    "sender": lambda m, n: {"sender": n + 3 if m.sender == SERVER else SERVER - 5},
}


@pytest.mark.parametrize("field", sorted(_BAD_HEADERS))
def test_client_refuses_a_bad_header_and_aborts(name: str, field: str) -> None:
    router = _router(name)
    env = _hold_first(router, lambda e: e.recipient == 0)
    msg = env.open()
    bad = dataclasses.replace(msg, **_BAD_HEADERS[field](msg, N))
    with pytest.raises(ProtocolError):
        router.send(bad, to=0)
    assert router.clients[0].aborted
    assert router.sent.get(0, []) == []
    # Aborted for good: even the genuine message gets nothing out of it now.
    with pytest.raises(ProtocolError):
        router.send(env, to=0)
    assert router.sent.get(0, []) == []


def _server_bad_headers(msg: Message) -> dict[str, dict[str, int]]:
    changes = {
        "version": {"version": PROTOCOL_VERSION + 1},
        "round": {"round": msg.round + 1},
        "recipient": {"recipient": DECRYPTOR if msg.recipient == SERVER else SERVER},
        "sender outside the cohort": {"sender": N},
        "sender unknown role": {"sender": DECRYPTOR - 7},
    }
    if msg.sender >= 0:  # a client's message, claimed by the server or the decryptor
        changes["sender server"] = {"sender": SERVER}
        changes["sender decryptor"] = {"sender": DECRYPTOR}
    else:  # a role's message, claimed by a client
        changes["sender a client"] = {"sender": 0}
    return changes


@pytest.mark.parametrize("target", ["server", "helper"])
def test_server_and_helpers_refuse_bad_headers_and_stay_put(name: str, target: str) -> None:
    router = _router(name)
    if target == "server":
        where = _to_server
    else:
        if not router.helpers:
            pytest.skip(f"{name} has no helper roles")
        where = lambda e: e.recipient in router.helpers
    env = _hold_first(router, where)
    address = env.recipient
    party = router.party(address)
    msg = env.open()
    for what, change in _server_bad_headers(msg).items():
        before = server_state(party)
        with pytest.raises(ProtocolError):
            router.send(dataclasses.replace(msg, **change), to=address)
        assert server_state(party) == before, what
    router.send(env)
    result = router.run()
    assert result.contributors == tuple(range(N))
    router.check_result(result)


# -- late and duplicate messages -------------------------------------------------------
def test_a_message_after_its_stage_closed_is_late_and_changes_nothing(name: str) -> None:
    router = _router(name)
    held = _hold_first(router, _to_server)
    router.flush()
    assert router.find(_to_server) is None
    router.close()
    before = server_state(router.server)
    with pytest.raises(LateMessageError):
        router.send(held)
    assert server_state(router.server) == before
    result = router.run()
    assert held.sender not in result.contributors
    router.check_result(result)
    # After the round, anything more is late too, and the result stays what it was.
    with pytest.raises(LateMessageError):
        router.send(held)
    assert router.server.result() is result


def test_a_duplicate_to_the_server_is_refused_and_never_counted_twice(name: str) -> None:
    router = _router(name)
    env = _hold_first(router, _to_server)
    router.send(env)
    before = server_state(router.server)
    with pytest.raises(ProtocolError):
        router.send(env)
    assert server_state(router.server) == before
    result = router.run()
    assert result.contributors == tuple(range(N))
    router.check_result(result)


def test_a_duplicate_to_a_client_is_refused(name: str) -> None:
    router = _router(name)
    env = _hold_first(router, lambda e: e.recipient == 0)
    router.send(env)
    sent = len(router.sent[0])
    with pytest.raises(ProtocolError):
        router.send(env)
    assert router.clients[0].aborted
    assert len(router.sent[0]) == sent


def test_every_duplicate_to_a_helper_is_refused(name: str) -> None:
    # A replayed decryption request is the peer's fault: a ProtocolError (the decryptor's
    # one-shot error may refine it), so drivers that refuse peer errors carry on.
    router = _router(name)
    if not router.helpers:
        pytest.skip(f"{name} has no helper roles")
    duplicated = []
    for _ in range(8):
        while router.pending:
            env = router.pending[0]
            router.deliver(0)
            if env.recipient in router.helpers:
                party = router.party(env.recipient)
                before = server_state(party)
                with pytest.raises(ProtocolError):
                    router.send(env)
                assert server_state(party) == before
                duplicated.append(env.kind)
        if router.finished:
            break
        router.close()
    assert router.finished
    router.check_result(router.server.result())
    assert len(duplicated) >= 2  # the key request and the decryption request at least


# -- the codec -------------------------------------------------------------------------
def test_every_message_kind_round_trips_through_the_codec(name: str) -> None:
    stages = _router(name, start=False).stages
    # One client drops at the last stage, so that messages about dropouts are non-empty.
    router = _router(name, drop_at={N - 1: len(stages) - 1})
    router.run()
    kinds = set()
    for msg in router.log:
        frame = wire.encode(msg)
        again = wire.decode(frame)
        assert_messages_equal(again, msg)
        assert wire.encode(again) == frame
        assert type(msg) in wire.registered().values()
        assert msg.version == PROTOCOL_VERSION
        kinds.add(msg.KIND)
    # Every stage a client goes through was exercised, and so was the way back.
    assert set(stages) <= {k.name for k in kinds}
    assert any(m.recipient == SERVER and m.sender >= 0 for m in router.log)
