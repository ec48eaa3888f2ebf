"""Clients enrolled out of band over Flower: the enrolled two-exchange mode, the ``-active``
variants and HE, with each node's key file and registry from its own node config.

The nodes are the example ClientApp in this process (:class:`test_flower.FakeGrid`: every
message and Context goes through Flower's protobuf serialisation, as between processes).
"""

from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np
import pytest

pytest.importorskip("flwr", reason="flwr is not installed: the Flower adapter cannot run")
pytest.importorskip("torch")

from flwr.app import ArrayRecord, Context, RecordDict
from flwr.serverapp.strategy import FedAvg
from test_flower import FakeGrid, _central_eval, _task_identity  # noqa: F401 (fixture)

import protocols
from fl.flower import enrolment, records
from fl.flower.example import client_app as example
from fl.flower.example import task
from fl.flower.workflow import DPOptions, SecAggWorkflow
from protocols.base import SERVER, header
from protocols.secagg.enrolled_keys import enroll_clients
from protocols.secagg.enrolled_messages import UploadRequest
from secagg.errors import ConfigError, PolicyError, ProtocolError
from secagg.rng import Csprng


def _enrol(folder, n):
    registry, identities = enroll_clients(n, Csprng())
    for u, ident in identities.items():
        ident.save(folder / f"client-{u}.key")
    registry.save(folder / "registry.json")
    return folder / "registry.json"


def _grid(folder, n, key_of=lambda i: i, registry=None):
    """Node i holds partition i and client ``key_of(i)``'s key file."""
    reg = registry or folder / "registry.json"
    configs = [{"partition-id": i, "num-partitions": n,
                enrolment.KEY_FILE: str(folder / f"client-{key_of(i)}.key"),
                enrolment.REGISTRY: str(reg)} for i in range(n)]
    return FakeGrid(example.app, configs, {"local-epochs": 2, "lr": 0.5})


def _strategy(n):
    return FedAvg(fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=n,
                  min_available_nodes=n)


def _round_messages(grid):
    """Protocol messages each node got (hellos left out)."""
    return Counter(nid for nid, m in grid.sent
                   if m.content.config_records[records.CONFIG_RECORD].get("op")
                   == records.OP_ROUND)


#: protocol -> client messages per round (the enrolled mode: 2, 3 with the consistency
#: exchange; per-round setup: 4, 5 active; HE: one upload).
EXCHANGES = {"secagg+:enrolled": 2, "secagg:enrolled": 2, "secagg+:enrolled-active": 3,
             "secagg+-active": 5, "secagg-active": 5, "ckks": 1, "paillier": 1}


@pytest.mark.parametrize("name,mode", [(name, "central") for name in sorted(EXCHANGES)]
                         + [("secagg+:enrolled", "distributed")])
def test_enrolled_nodes_train_the_model_with_dp_in_the_protocols_exchanges(tmp_path, name,
                                                                           mode):
    n, rounds = 3, 2
    _enrol(tmp_path, n)
    # node i holds client (n-1-i)'s key: the workflow routes by key file, not by node order
    grid = _grid(tmp_path, n, key_of=lambda i: n - 1 - i)
    wf = SecAggWorkflow(name, clip=1.0, max_weight=200,
                        dp=DPOptions(mode=mode, noise_multiplier=0.3),
                        registry=str(tmp_path / "registry.json"), log=lambda s: None)
    res = wf(grid, _strategy(n), ArrayRecord(task.make_net().state_dict()),
             num_rounds=rounds, evaluate_fn=_central_eval())
    hist = res.run.history
    assert [(r.contributors, r.error) for r in hist] == [(n, None)] * rounds
    assert res.run.final_accuracy > res.run.initial_accuracy + 0.1
    assert all(r.epsilon is not None and r.epsilon > 0 for r in hist)
    assert set(_round_messages(grid).values()) == {EXCHANGES[name] * rounds}
    # each node was client (n-1-i) in every round
    for out in res.outcomes:
        assert out.result is not None and out.result.contributors == tuple(range(n))


def test_a_registry_larger_than_the_nodes_leaves_the_others_absent(tmp_path):
    _enrol(tmp_path, 5)  # 5 enrolled, 4 nodes: client 4 has no node
    grid = _grid(tmp_path, 4)
    wf = SecAggWorkflow("secagg+:enrolled", registry=str(tmp_path / "registry.json"),
                        log=lambda s: None)
    res = wf(grid, _strategy(4), ArrayRecord(task.make_net().state_dict()), num_rounds=1)
    [out] = res.outcomes
    assert out.error is None and out.result.contributors == (0, 1, 2, 3)
    assert out.absent == (4,) and out.dropped == {}
    assert res.run.history[0].dropped == 0


@pytest.mark.parametrize("name", ["secagg+-active", "secagg:enrolled", "ckks", "paillier"])
def test_a_protocol_that_authenticates_clients_needs_a_registry_up_front(name):
    with pytest.raises(ConfigError, match="secagg enroll"):
        SecAggWorkflow(name, log=lambda s: None)


def test_a_registry_for_a_protocol_without_one_is_refused(tmp_path):
    _enrol(tmp_path, 3)
    with pytest.raises(ConfigError, match="takes no client registry"):
        SecAggWorkflow("plaintext", registry=str(tmp_path / "registry.json"))


def test_nodes_refuse_a_registry_the_server_substituted(tmp_path):
    n = 3
    (tmp_path / "real").mkdir()
    (tmp_path / "fake").mkdir()
    _enrol(tmp_path / "real", n)
    _enrol(tmp_path / "fake", n)
    # The server's registry lists other keys (its own sybils) under the same ids.
    grid = _grid(tmp_path / "real", n)
    wf = SecAggWorkflow("secagg+:enrolled", registry=str(tmp_path / "fake" / "registry.json"),
                        log=lambda s: None)
    res = wf(grid, _strategy(n), ArrayRecord(task.make_net().state_dict()), num_rounds=1)
    [out] = res.outcomes
    assert out.result is None and res.run.history[0].contributors == 0
    assert len(out.dropped) == n
    assert all("PolicyError" in why and "registry" in why for why in out.dropped.values())


def test_a_node_without_its_enrolment_files_is_told_what_to_configure(tmp_path):
    _enrol(tmp_path, 3)
    protocol_config = protocols.get("secagg+").make_config(
        3, 4, enrolled=True, registry=_load(tmp_path))
    with pytest.raises(ConfigError, match="secagg-key-file"):
        enrolment.node_credentials("secagg+", protocol_config, 0,
                                   {enrolment.REGISTRY: str(tmp_path / "registry.json")}, 1)
    with pytest.raises(ConfigError, match="secagg-registry"):
        enrolment.node_credentials("secagg+", protocol_config, 0,
                                   {enrolment.KEY_FILE: str(tmp_path / "client-0.key")}, 1)


def _load(folder):
    from protocols.secagg.enrolled_keys import EnrolledRegistry

    return EnrolledRegistry.load(folder / "registry.json")


def _node_config(folder, client):
    """The node config of the node that plays ``client`` from ``secagg enroll``'s files."""
    return {enrolment.KEY_FILE: str(folder / f"client-{client}.key"),
            enrolment.REGISTRY: str(folder / "registry.json"),
            enrolment.STATE_DIR: str(folder / "state")}


def test_a_node_addressed_as_another_client_refuses(tmp_path):
    _enrol(tmp_path, 3)
    cfg = protocols.get("secagg+").make_config(3, 4, enrolled=True, registry=_load(tmp_path))
    node = _node_config(tmp_path, 1)
    with pytest.raises(PolicyError, match="client 1's"):
        enrolment.node_credentials("secagg+", cfg, 2, node, 1)
    config, creds = enrolment.node_credentials("secagg+", cfg, 1, node, 1)
    assert creds["identity"].client_id == 1 and config.registry == cfg.registry


def test_the_enrolled_answer_memory_outlives_the_clientapp_process(tmp_path):
    """Two fresh cores of one node (two ClientApp processes) never both answer an upload
    request of one (session, round): the memory is in the node's state folder."""
    _enrol(tmp_path, 3)
    spec = protocols.get("secagg+")
    cfg = spec.make_config(3, 4, enrolled=True, registry=_load(tmp_path))
    node = _node_config(tmp_path, 0)
    request = UploadRequest(**header(cfg, SERVER, 0), cohort=(0, 1, 2))
    cores = []
    for _ in range(2):
        config, creds = enrolment.node_credentials("secagg+", cfg, 0, node, 1)
        core = spec.client(config, 0, Csprng(), **creds)
        core.set_input(np.zeros(4))
        cores.append(core)
    assert len(cores[0].receive(request)) == 1
    with pytest.raises(ProtocolError, match="replay"):
        cores[1].receive(request)


def test_the_hello_names_the_key_files_client(tmp_path):
    _enrol(tmp_path, 3)
    ctx = Context(7, 1000, {enrolment.KEY_FILE: str(tmp_path / "client-2.key")}, RecordDict(),
                  {})
    assert enrolment.enrolled_id(ctx.node_config) == 2
    assert enrolment.enrolled_id({}) == -1
    bad = tmp_path / "bad.key"
    bad.write_text("{}")
    with pytest.raises(ConfigError, match="secagg-key-file"):
        enrolment.enrolled_id({enrolment.KEY_FILE: str(bad)})


def test_the_snapshot_carries_an_enrolled_core_between_messages(tmp_path):
    """The enrolled client is snapshotted (not replayed: a replayed upload would be refused
    by the answer memory)."""
    from fl.flower import state

    _enrol(tmp_path, 3)
    spec = protocols.get("secagg+")
    cfg = spec.make_config(3, 4, enrolled=True, registry=_load(tmp_path))
    node = _node_config(tmp_path, 0)
    config, creds = enrolment.node_credentials("secagg+", cfg, 0, node, 1)
    core = spec.client(config, 0, Csprng(), **creds)
    core.set_input(np.zeros(4))
    core.receive(UploadRequest(**header(cfg, SERVER, 0), cohort=(0, 1, 2)))
    snap = state.snapshot(core)
    assert snap is not None
    config, creds = enrolment.node_credentials("secagg+", cfg, 0, node, 1)
    fresh = state.restore(spec.client(config, 0, Csprng(), **creds), *snap)
    assert fresh.state == core.state and fresh._seeds == core._seeds
    assert dataclasses.asdict(fresh.config) == dataclasses.asdict(core.config)


def test_secagg_run_engine_flower_takes_the_enrolled_mode_and_refuses_it_where_none_exists():
    from fl.flower.example.server_app import RUN_CONFIG as EXAMPLE
    from fl.flower.training import run_config_of
    from fl.training.config import RunConfig
    from fl.training.loop import plan_run

    cfg = RunConfig(protocol="secagg+", clients=3, rounds=1, engine="flower", enrolled=True)
    rc = run_config_of(cfg, "/tmp/r", "/tmp/e/registry.json")
    assert set(rc) <= set(EXAMPLE)  # flwr run refuses keys the app does not declare
    assert rc["protocol"] == "secagg+:enrolled" and rc["registry"] == "/tmp/e/registry.json"
    with pytest.raises(ConfigError, match="enrolled mode"):
        plan_run(dataclasses.replace(cfg, protocol="ckks"))


@pytest.mark.parametrize("name,needs", [("secagg+", False), ("plaintext", False),
                                        ("ckks", True), ("paillier", True)])
def test_needs_enrolment_asks_the_protocols_own_provisioning(name, needs):
    spec = protocols.get(name)
    assert enrolment.needs_enrolment(spec) is needs
    if "enrolled" in spec.keywords:
        assert enrolment.needs_enrolment(spec, enrolled=True)
        assert enrolment.needs_enrolment(spec, active=True)


@pytest.mark.parametrize("after", [0, 1])
def test_an_enrolled_node_that_dies_is_recovered_at_either_exchange(tmp_path, after):
    """Node 1 goes silent after answering ``after`` protocol messages of round 1 (0: it never
    uploads, so the others' sum is released; 1: it uploaded, then never unmasks, so its
    self mask is rebuilt from its neighbours' shares and its update counts). Either way the
    round completes by dropout recovery, and the node is back for round 2."""
    n = 4
    _enrol(tmp_path, n)
    answered = Counter()

    def tamper(nid, reply):
        answered[nid] += 1  # its hello, then its protocol messages
        if nid == 1001 and answered[nid] > after and 1001 not in grid.revived:
            grid.silent.add(1001)
        return reply

    grid = _grid(tmp_path, n)
    grid.tamper, grid.revived = tamper, set()
    wf = SecAggWorkflow("secagg+:enrolled", registry=str(tmp_path / "registry.json"),
                        stage_timeout=6.0, log=lambda s: None)  # round-ttl: 5x that
    def evaluate(r, arrays):
        if r == 1:  # bring node 1 back for round 2
            grid.silent.discard(1001)
            grid.revived.add(1001)
        return None

    res = wf(grid, _strategy(n), ArrayRecord(task.make_net().state_dict()), num_rounds=2,
             evaluate_fn=evaluate)
    first, second = res.outcomes
    assert first.error is None
    assert first.result.contributors == ((0, 2, 3) if after == 0 else (0, 1, 2, 3))
    assert set(first.dropped) == {1} and "timeout" in first.dropped[1]
    assert second.error is None and second.result.contributors == (0, 1, 2, 3)


@pytest.mark.parametrize("dp_noised", [False, True])
def test_secagg_run_engine_flower_reads_back_the_report_rows_it_wrote(dp_noised):
    """``secagg run --engine flower`` rebuilds the history from the ServerApp's metrics.json,
    whose train metrics are renamed ``*_dp_noised`` under DP."""
    from fl.training.config import RoundRecord

    rec = RoundRecord(2, 3, 3, 0, 0.9, 0.3, 0.4, 0.8, 1.5, 12.0, 0.1, 0.2, 100, 200,
                      train_noise_std=0.05)
    row = rec.to_json(dp_noised=dp_noised)
    assert ("train_loss_dp_noised" in row) is dp_noised
    assert RoundRecord.from_json({**row, "unknown": 1}) == rec
    with pytest.raises(ConfigError, match="round record"):
        RoundRecord.from_json({"round": 1})


@pytest.mark.parametrize("planned_dropout,released", [(0.0, False), (0.34, True)])
def test_he_rounds_release_only_over_the_planned_survivors(tmp_path, planned_dropout,
                                                            released):
    """ckks: node 1 answers its hello, then goes silent. With no dropout planned the
    round's min_clients is all 3 nodes and nothing is released; planning for a third to
    drop lets the other two's sum out."""
    n = 3
    _enrol(tmp_path, n)
    seen = Counter()

    def tamper(nid, reply):
        seen[nid] += 1
        if nid == 1001:
            grid.silent.add(1001)
        return reply

    grid = _grid(tmp_path, n)
    grid.tamper = tamper
    wf = SecAggWorkflow("ckks", registry=str(tmp_path / "registry.json"), stage_timeout=6.0,
                        planned_dropout=planned_dropout, log=lambda s: None)
    res = wf(grid, _strategy(n), ArrayRecord(task.make_net().state_dict()), num_rounds=1)
    [out] = res.outcomes
    assert set(out.dropped) == {1}
    if released:
        assert out.error is None and out.result.contributors == (0, 2)
    else:
        assert out.result is None and "min_clients" in (out.error or ""), out.error


def test_the_workflow_refuses_a_planned_dropout_outside_0_to_1():
    with pytest.raises(ConfigError, match="planned_dropout"):
        SecAggWorkflow("secagg+", planned_dropout=1.0)
