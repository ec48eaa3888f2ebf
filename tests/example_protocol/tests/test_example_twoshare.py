"""The example third-party protocol, tested the way its authors would: by subclassing the
kit's conformance suite and running its state machine. It is found through its entry point
(``secagg.protocols``), exactly as ``secagg simulate --protocol twoshare`` finds it."""

from __future__ import annotations

import pytest

import protocols

pytest.importorskip("secagg_example_protocol",
                    reason="install it: python3 -m pip install -e ./tests/example_protocol")

from protocols.testing import ProtocolConformance, round_machine  # noqa: E402


def test_the_entry_point_registers_it() -> None:
    import secagg_example_protocol

    assert "twoshare" in protocols.names()
    assert protocols.get("twoshare") is secagg_example_protocol.SPEC
    assert not [e for e in protocols.plugin_errors() if "twoshare" in e]


class TestTwoShareConformance(ProtocolConformance):
    protocol = "twoshare"


TestTwoShareMachine = round_machine("twoshare").TestCase


def test_secagg_simulate_runs_it(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from fl.cli import main

    code = main(["simulate", "--protocol", "twoshare", "--clients", "8", "--dim", "50",
                 "--dropout", "0.25", "--seed", "3", "--json"])
    out, _ = capsys.readouterr()
    assert code == 0
    report = json.loads(out.strip().splitlines()[-1])
    assert report["protocol"] == "twoshare" and report["exact"] is True
    assert report["dropped"] == 2 and report["survivors"] == 6
    assert report["dropped_by_stage"] == {"INPUT_REQUEST": 2}


def test_secagg_run_trains_with_it() -> None:
    from fl import RunConfig, run_training

    res = run_training(RunConfig(protocol="twoshare", clients=4, rounds=1, dp=False, seed=1))
    assert res.history and res.history[-1].contributors == 4
