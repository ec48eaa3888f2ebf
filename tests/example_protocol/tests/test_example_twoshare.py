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


def test_secagg_bench_measures_it(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    """``secagg bench --protocols twoshare`` (the smallest matrix, next to plaintext): a row
    per cell, named for the plugin, exact, with measured times and byte counts."""
    import csv
    import json

    from fl.cli import main

    dim = 1000
    code = main(["bench", "--protocols", "twoshare", "plaintext", "--clients", "5",
                 "--dims", str(dim), "--dropout", "0", "0.2", "--repeats", "1",
                 "--no-plots", "--out", str(tmp_path), "--json"])
    out, _ = capsys.readouterr()
    assert code == 0
    cells = json.loads(out.strip().splitlines()[-1])["cells"]
    mine = [c for c in cells if c["protocol"] == "twoshare"]
    assert {(c["dropout"], c["drop_schedule"]) for c in mine} == {
        (0.0, "masked_input"), (0.2, "masked_input"), (0.2, "spread")}
    for c in mine:
        assert c["status"] == "ok" and c["error"] is None, c
        assert c["exact"] is True and c["clients"] == 5 and c["dim"] == dim
        assert c["max_abs_error"] < 1e-3
        # measured, not reported as zero: the clients, the server and the helper all worked
        assert c["client_seconds"] > 0 and c["server_seconds"] > 0 and c["helper_seconds"] > 0
        # each client sends two shares of its encoded update and weight (dim + 1 words each)
        assert c["upload_bytes_per_client"] >= 2 * (dim + 1) * c["ring_bytes"]
        assert c["server_peak_bytes"] > 0
        if c["dropout"]:
            assert c["dropped"] == 1 and c["survivors"] == 4
            assert c["dropped_by_stage"] == {"INPUT_REQUEST": 1}
        else:
            assert c["dropped"] == 0 and c["survivors"] == 5
    plain = next(c for c in cells if c["protocol"] == "plaintext" and c["dropout"] == 0)
    two = next(c for c in mine if c["dropout"] == 0)
    assert two["upload_bytes_per_client"] > 1.9 * plain["upload_bytes_per_client"]
    with (tmp_path / "results.csv").open() as fh:
        rows = [r for r in csv.DictReader(fh) if r["protocol"] == "twoshare"]
    assert len(rows) == 3 and all(r["exact"] == "True" for r in rows)
