"""The example app on a real Flower deployment: SuperLink, 3 SuperNodes and ``flwr run``, as
separate processes on 127.0.0.1, started and stopped by PID.

One run of the example (secagg+, central DP, 3 rounds, each node training a torch model on
its own partition) with faults injected on the real engine: SuperNode 2 is SIGKILLed while
round 2 is in progress on it, and started again (same partition) before round 3. The round
completes by dropout recovery with the two survivors; the node that came back contributes
to round 3; held-out accuracy rises and epsilon is reported in the report folder.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest

pytest.importorskip("flwr", reason="flwr is not installed: the Flower adapter cannot run")
pytest.importorskip("torch", reason="the example app trains a torch model")

from fl.flower.deploy import LocalDeployment, example_app  # noqa: E402


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()
    except (ProcessLookupError, FileNotFoundError):
        return False


def _wait(predicate, timeout: float, what: str, proc=None) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the run ended while waiting for {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_example_trains_with_dp_and_survives_a_killed_and_restarted_node(tmp_path):
    report = tmp_path / "report"
    dep = LocalDeployment(3, app=example_app, startup_timeout=120.0)
    pids: list[int] = []
    try:
        dep.start()
        proc = dep.start_run({"num-server-rounds": 3, "noise-multiplier": 0.3,
                              "epsilon": 100.0, "stage-timeout": 150.0,
                              "result-dir": str(report)})
        run_log = lambda: dep.run_log_tail(400)  # noqa: E731
        _wait(lambda: "[secagg] round 1:" in run_log(), 400, "round 1", proc)
        starts = dep.log_tail("supernode-2", 100000).count("Start `flwr-clientapp` process")
        # round 2 has reached node 2 (it started a ClientApp for it): kill it mid-round
        _wait(lambda: dep.log_tail("supernode-2", 100000).count(
            "Start `flwr-clientapp` process") > starts, 300, "round 2 on node 2", proc)
        killed = dep.kill_node(2)
        assert not _alive(killed)
        _wait(lambda: "[secagg] round 2:" in run_log(), 400, "round 2", proc)
        dep.restart_node(2)
        proc.wait(timeout=600)
        text = run_log()
        assert proc.returncode == 0, text
        pids = dep.pids()
    finally:
        dep.stop()
    lines = re.findall(r"\[secagg\] round (\d): (\d+)/(\d+) contributed, dropped (\d+)", text)
    by_round = {int(r): (int(c), int(k), int(d)) for r, c, k, d in lines}
    assert set(by_round) == {1, 2, 3}, text
    assert by_round[1][0] == 3, text
    contributors, _, dropped = by_round[2]
    assert contributors == 2 and dropped >= 1  # dropout recovery on the real engine
    assert by_round[3][0] >= 3  # the restarted node is back (a stale entry may time out)
    doc = json.loads((report / "metrics.json").read_text())
    assert doc["final_accuracy"] > doc["initial_accuracy"] + 0.1
    assert doc["epsilon"] is not None and doc["epsilon"] > 0
    assert doc["failed_rounds"] == 0 and doc["engine"] == "flower"
    for name in ("metrics.csv", "accuracy.png", "epsilon.png"):
        assert (report / name).exists()
    deadline = time.monotonic() + 15
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(p) for p in pids)


def _serverapp_pids(dep: LocalDeployment) -> list[int]:
    out = []
    for pid in dep.pids():
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(part.endswith(b"flwr-serverapp") for part in cmd):
            out.append(pid)
    return out


def test_a_serverapp_that_dies_mid_round_leaves_the_nodes_serving(tmp_path):
    """SIGKILL the ServerApp while round 1 is on the nodes: the SuperNodes neither hang nor
    die, and the next run on them completes (the mod wipes an abandoned round once its
    deadline passes: tests/test_flower.py checks that part)."""
    dep = LocalDeployment(3, app=example_app, startup_timeout=120.0)
    try:
        dep.start()
        proc = dep.start_run({"num-server-rounds": 2, "dp": False, "stage-timeout": 150.0})
        _wait(lambda: all("Start `flwr-clientapp` process" in dep.log_tail(f"supernode-{i}",
                                                                           100000)
                          for i in range(3)), 400, "round 1 on every node", proc)
        victims = _serverapp_pids(dep)
        assert victims, "no flwr-serverapp process found"
        for pid in victims:
            os.kill(pid, 9)
        dep.stop_run(proc)
        nodes = [p for p in dep._procs if "supernode" in " ".join(map(str, p.args))]
        assert len(nodes) == 3 and all(p.poll() is None for p in nodes)
        text = dep.run({"num-server-rounds": 1, "dp": False, "protocol": "secagg+",
                        "stage-timeout": 150.0, "result-dir": str(tmp_path)}, timeout=600)
        assert "[secagg] round 1: 3/3 contributed" in text, text[-3000:]
    finally:
        dep.stop()


def test_enrolled_active_rounds_on_real_nodes_take_three_client_messages(tmp_path):
    """Out-of-band enrolment on the real engine: `secagg enroll` files, each SuperNode given
    only its own key file (node config), the ServerApp the registry; the active variant of
    the enrolled mode trains with DP in 3 client messages per round (upload, consistency,
    unmask), each a fresh ClientApp process on the node."""
    from functools import partial

    from fl.cli import main as secagg
    from fl.flower import enrolment

    assert secagg(["enroll", "--clients", "3", "--out", str(tmp_path / "enrolment")]) == 0
    registry = tmp_path / "enrolment" / "registry.json"
    report = tmp_path / "report"
    rounds = 2
    dep = LocalDeployment(3, app=example_app, startup_timeout=120.0,
                          node_config=partial(enrolment.node_config, tmp_path / "enrolment"))
    try:
        dep.start()
        text = dep.run({"protocol": "secagg+:enrolled-active", "registry": str(registry),
                        "num-server-rounds": rounds, "noise-multiplier": 0.3,
                        "epsilon": 100.0, "stage-timeout": 150.0, "result-dir": str(report)},
                       timeout=900)
        launches = [dep.log_tail(f"supernode-{i}", 100000).count(
            "Start `flwr-clientapp` process") for i in range(3)]
    finally:
        dep.stop()
    lines = re.findall(r"\[secagg\] round (\d): (\d+)/(\d+) contributed, dropped (\d+)", text)
    assert [(int(r), int(c)) for r, c, _, _ in lines] == [(1, 3), (2, 3)], text
    # one hello, then 3 protocol messages per round (the first carries the training)
    assert launches == [1 + 3 * rounds] * 3, launches
    doc = json.loads((report / "metrics.json").read_text())
    assert doc["final_accuracy"] > doc["initial_accuracy"] + 0.1
    assert doc["epsilon"] is not None and doc["epsilon"] > 0 and doc["failed_rounds"] == 0
