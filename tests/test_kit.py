"""The public testing kit and harness themselves: optional hypothesis, the harness's network
operations, the strategies' promises, the table walks."""

from __future__ import annotations

import gc
import subprocess
import sys
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import protocols
from protocols.harness import ROUND_GC_THRESHOLDS, NetOp, Op, Router
from protocols.parties import build_parties, party_rng
from protocols.testing import strategies as pst
from protocols.testing.walk import check_table, walk_table
from secagg.errors import ConfigError, DropoutError, LateMessageError, UsageError
from secagg.rng import Csprng


def test_protocols_imports_without_hypothesis() -> None:
    code = ("import sys; sys.modules['hypothesis'] = None\n"
            "import numpy as np, protocols\n"
            "r = protocols.aggregate('secagg', None, [np.full(3, 0.25)] * 4)\n"
            "assert r.total_weight == 4.0\n"
            "try:\n    import protocols.testing\nexcept ImportError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert "pip install 'secagg[testing]'" in out.stdout


def test_build_parties_uses_one_label_scheme() -> None:
    spec = protocols.get("secagg")
    config = spec.make_config(4, 3, active=True, session=b"labels")
    rng = Csprng.from_seed("labels")
    parties = build_parties(spec, config, rng)
    assert len(parties.clients) == 4 and parties.config.registry is not None
    assert party_rng(rng, 2).bytes(16) == rng.spawn("client/2").bytes(16)
    assert party_rng(rng, "server").bytes(16) == rng.spawn("server").bytes(16)
    with pytest.raises(UsageError):
        party_rng(rng, "nobody")
    with pytest.raises(UsageError):
        parties.party(17)


def test_aggregate_matches_a_hand_routed_round() -> None:
    inputs = [np.linspace(-0.5, 0.5, 6) * (u + 1) / 4 for u in range(4)]
    for name in ("plaintext", "secagg", "secagg+"):
        spec = protocols.get(name)
        config = spec.make_config(4, 6, session=b"same")
        got = protocols.aggregate(name, config, inputs, rng=Csprng.from_seed(9))
        router = Router(spec, config, Csprng.from_seed(9), inputs)
        want = router.run()
        np.testing.assert_array_equal(got.int_sum, want.int_sum)
        router.check_result(want)


def test_aggregate_refuses_bad_input_before_any_work() -> None:
    with pytest.raises(ConfigError, match="same length"):
        protocols.aggregate("secagg", None, [np.zeros(3), np.zeros(4)])
    with pytest.raises(ConfigError, match="unknown protocol"):
        protocols.aggregate("nope", None, [np.zeros(3)] * 2)
    with pytest.raises(ConfigError, match="does not support 'threshold'"):
        protocols.aggregate("plaintext", None, [np.zeros(3)] * 2, threshold=2)


def test_a_round_runs_with_the_one_process_collector_and_restores_it() -> None:
    spec = protocols.get("secagg+")
    before = gc.get_threshold()
    seen: list[tuple[int, ...]] = []
    inner = Router(spec, spec.make_config(3, 2), Csprng.from_seed(2), drop_at={0: 1})

    def nested() -> None:  # a round inside a round (or in another thread) leaves it set
        seen.append(gc.get_threshold())
        inner.run(before_close=lambda: seen.append(gc.get_threshold()))
        seen.append(gc.get_threshold())

    outer = Router(spec, spec.make_config(4, 2), Csprng.from_seed(1), drop_at={3: 1})
    outer.run(before_close=nested)
    assert seen and all(t == ROUND_GC_THRESHOLDS for t in seen)
    assert gc.get_threshold() == before != ROUND_GC_THRESHOLDS

    failing = Router(spec, spec.make_config(4, 2), Csprng.from_seed(1), drop_at={0: 1, 1: 1, 2: 1})
    with pytest.raises(DropoutError):
        failing.run()
    assert gc.get_threshold() == before


def test_a_frame_delayed_past_the_deadline_arrives_late() -> None:
    spec = protocols.get("plaintext")
    router = Router(spec, spec.make_config(3, 2), Csprng.from_seed(1))
    router.deliver(0)  # client 0 answers
    i = router.find(lambda e: e.recipient == protocols.SERVER)
    assert i is not None
    router.delay(i)
    router.flush()
    with pytest.raises(LateMessageError):
        router.run()  # the delayed input comes back after the deadline closed the round
    assert router.finished and router.server.result().contributors == (1, 2)


def test_network_operations_do_what_they_say() -> None:
    spec = protocols.get("plaintext")
    router = Router(spec, spec.make_config(3, 2), Csprng.from_seed(1))
    assert len(router.pending) == 3
    router.apply([NetOp(Op.DUPLICATE, 0), NetOp(Op.DROP, 1)])
    assert len(router.pending) == 3 and router.pending[-1].recipient == 0
    router.apply([NetOp(Op.DELIVER, 1)])  # reordered: client 2's request first
    assert router.received == [0, 0, 1]


@given(data=st.data())
def test_round_configs_are_valid_and_use_the_declared_keywords(data: st.DataObject) -> None:
    spec = protocols.get(data.draw(st.sampled_from(["plaintext", "secagg", "secagg+"])))
    _, config = data.draw(pst.round_configs(spec))
    assert 3 <= config.n_clients <= 6
    params = spec.graph_params(config)
    if params.degree is not None:
        assert params.threshold is not None and 1 <= params.threshold <= params.degree + 1
    schedule = data.draw(pst.dropout_schedules_for(spec, config))
    assert all(0 <= s < len(spec.client_stages(config)) for s in schedule.values())
    xs, ws = data.draw(pst.inputs_and_weights(config.n_clients, config.dim))
    assert len(xs) == len(ws) == config.n_clients and all(0 < w <= 1 for w in ws)


def test_the_pure_walk_refuses_a_malformed_table() -> None:
    import enum

    class S(enum.Enum):
        A = 1
        B = 2
        C = 3
        ABORTED = 4

    class K(enum.Enum):
        GO = 1
        BACK = 2

    assert walk_table({(S.A, K.GO): S.B}).moved == 1
    with pytest.raises(AssertionError, match="cannot be reached"):
        check_table({(S.A, K.GO): S.B, (S.C, K.GO): S.A})
    with pytest.raises(AssertionError, match="ABORTED"):
        check_table({(S.A, K.GO): S.B, (S.ABORTED, K.GO): S.A})
    with pytest.raises(AssertionError, match="chain"):
        check_table({(S.A, K.GO): S.B, (S.A, K.BACK): S.C}, chain=True)


@pytest.mark.parametrize("name", ["plaintext", "secagg+"])
def test_lazy_inputs_are_made_once_just_before_the_input_stage(name: str) -> None:
    spec = protocols.get(name)
    config = spec.make_config(6, 5, session=b"lazy")
    calls: list[int] = []

    def make(u: int) -> np.ndarray:
        calls.append(u)
        return np.linspace(-0.2, 0.2, 5) * (u + 1)

    stage = spec.input_stage(config)
    assert spec.client_stages(config)[stage].KIND is spec.input_kind
    drop_at = {1: stage, 4: stage + 1} if stage + 1 < len(spec.client_stages(config)) else {1: 0}
    lazy = Router(spec, config, Csprng.from_seed(2), make, drop_at=drop_at, lazy_inputs=True,
                  server_first=True, keep_encodings=set(drop_at))
    assert calls == []  # nothing made before the stage that needs it
    result = lazy.run()
    assert sorted(calls) == sorted(set(calls)) and 1 not in calls
    eager = Router(spec, config, Csprng.from_seed(2), [make(u) for u in range(6)],
                   drop_at=drop_at)
    want = eager.run()
    assert result.contributors == want.contributors
    # Exact sums both ways (the encodings differ: a lazy client encodes after drawing its
    # keys, so its stochastic rounding uses other bits of its generator).
    assert lazy.is_exact(result) is True and eager.is_exact(want) is True
    lazy.check_result(result)
    eager.check_result(want)


@pytest.mark.parametrize("name", ["plaintext", "secagg+", "ckks"])
@pytest.mark.parametrize("server_first", [True, False])
def test_server_first_hands_over_uploads_at_once_and_batches_the_rest(
        name: str, server_first: bool) -> None:
    spec = protocols.get(name)
    config = spec.make_config(5, 4, session=b"order")
    upload = spec.input_stage(config)
    inputs = [np.linspace(-0.3, 0.3, 4) * (u + 1) / 5 for u in range(5)]
    r = Router(spec, config, Csprng.from_seed(3), inputs, server_first=server_first)
    r.check_result(r.run())
    log = [(m.sender, m.recipient) for m in r.log]  # every frame delivered, in order
    requests: dict[int, list[int]] = {}  # stage -> where its requests were delivered
    answers: dict[int, list[int]] = {}  # stage -> where the clients' answers were delivered
    seen = dict.fromkeys(range(5), 0)
    for i, (_, to) in enumerate(log):
        if to < 0:
            continue
        stage, seen[to] = seen[to], seen[to] + 1
        requests.setdefault(stage, []).append(i)
        j = next((j for j in range(i + 1, len(log)) if log[j][0] == to), None)
        if j is not None and log[j][1] < 0:
            answers.setdefault(stage, []).append(j)
    assert upload in answers
    for stage, at in answers.items():
        if stage == upload and server_first:  # each upload right after its request
            assert at == [i + 1 for i in requests[stage]]
        else:  # the stage's answers reach the server as a batch, after every request
            assert min(at) > max(requests[stage])


@pytest.mark.parametrize("name", ["plaintext", "secagg+", "ckks"])
def test_each_frame_is_encoded_and_decoded_inside_its_roles_timed_step(
        name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import protocols.harness as harness

    spec = protocols.get(name)
    config = spec.make_config(4, 3, session=b"codec")
    inside: list[int] = []  # the address whose step is running
    outside: list[str] = []
    encode, decode = harness.wire.encode, harness.wire.decode

    def encoding(m: protocols.Message) -> bytes:
        if not inside or inside[-1] != m.sender:
            outside.append(f"encode {type(m).__name__} from {m.sender}")
        return encode(m)

    def decoding(frame: bytes) -> protocols.Message:
        m: protocols.Message = decode(frame)
        if not inside or inside[-1] != m.recipient:
            outside.append(f"decode {type(m).__name__} for {m.recipient}")
        return m

    def step(address: int, call: Callable[[], list[protocols.Message]]) -> list[protocols.Message]:
        inside.append(address)
        try:
            return call()
        finally:
            inside.pop()

    inputs = [np.linspace(-0.3, 0.3, 3) * (u + 1) / 4 for u in range(4)]
    r = Router(spec, config, Csprng.from_seed(4), inputs, step=step, start=False)
    monkeypatch.setattr(harness.wire, "encode", encoding)
    monkeypatch.setattr(harness.wire, "decode", decoding)
    r.start()
    result = r.run()
    monkeypatch.undo()
    r.check_result(result)
    # Frames held as messages are encoded again when delivered (that copy is not charged);
    # every other encoding, and every decoding, runs in the step of the role that does it.
    held = {f"encode {type(m).__name__} from {m.sender}" for m in r.log if m.sender < 0}
    assert outside and set(outside) <= held
    assert not any(s.startswith("decode") for s in outside)


# -- hooks for adversarial tests ---------------------------------------------------------
def test_tamper_rewrites_what_goes_on_the_wire() -> None:
    import dataclasses

    spec = protocols.get("plaintext")
    config = spec.make_config(3, 2)
    seen: list[str] = []

    def tamper(msg: protocols.Message) -> protocols.Message:
        seen.append(type(msg).__name__)
        if msg.sender == 1 and hasattr(msg, "encoded"):
            return dataclasses.replace(msg, encoded=msg.encoded * 0)
        return msg

    inputs = [np.full(2, 0.5)] * 3
    router = Router(spec, config, Csprng.from_seed(3), inputs, tamper=tamper)
    result = router.run()
    assert len(seen) == 6  # three requests, three answers: every message passed through it
    assert not router.is_exact(result)  # client 1's input never reached the server
    assert router.sent[1][0].encoded.sum() == 0  # sent records what went on the wire
    assert router.expected_float_sum([0, 2])[0] == pytest.approx(result.sum)
    assert len(router.frames) == len(router.log) == 6
    from protocols.testing import messages_equal
    from secagg import wire

    assert all(messages_equal(wire.decode(f), m) for f, m in zip(router.frames, router.log))


def test_until_stops_the_honest_round_at_a_kind_and_drop_at_takes_kinds() -> None:
    spec = protocols.get("secagg")
    config = spec.make_config(5, 3)
    router = Router(spec, config, Csprng.from_seed(4), drop_at={4: spec.client_stages(
        config)[1].KIND})
    assert router.drop_at == {4: 1}
    kind = spec.client_stages(config)[2]
    got = router.until(kind)
    assert got and all(type(m) is kind for m in got)
    assert {m.recipient for m in got} == {0, 1, 2, 3}  # client 4 dropped at stage 1
    assert all(env.kind is kind.KIND for env in router.pending)  # still in flight
    router.check_result(router.run())
    with pytest.raises(UsageError, match="never sent"):
        Router(spec, config, Csprng.from_seed(4)).until(protocols.get("plaintext")
                                                        .client_stages(config)[0])
    with pytest.raises(ConfigError, match="not client stages"):
        Router(spec, config, Csprng.from_seed(4),
               drop_at={0: protocols.get("plaintext").client_stages(config)[0].KIND})


def test_a_killed_helper_hears_nothing_and_given_helpers_replace_the_specs() -> None:
    pytest.importorskip("phe")
    from protocols.base import DECRYPTOR, SERVER
    from secagg.errors import DropoutError

    spec = protocols.get("paillier")
    config = spec.make_config(3, 4)
    router = Router(spec, config, Csprng.from_seed(5), start=False)
    router.kill(DECRYPTOR)
    router.start()
    router.flush()
    with pytest.raises(DropoutError):
        router.close()
    with pytest.raises(UsageError):
        router.kill(99)
    config, creds = spec.provision(config, Csprng.from_seed(6))
    mine = spec.helpers(config, Csprng.from_seed(6))
    router = Router(spec, config, Csprng.from_seed(5), credentials=creds, helpers=mine)
    assert router.party(DECRYPTOR) is mine[DECRYPTOR]
    router.check_result(router.run())
    assert router.party(SERVER) is router.server
    own = spec.server(config, Csprng.from_seed(7))
    router = Router(spec, config, Csprng.from_seed(5), credentials=creds, server=own)
    assert router.server is own and router.party(SERVER) is own
    router.check_result(router.run())


def test_round_machine_specialises_a_given_base_and_refuses_another() -> None:
    from protocols.testing import RoundMachine, round_machine

    class Mine(RoundMachine):
        pass

    machine = round_machine("plaintext", base=Mine, max_n=4)
    assert issubclass(machine, Mine) and machine.max_n == 4
    assert machine.spec is protocols.get("plaintext")
    with pytest.raises(UsageError, match="subclass of RoundMachine"):
        round_machine("plaintext", base=object)  # type: ignore[arg-type]


def test_the_server_side_is_the_same_party_tree_as_build_parties():
    """A driver whose clients run elsewhere (Flower) builds its server and helpers with
    build_server_side: the same generators and provisioning as build_parties, and the
    credentials it would have to hand the clients."""
    import protocols
    from protocols.parties import build_parties, build_server_side
    from secagg.rng import Csprng

    spec = protocols.get("secagg")
    cfg = spec.make_config(4, 8, active=True)
    config, server, helpers, creds = build_server_side(spec, cfg, Csprng.from_seed(5))
    parties = build_parties(spec, cfg, Csprng.from_seed(5))
    assert config == parties.config and sorted(creds) == [0, 1, 2, 3]
    from secagg import wire

    ours, theirs = server.start(), parties.server.start()
    assert ours and [wire.encode(m) for m in ours] == [wire.encode(m) for m in theirs]
    _, _, _, none = build_server_side(spec, spec.make_config(4, 8), Csprng.from_seed(5))
    assert none == {}
