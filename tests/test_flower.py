"""The Flower adapter: ServerApp workflow, ClientApp mod, engine, and a real loopback deployment.

Most tests run the real ServerApp/ClientApp code against :class:`FakeGrid`, a push/pull Grid
whose nodes are the ClientApp in this process; every message and every node Context goes
through Flower's own protobuf serialisation, as between real processes. The last test starts a
real SuperLink and three SuperNodes on 127.0.0.1 and checks that two rounds give exactly what
the in-process simulator gives.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

flwr = pytest.importorskip("flwr", reason="flwr is not installed: the Flower adapter cannot run")

from flwr.app import Context, Error, Message, RecordDict
from flwr.common import serde
from flwr.proto.message_pb2 import Message as ProtoMessage
from flwr.serverapp import Grid
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity

import protocols
from fl.engines import SimulationEngine, make_engine
from fl.engines.simulation import run_round
from fl.flower import (
    FlowerEngine,
    client_app,
    codec,
    jobs,
    records,
    server_app,
    settings,
)
from fl.flower.deploy import LocalDeployment, write_app
from protocols.base import NoiseHook, RoundConfig
from secagg import wire
from secagg.errors import BudgetExceededError, ConfigError, DecodeError, UsageError
from secagg.rng import Csprng

ALL = protocols.names()
RUN_ID = 7
LOOPBACK = {client_app.LOOPBACK: True}  # test nodes accept the run's seed and job folder


# -- an in-process Grid ---------------------------------------------------------------------
def _copy(msg: Message) -> Message:
    blob = serde.message_to_proto(msg).SerializeToString()
    return serde.message_from_proto(ProtoMessage.FromString(blob))


class FakeGrid(Grid):
    """Nodes ``1000 + i`` run ``app`` in this process, with ``node_configs[i]``.

    ``silent`` nodes never answer; ``tamper(node, reply)`` may rewrite a reply.
    """

    def __init__(self, app, node_configs, run_config, *, silent=(), tamper=None):
        self.app, self.silent, self.tamper = app, set(silent), tamper
        self._run = Run.create_empty(run_id=RUN_ID)
        state = tempfile.mkdtemp(prefix="secagg-fakegrid-")  # not the user's ~/.secagg
        self.contexts = {1000 + i: Context(RUN_ID, 1000 + i,
                                           {**LOOPBACK, "secagg-state-dir": f"{state}/{i}", **nc},
                                           RecordDict(), dict(run_config))
                         for i, nc in enumerate(node_configs)}
        self.replies: dict[str, Message] = {}
        self.sent: list[tuple[int, Message]] = []

    def set_run(self, run):
        self._run = run

    @property
    def run(self):
        return self._run

    def create_message(self, content, message_type, dst_node_id, group_id, ttl=None):
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self):
        return list(self.contexts)

    def push_messages(self, messages):
        ids = []
        for msg in messages:
            mid = uuid.uuid4().hex
            msg.metadata.__dict__["_message_id"] = mid
            ids.append(mid)
            nid = msg.metadata.dst_node_id
            self.sent.append((nid, msg))
            if nid in self.silent:
                continue
            local = _copy(msg)
            ctx = self.contexts[nid]
            try:
                reply = self.app(local, ctx)
            except Exception as exc:  # noqa: BLE001 - as Flower: an exception is an error reply
                reply = Message(Error(code=0, reason=repr(exc)), reply_to=local)
            if self.tamper is not None:
                reply = self.tamper(nid, reply)
            self.contexts[nid] = serde.context_from_proto(serde.context_to_proto(ctx))
            self.replies[mid] = _copy(reply)
        return ids

    def pull_messages(self, message_ids):
        return [self.replies.pop(m) for m in list(message_ids) if m in self.replies]

    def send_and_receive(self, messages, *, timeout=None):
        return self.pull_messages(self.push_messages(messages))


@pytest.fixture(autouse=True)
def _task_identity():
    """Flower's Message constructor reads the task's identity, as inside a ServerApp."""
    saved = (TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id)
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = RUN_ID, 1, 1
    yield
    TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id = saved


def _run_config(**kw):
    cfg = dict(settings.RUN_CONFIG)
    cfg.update({k.replace("_", "-"): v for k, v in kw.items()})
    return cfg


class InProcessSession:
    """The engine's session with a FakeGrid and the ServerApp's job loop in a thread."""

    def __init__(self, tmp: Path, n: int, stage_timeout: float, **grid_kw):
        self.job_dir = tmp / "jobs"
        self.job_dir.mkdir()
        rc = _run_config(job_dir=str(self.job_dir), stage_timeout=stage_timeout, node_wait=5.0)
        self.grid = FakeGrid(client_app.app, [{"partition-id": i} for i in range(n)], rc,
                             **grid_kw)
        self.node_ids = {i: 1000 + i for i in range(n)}
        self.thread = threading.Thread(target=server_app.serve_jobs, args=(self.grid, rc),
                                       daemon=True)
        self.thread.start()

    def ensure_nodes(self, n):
        assert n <= len(self.node_ids)

    def alive(self):
        return self.thread.is_alive()

    def diagnostics(self):
        return ""

    def close(self):
        jobs.write_atomic(self.job_dir / jobs.STOP, b"")
        self.thread.join(timeout=10)


def _engine(tmp_path, n, *, stage_timeout=5.0, dropout=0.0, **grid_kw):
    def factory(num_nodes, timeout, startup, keep):
        return InProcessSession(tmp_path, n, timeout, **grid_kw)

    return FlowerEngine(dropout=dropout, stage_timeout=stage_timeout, session_factory=factory)


def _inputs(n, dim, tag="x"):
    return [Csprng.from_seed(f"{tag}/{u}").random(dim) * 0.4 - 0.2 for u in range(n)]


def _same(a, b):
    assert a.error == b.error
    if b.result is None:
        assert a.result is None
        return
    assert a.result.contributors == b.result.contributors
    if b.result.int_sum is not None:
        np.testing.assert_array_equal(a.result.int_sum, b.result.int_sum)
    np.testing.assert_allclose(a.result.sum, b.result.sum, atol=1e-9)
    assert a.result.total_weight == pytest.approx(b.result.total_weight)


# -- codec and records -----------------------------------------------------------------------
@pytest.mark.parametrize("name", ALL)
def test_configs_round_trip_through_the_typed_codec(name):
    cfg = protocols.get(name).make_config(5, 17, round_id=3)
    back = codec.loads(codec.dumps(cfg), RoundConfig)
    assert back == cfg and type(back) is type(cfg)


def test_codec_carries_registries_and_distributed_noise():
    from secagg.dp import DistributedDiscreteGaussian
    from secagg.encoding import EncodingConfig

    spec = protocols.get("secagg+")
    hook = DistributedDiscreteGaussian(1.0, EncodingConfig(max_clients=6).l2_sensitivity(20), 6)
    cfg, creds = spec.provision(spec.make_config(6, 20, active=True, client_noise=hook),
                                Csprng.from_seed(1))
    assert codec.loads(codec.dumps(cfg)) == cfg
    assert codec.loads(codec.dumps(creds[0])) == creds[0]


def test_codec_writes_a_frozenset_the_same_way_whatever_its_items():
    mixed = frozenset({3, "a", b"\x01", (1, 2), 10, None})
    assert codec.loads(codec.dumps(mixed)) == mixed
    # the same set built in another order gives the same bytes (items of mixed types
    # cannot be sorted as themselves, so the codec orders them by their JSON text)
    again = frozenset(reversed([None, 10, (1, 2), b"\x01", "a", 3]))
    assert codec.dumps(again) == codec.dumps(mixed)
    items = json.loads(codec.dumps(mixed))["$frozenset"]
    assert [json.dumps(i, sort_keys=True, separators=(",", ":")) for i in items] == sorted(
        json.dumps(i, sort_keys=True, separators=(",", ":")) for i in items)
    assert codec.loads(codec.dumps(frozenset({2, 10, 1}))) == {1, 2, 10}


def test_codec_refuses_untrusted_types_and_pickles():
    with pytest.raises(DecodeError, match="trusted"):
        codec.loads(b'{"$dc": "os:PathLike", "fields": {}}')
    with pytest.raises(DecodeError, match="not a dataclass"):
        codec.loads(b'{"$dc": "secagg.rng:Csprng", "fields": {}}')
    with pytest.raises(UsageError, match="cannot send"):
        codec.dumps(object())
    with pytest.raises(DecodeError):
        codec.loads(b"\x80\x04K\x01.")  # a pickle is not JSON


def test_frames_travel_verbatim_and_malformed_records_are_refused():
    frames = [b"SG\x01abc", b"", bytes(range(256)) * 100]
    content = _copy(Message(records.make_content({"op": "round"}, frames), dst_node_id=5,
                            message_type="train")).content
    assert records.frames_of(content) == frames
    bad = records.make_content({"op": "round"}, [b"x"])
    bad[records.FRAMES_RECORD]["7"] = bad[records.FRAMES_RECORD].pop("0")
    with pytest.raises(DecodeError, match="0..k-1"):
        records.frames_of(bad)


# -- deployment mode, every protocol --------------------------------------------------------
@pytest.mark.parametrize("name", ALL)
def test_every_protocol_matches_the_simulator_over_flower_messages(name):
    n, dim, seed = 4, 12, 11
    rc = _run_config(protocol=name, num_clients=n, dim=dim, rounds=2, seed=seed)
    # Node 1000+i holds partition n-1-i: client u must be the node with partition-id u.
    grid = FakeGrid(client_app.app, [{"partition-id": n - 1 - i} for i in range(n)], rc)
    outcomes = server_app.run_rounds(grid, rc)
    spec = protocols.get(name)
    inputs = [settings.synthetic_input(u, dim, 0) for u in range(n)]
    for r, got in enumerate(outcomes):
        root = settings.round_root(seed, r)
        cfg = spec.make_config(n, dim, round_id=r, session=root.spawn("session").bytes(16))
        want = run_round(spec, cfg, inputs, root, measure_memory=False)
        assert got.error is None and got.dropped == {}
        assert got.result.contributors == want.result.contributors == tuple(range(n))
        if spec.exact:
            np.testing.assert_array_equal(got.result.int_sum, want.result.int_sum)
        np.testing.assert_allclose(got.result.sum, want.result.sum, atol=1e-9)
        assert all(b > 0 for b in got.up) and all(b > 0 for b in got.down)
    # Only wire frames and the setup ever went to a node; never an input.
    for _, msg in grid.sent:
        assert set(msg.content.keys()) == {records.CONFIG_RECORD, records.FRAMES_RECORD}


def test_the_state_is_wiped_when_the_core_is_done():
    rc = _run_config(protocol="secagg", num_clients=3, dim=5, rounds=1, seed=1)
    grid = FakeGrid(client_app.app, [{"partition-id": i} for i in range(3)], rc)
    server_app.run_rounds(grid, rc)
    for ctx in grid.contexts.values():
        assert set(ctx.state.keys()) == {client_app.STATE}
        assert dict(ctx.state.config_records[client_app.STATE]) == {"round": 0, "done": True}


def test_a_production_node_refuses_seeded_randomness_and_job_files():
    rc = _run_config(protocol="plaintext", num_clients=3, dim=4, rounds=1, seed=2)
    nodes = [{"partition-id": 0}, {"partition-id": 1, client_app.LOOPBACK: False},
             {"partition-id": 2}]
    [out] = server_app.run_rounds(FakeGrid(client_app.app, nodes, rc), rc)
    assert out.result.contributors == (0, 2) and "loopback" in out.dropped[1]
    # (two clients: no protocol accepts a cohort of one)
    rc = _run_config(protocol="plaintext", num_clients=2, dim=4, rounds=1, job_dir="/nonexistent")
    grid = FakeGrid(client_app.app, [{client_app.LOOPBACK: False}] * 2, rc)
    [out] = server_app.run_rounds(grid, rc)
    assert out.result is None and "loopback" in out.dropped[0]


def test_a_pinned_node_refuses_another_protocol_and_counts_as_dropped():
    rc = _run_config(protocol="plaintext", num_clients=3, dim=4, rounds=1, seed=2)
    nodes = [{"partition-id": 0}, {"partition-id": 1, "secagg-protocol": "secagg+"},
             {"partition-id": 2}]
    [out] = server_app.run_rounds(FakeGrid(client_app.app, nodes, rc), rc)
    assert out.result.contributors == (0, 2)
    assert "pinned" in out.dropped[1]


# -- dropouts surfaced by Flower ------------------------------------------------------------
@pytest.mark.parametrize("name", ["secagg", "secagg+", "plaintext"])
def test_error_replies_are_dropouts_exactly_as_in_the_simulator(tmp_path, name):
    spec, n, dim = protocols.get(name), 7, 9
    stages = len(spec.client_stages(spec.make_config(n, dim)))
    drop_at = {1: 0, 4: stages - 1} if stages > 1 else {1: 0, 4: 0}
    cfg = spec.make_config(n, dim, session=b"s" * 16)
    inputs, weights = _inputs(n, dim), [1.0] * n
    with _engine(tmp_path, n) as eng:
        got = eng.run_round(spec, cfg, inputs, weights, Csprng.from_seed(5), drop_at=drop_at)
    want = run_round(spec, cfg, inputs, Csprng.from_seed(5).spawn("round"), weights=weights,
                     drop_at=drop_at, measure_memory=False)
    assert got.error is None and got.result.contributors == want.result.contributors
    np.testing.assert_array_equal(got.result.int_sum, want.result.int_sum)
    assert got.dropped == 2


def test_planned_dropouts_match_the_simulation_engine(tmp_path):
    spec, n, dim = protocols.get("secagg+"), 8, 6
    cfg = spec.make_config(n, dim, session=b"p" * 16)
    inputs, weights = _inputs(n, dim, "planned"), [0.5] * n
    with _engine(tmp_path, n, dropout=0.25) as eng:
        got = eng.run_round(spec, cfg, inputs, weights, Csprng.from_seed(9))
    _same(got, SimulationEngine(dropout=0.25).run_round(spec, cfg, inputs, weights,
                                                        Csprng.from_seed(9)))


def test_distributed_dp_matches_the_simulation_engine_and_reports_its_event(tmp_path):
    from secagg.dp import DistributedDiscreteGaussian
    from secagg.encoding import EncodingConfig

    spec, n, dim = protocols.get("secagg+"), 6, 8
    sens = EncodingConfig(max_clients=n).l2_sensitivity(dim)
    cfg = spec.make_config(n, dim, session=b"d" * 16,
                           client_noise=DistributedDiscreteGaussian(1.0, sens, n))
    inputs, weights = _inputs(n, dim, "dist"), [1.0] * n
    with _engine(tmp_path, n) as eng:
        got = eng.run_round(spec, cfg, inputs, weights, Csprng.from_seed(5), drop_at={2: 2})
    want = run_round(spec, cfg, inputs, Csprng.from_seed(5).spawn("round"), weights=weights,
                     drop_at={2: 2}, measure_memory=False)
    # the clients' noise is in both sums, identically
    assert got.result.contributors == want.result.contributors == (0, 1, 3, 4, 5)
    np.testing.assert_array_equal(got.result.int_sum, want.result.int_sum)
    assert got.result.dp_event == want.result.dp_event is not None
    assert got.result.dp_event.noise_multiplier == pytest.approx((5 / 6) ** 0.5)


def test_a_silent_node_times_out_and_the_core_closes_the_stage(tmp_path):
    spec, n, dim = protocols.get("secagg"), 5, 4
    cfg = spec.make_config(n, dim, session=b"t" * 16)
    inputs = _inputs(n, dim, "silent")
    t0 = time.monotonic()
    with _engine(tmp_path, n, stage_timeout=0.5, silent={1003}) as eng:
        got = eng.run_round(spec, cfg, inputs, [1.0] * n, Csprng.from_seed(3))
    assert time.monotonic() - t0 < 300  # liveness (no hang), not speed: the bound is loose
    want = run_round(spec, cfg, inputs, Csprng.from_seed(3).spawn("round"), drop_at={3: 0},
                     measure_memory=False)
    assert got.result.contributors == want.result.contributors == (0, 1, 2, 4)
    np.testing.assert_array_equal(got.result.int_sum, want.result.int_sum)


def test_a_node_cannot_speak_for_another_client(tmp_path):
    spec, n = protocols.get("plaintext"), 3

    def impersonate(nid, reply):
        if nid != 1002 or reply.has_error():
            return reply
        frames = []
        for f in records.frames_of(reply.content):
            m = wire.decode(f)
            frames.append(wire.encode(dataclasses.replace(m, sender=0)))
        reply.content[records.FRAMES_RECORD] = records.frames_record(frames)
        return reply

    with _engine(tmp_path, n, tamper=impersonate) as eng:
        got = eng.run_round(spec, spec.make_config(n, 3), _inputs(n, 3), [1.0] * n,
                            Csprng.from_seed(4))
    assert got.result.contributors == (0, 1)
    assert got.dropped == 1


# -- central DP through the engine ----------------------------------------------------------
class _PlusOne(NoiseHook):
    """A stand-in noise hook with state in the engine's process (like a privacy ledger)."""

    def __init__(self, refuse=False):
        self.calls, self.refuse = 0, refuse

    def add_noise(self, int_sum, rng):
        self.calls += 1
        if self.refuse:
            raise BudgetExceededError("budget spent")
        return int_sum + 1, ("event", self.calls)


@pytest.mark.parametrize("name", ["secagg+", "plaintext", "ckks"])
def test_central_noise_travels_to_the_decoding_party_and_its_event_comes_back(tmp_path, name):
    from fl.privacy.rounds import CentralDPHook
    from secagg.dp import CentralDiscreteGaussian

    spec, n, dim = protocols.get(name), 4, 5
    mechanism = CentralDiscreteGaussian(2.0, 3.0)
    cfg = spec.make_config(n, dim, session=b"n" * 16, noise=CentralDPHook(mechanism))
    inputs = _inputs(n, dim, "dp")
    with _engine(tmp_path, n) as eng:
        got = eng.run_round(spec, cfg, inputs, [1.0] * n, Csprng.from_seed(8))
    # the same release as the simulator's: the decoding party draws the noise from its own
    # generator, once (the engine-side hook is never called), and reports its event
    want = SimulationEngine().run_round(
        spec, dataclasses.replace(cfg, noise=CentralDPHook(mechanism)), inputs, [1.0] * n,
        Csprng.from_seed(8))
    plain = run_round(spec, dataclasses.replace(cfg, noise=None), inputs,
                      Csprng.from_seed(8).spawn("round"), measure_memory=False)
    assert not cfg.noise.used
    assert got.result.dp_event == want.result.dp_event == mechanism.event()
    if not spec.exact:  # ckks: approximate sums, encrypted with TenSEAL's own randomness
        return
    np.testing.assert_array_equal(got.result.int_sum, want.result.int_sum)
    assert np.any(got.result.int_sum != plain.result.int_sum)  # noised once, not twice
    np.testing.assert_array_less(np.abs(got.result.int_sum - plain.result.int_sum), 60)


def test_a_noise_hook_that_cannot_travel_is_refused_before_the_round(tmp_path):
    spec, n = protocols.get("plaintext"), 3
    hook = _PlusOne(refuse=True)
    cfg = spec.make_config(n, 4, noise=hook)
    started = []

    def factory(*args):
        started.append(args)
        raise AssertionError("no deployment may start for a round that cannot run")

    eng = FlowerEngine(session_factory=factory)
    with pytest.raises(ConfigError, match=r"cannot ship a _PlusOne.*CentralDPHook") as info:
        eng.run_round(spec, cfg, _inputs(n, 4), [1.0] * n, Csprng.from_seed(1))
    assert "\n" not in str(info.value) and hook.calls == 0 and started == []


def test_the_engine_is_registered_and_the_app_names_its_components(tmp_path):
    engine = make_engine("flower", dropout=0.1)
    assert isinstance(engine, FlowerEngine)
    assert engine.trains_on_nodes  # secagg run --engine flower: clients train on their nodes
    text = (write_app(tmp_path / "app") / "pyproject.toml").read_text()
    assert "fl.flower.server_app:app" in text and "fl.flower.client_app:app" in text
    assert all(f'"{k}"' in text or f"{k} =" in text for k in settings.RUN_CONFIG)


# -- a real deployment ------------------------------------------------------------------------
def _alive(pid):
    try:
        os.kill(pid, 0)
        return "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()
    except (ProcessLookupError, FileNotFoundError):
        return False


def test_a_real_loopback_deployment_gives_the_simulators_aggregate():
    """SuperLink + 3 SuperNodes on 127.0.0.1, 2 rounds of secagg+, bit-identical to the
    simulator for the same seeds; every process is gone afterwards."""
    spec, n, dim = protocols.get("secagg+"), 3, 24
    engine = FlowerEngine(stage_timeout=60.0, startup_timeout=90.0)
    pids: list[int] = []
    try:
        for r in range(2):
            cfg = spec.make_config(n, dim, round_id=r, session=bytes([r + 1]) * 16)
            inputs, weights = _inputs(n, dim, f"real/{r}"), [1.0, 0.5, 0.25]
            got = engine.run_round(spec, cfg, inputs, weights, Csprng.from_seed(100 + r))
            want = SimulationEngine().run_round(spec, cfg, inputs, weights,
                                                Csprng.from_seed(100 + r))
            _same(got, want)
            assert got.result.contributors == (0, 1, 2)
            assert got.cost.upload_bytes_per_client > 0
            pids = engine.session.deployment.pids()
            assert len(pids) >= 1 + n  # the SuperLink, the SuperNodes, their helpers
        workdir = engine.session.deployment.workdir
    finally:
        engine.close()
    deadline = time.monotonic() + 15
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(p) for p in pids)
    assert not workdir.exists()


@pytest.mark.skipif(not os.environ.get("SECAGG_FLOWER_FULL"),
                    reason="about a minute more; set SECAGG_FLOWER_FULL=1 to also run the "
                           "app in deployment mode (flwr run + node-config inputs)")
def test_deployment_mode_on_a_real_loopback_deployment(tmp_path):
    """``flwr run`` of the app as a user would (run config + node config, synthetic inputs):
    each round equals the simulator's round for the same seed."""
    n, dim, seed = 3, 10, 21
    with LocalDeployment(n) as dep:
        dep.run({"protocol": "plaintext", "num-clients": n, "dim": dim, "rounds": 2,
                 "seed": seed, "result-dir": str(tmp_path)}, timeout=300)
    spec = protocols.get("plaintext")
    inputs = [settings.synthetic_input(u, dim, 0) for u in range(n)]
    for r in range(2):
        doc, arrays = jobs.read_result(tmp_path / f"round-{r}")
        cfg = codec.from_jsonable(doc["config"])
        want = run_round(spec, cfg, inputs, settings.round_root(seed, r), measure_memory=False)
        assert doc["error"] is None and tuple(doc["contributors"]) == want.result.contributors
        np.testing.assert_array_equal(arrays["int-sum"], want.result.int_sum)


# -- the workflow and the mod around a real train function, in process ---------------------
def _example_grid(n):
    from fl.flower.example import client_app as example

    return FakeGrid(example.app, [{"partition-id": i, "num-partitions": n} for i in range(n)],
                    {"local-epochs": 2, "lr": 0.5})


def _central_eval():
    from flwr.app import MetricRecord

    from fl.flower.example import task

    test = task.test_set()

    def evaluate_fn(server_round, arrays):
        net = task.make_net()
        net.load_state_dict(arrays.to_torch_state_dict())
        m = task.evaluate(net, test)
        return MetricRecord({"accuracy": m["accuracy"], "loss": m["loss"]})

    return evaluate_fn


@pytest.mark.parametrize("name,dp_mode", [("secagg+", "central"), ("secagg", "distributed"),
                                          ("plaintext", None)])
def test_the_workflow_trains_the_users_model_with_dp_and_writes_the_report(tmp_path, name,
                                                                          dp_mode):
    pytest.importorskip("torch")
    from flwr.app import ArrayRecord
    from flwr.serverapp.strategy import FedAvg

    from fl.flower.example import task
    from fl.flower.workflow import DPOptions, SecAggWorkflow
    from fl.training.report import REPORT_FILES

    n = 3
    grid = _example_grid(n)
    dp = None if dp_mode is None else DPOptions(mode=dp_mode, noise_multiplier=0.3)
    wf = SecAggWorkflow(name, clip=1.0, max_weight=200, dp=dp, result_dir=str(tmp_path),
                        log=lambda s: None)
    strategy = FedAvg(fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=n,
                      min_available_nodes=n)
    res = wf(grid, strategy, ArrayRecord(task.make_net().state_dict()), num_rounds=3,
             evaluate_fn=_central_eval())
    hist = res.run.history
    assert [r.contributors for r in hist] == [3, 3, 3] and res.run.failed_rounds == 0
    assert res.run.final_accuracy > res.run.initial_accuracy + 0.1
    if dp is None:
        assert res.run.epsilon is None
    else:
        eps = [r.epsilon for r in hist]
        assert all(e is not None for e in eps) and eps == sorted(eps) and eps[0] > 0
    assert sorted(os.listdir(tmp_path)) == sorted(REPORT_FILES)
    doc = __import__("json").loads((tmp_path / "metrics.json").read_text())
    assert doc["engine"] == "flower" and doc["rounds"] == 3
    # The nodes got the global model and the protocol's frames; they sent back frames only.
    for _, msg in grid.sent:
        assert set(msg.content.keys()) <= {records.CONFIG_RECORD, records.FRAMES_RECORD,
                                           "arrays", "config"}
    for reply in grid.replies.values():
        assert set(reply.content.keys()) <= {records.CONFIG_RECORD, records.FRAMES_RECORD}


def test_the_workflow_refuses_a_run_over_budget_before_sending_anything():
    pytest.importorskip("torch")
    from flwr.app import ArrayRecord
    from flwr.serverapp.strategy import FedAvg

    from fl.flower.example import task
    from fl.flower.workflow import DPOptions, SecAggWorkflow

    grid = _example_grid(3)
    wf = SecAggWorkflow("secagg+", dp=DPOptions(epsilon=1.0, noise_multiplier=0.3),
                        log=lambda s: None)
    with pytest.raises(BudgetExceededError, match="fit"):
        wf(grid, FedAvg(min_train_nodes=3, min_available_nodes=3),
           ArrayRecord(task.make_net().state_dict()), num_rounds=3)
    assert grid.sent == []


def test_the_mod_keeps_a_snapshot_not_a_replay_log_between_messages():
    rc = _run_config(protocol="secagg+", num_clients=3, dim=6, rounds=1, seed=4)
    grid = FakeGrid(client_app.app, [{"partition-id": i} for i in range(3)], rc)
    seen = []
    original = grid.push_messages

    def spy(messages):
        ids = original(messages)
        for ctx in grid.contexts.values():
            seen.append(set(ctx.state.keys()))
        return ids

    grid.push_messages = spy
    [out] = server_app.run_rounds(grid, rc)
    assert out.result.contributors == (0, 1, 2)
    mid = [s for s in seen if client_app.CORE in s]
    assert mid, "no core snapshot was kept between messages"
    assert all(client_app.LOG not in s and client_app.INPUT not in s for s in seen)


def test_the_clientapp_import_loads_no_heavy_library():
    import subprocess
    import sys

    code = ("import sys, fl.flower.client_app; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'torch', 'matplotlib', 'scipy', 'sklearn'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
    code = "import sys, fl.flower.client_app; print('fl.engines.simulation' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert out.stdout.strip() == "False"


def test_an_abandoned_round_is_wiped_once_its_deadline_passes():
    """A ServerApp that dies mid-round: the node's next message after the round's deadline
    finds the round's secrets gone."""
    spec, n = protocols.get("secagg"), 3
    cfg = spec.make_config(n, 4, session=b"a" * 16)
    rc = _run_config(protocol="secagg", num_clients=n, dim=4, seed=3)
    grid = FakeGrid(client_app.app, [{"partition-id": i} for i in range(n)], rc)
    first = [m for m in spec.server(cfg, Csprng.from_seed(1)).start() if m.recipient == 0]
    fields = {"op": records.OP_ROUND, "round": 0, "protocol": "secagg", "client-id": 0,
              "config": codec.dumps(cfg), "round-ttl": 0.2}
    grid.push_messages([Message(records.make_content(fields, [wire.encode(m) for m in first]),
                                dst_node_id=1000, message_type="train")])
    [reply] = grid.replies.values()
    assert not reply.has_error() and records.frames_of(reply.content)
    assert client_app.CORE in grid.contexts[1000].state  # the round is in progress
    time.sleep(0.3)
    hello = Message(records.make_content({"op": records.OP_HELLO, "round": -1}),
                    dst_node_id=1000, message_type="train")
    grid.push_messages([hello])
    state = grid.contexts[1000].state
    assert set(state.keys()) == {client_app.STATE}
    assert dict(state.config_records[client_app.STATE])["expired"] is True


# -- secagg run --engine flower and secagg bench --deployment: their plumbing ---------------
def test_engine_flower_maps_the_run_onto_the_example_app_and_refuses_what_it_cannot_do():
    from fl.flower.example.server_app import RUN_CONFIG as EXAMPLE
    from fl.flower.training import run_config_of
    from fl.training.config import RunConfig

    cfg = RunConfig(protocol="secagg", clients=4, rounds=2, engine="flower", epsilon=5.0)
    rc = run_config_of(cfg, "/tmp/r")
    assert set(rc) <= set(EXAMPLE)  # flwr run refuses keys the app does not declare
    assert rc["protocol"] == "secagg" and rc["min-nodes"] == 4 and rc["epsilon"] == 5.0
    for bad, what in ((dict(dropout=0.1), "dropout"), (dict(split="dirichlet"), "split"),
                      (dict(seed=3), "seed"), (dict(cohort=2), "cohort")):
        with pytest.raises(ConfigError, match=what):
            run_config_of(dataclasses.replace(cfg, **bad), "/tmp/r")


def test_the_deployment_bench_reads_round_marks_and_writes_its_files(tmp_path):
    from bench.deployment import FEDAVG, FLOWER, parse_marks, summarise, write_outputs

    log = ("noise\n[bench] start 10.0\n[bench] round 1 end 13.0\nx [bench] round 2 end 15.5\n"
           "[bench] round 3 end 17.0\n")
    assert parse_marks(log) == [3.0, 2.5, 1.5]
    with pytest.raises(ConfigError, match="start"):
        parse_marks("[bench] round 1 end 3.0")
    dep = summarise(3, {FEDAVG: [1.0, 2.0, 3.0], FLOWER: [4.0, 4.0, 5.0],
                        "secagg+": parse_marks(log)})
    assert dep["round_seconds"] == {"secagg+": 2.5}
    assert dep["flower_secaggplus_round_seconds"] == 4.0 and dep["fedavg_round_seconds"] == 2.0
    assert dep["ratios"]["secagg+"] == {"vs_flower_secaggplus": 2.5 / 4.0, "vs_fedavg": 1.25}
    files = write_outputs({"deployment": dep}, tmp_path)
    assert [f.name for f in files] == ["deployment.json", "deployment.csv", "deployment.png"]
    rows = (tmp_path / "deployment.csv").read_text().splitlines()
    assert rows[0].startswith("job,clients,median_round_seconds") and len(rows) == 4


def test_a_core_that_cannot_be_snapshotted_is_replayed_and_gives_the_same_round(monkeypatch):
    monkeypatch.setattr(client_app.state, "snapshot", lambda core: None)
    n, dim, seed = 4, 7, 12
    rc = _run_config(protocol="secagg+", num_clients=n, dim=dim, rounds=1, seed=seed)
    grid = FakeGrid(client_app.app, [{"partition-id": i} for i in range(n)], rc)
    [got] = server_app.run_rounds(grid, rc)
    spec = protocols.get("secagg+")
    root = settings.round_root(seed, 0)
    cfg = spec.make_config(n, dim, round_id=0, session=root.spawn("session").bytes(16))
    want = run_round(spec, cfg, [settings.synthetic_input(u, dim, 0) for u in range(n)], root,
                     measure_memory=False)
    np.testing.assert_array_equal(got.result.int_sum, want.result.int_sum)
