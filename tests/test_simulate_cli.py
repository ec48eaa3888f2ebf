"""``secagg simulate``: the JSON contract of DESIGN.md, exactness, errors, and O(d) memory.

The command runs in process through :func:`fl.cli.main`; pytest's ``capsys`` captures what a
user would see. Nothing here times anything: ``server_peak_bytes`` is the server's retained
state as walked by :func:`fl.engines._memory.deep_sizeof`, a count of bytes, not of seconds.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

import protocols
from fl.cli import main
from protocols.base import stages_of

CONTRACT = {  # DESIGN.md, "Command line": what ``simulate --json`` reports at least
    "protocol", "clients", "dim", "dropped", "survivors", "exact", "max_abs_error",
    "client_seconds", "server_seconds", "upload_bytes_per_client", "download_bytes_per_client",
    "server_peak_bytes",
}


def simulate(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    code = main(["simulate", *args, "--json"])
    out, _ = capsys.readouterr()
    assert code == 0
    lines = out.strip().splitlines()
    report = json.loads(lines[-1])  # the last stdout line is one JSON object
    assert isinstance(report, dict)
    return report


def _check_contract(report: dict[str, Any], protocol: str, clients: int, dim: int) -> None:
    assert CONTRACT | {"dropped_by_stage"} <= set(report)
    assert (report["protocol"], report["clients"], report["dim"]) == (protocol, clients, dim)
    assert sum(report["dropped_by_stage"].values()) == report["dropped"]
    assert clients - report["dropped"] <= report["survivors"] <= clients
    for key in ("client_seconds", "server_seconds"):
        assert isinstance(report[key], float) and report[key] >= 0
    for key in ("upload_bytes_per_client", "download_bytes_per_client", "server_peak_bytes"):
        assert isinstance(report[key], int) and report[key] > 0
    # Every client uploads at least its dim+1 ring values (4 bytes each at 32 bits).
    assert report["upload_bytes_per_client"] >= 4 * (dim + 1)
    assert report["error"] is None


def test_secagg_plus_30_clients_with_dropouts_is_exact(capsys: pytest.CaptureFixture[str]) -> None:
    report = simulate(capsys, "--protocol", "secagg+", "--clients", "30", "--dim", "2000",
                      "--dropout", "0.1", "--seed", "1")
    _check_contract(report, "secagg+", 30, 2000)
    assert report["exact"] is True
    assert report["dropped"] == 3
    assert len(report["dropped_by_stage"]) > 1, "dropouts spread over more than one stage"
    assert set(report["dropped_by_stage"]) <= set(stages_of(protocols.get("secagg+"), protocols.get("secagg+").make_config(30, 2000)))
    # Stochastic rounding: less than 2^-16 per survivor and coordinate.
    assert report["max_abs_error"] <= report["survivors"] * 2.0**-16


def test_secagg_20_clients_with_20_percent_dropouts_is_exact(
        capsys: pytest.CaptureFixture[str]) -> None:
    report = simulate(capsys, "--protocol", "secagg", "--clients", "20", "--dim", "500",
                      "--dropout", "0.2", "--seed", "7")
    _check_contract(report, "secagg", 20, 500)
    assert report["exact"] is True
    assert report["dropped"] == 4
    assert report["threshold"] == 11 and report["degree"] == 19


@pytest.mark.parametrize("name", protocols.names())
def test_every_protocol_simulates_and_reports_exactness(
        capsys: pytest.CaptureFixture[str], name: str) -> None:
    report = simulate(capsys, "--protocol", name, "--clients", "5", "--dim", "16",
                      "--seed", "3")
    _check_contract(report, name, 5, 16)
    assert report["survivors"] == 5
    if protocols.get(name).exact:
        assert report["exact"] is True
    else:
        assert report["exact"] is None  # ckks: approximate by design


@pytest.mark.parametrize(("args", "fragment"), [
    (["--protocol", "secagg", "--clients", "5", "--threshold", "9"], "1..5"),
    (["--protocol", "secagg+", "--clients", "10", "--degree", "3"], "use 4 or 2"),
    (["--protocol", "plaintext", "--clip", "-1"], "clip"),
    (["--protocol", "secagg+", "--clients", "1000", "--frac-bits", "40"], "frac_bits"),
    (["--protocol", "no-such-protocol"], "secagg+"),
    (["--protocol", "plaintext", "--threshold", "3"], "secagg"),
    (["--protocol", "plaintext", "--dropout", "1.5"], "[0, 1)"),
    (["--protocol", "plaintext", "--clients", "0"], ">= 1"),
])
def test_bad_parameters_exit_2_with_one_line_on_stderr(
        capsys: pytest.CaptureFixture[str], args: list[str], fragment: str) -> None:
    code = main(["simulate", "--dim", "10", *args, "--json"])
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""  # no JSON for a run that never happened
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("secagg: error: ")
    assert fragment in lines[0]
    assert "Traceback" not in err


# -- server memory is O(d), not O(n) ---------------------------------------------------
def _peak(capsys: pytest.CaptureFixture[str], name: str, n: int, d: int) -> int:
    report = simulate(capsys, "--protocol", name, "--clients", str(n), "--dim", str(d),
                      "--seed", "5")
    assert report["exact"] is True
    return int(report["server_peak_bytes"])


@pytest.mark.parametrize("name", ["plaintext", "secagg+"])
def test_server_peak_bytes_scales_with_the_dimension_not_the_clients(
        capsys: pytest.CaptureFixture[str], name: str) -> None:
    d = 50_000
    base = _peak(capsys, name, 20, d)
    assert base >= 4 * d  # at least the running sum of d ring values
    more_clients = _peak(capsys, name, 40, d)
    longer = _peak(capsys, name, 20, 2 * d)
    assert more_clients / base < 1.5, "doubling n must not double the server's memory"
    assert 1.6 < longer / base < 2.2, "doubling d roughly doubles it"


def test_a_size_that_cannot_fit_in_memory_is_refused_before_allocating(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    import fl.cli._common as common
    import fl.cli.simulate as sim

    def no_inputs(*args: object) -> None:
        raise AssertionError("allocated inputs for a round that cannot fit")

    monkeypatch.setattr(sim, "_inputs", no_inputs)
    assert main(["simulate", "--dim", str(10**12), "--json"]) == 2  # the user's mistake
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("secagg: error: 100 clients x ")
    assert "of memory, but" in lines[0] and "--dim <= " in lines[0] and captured.out == ""

    monkeypatch.setattr(common, "available_memory", lambda: 64 * 2**20)  # a 64 MiB machine
    assert main(["simulate", "--clients", "10", "--dim", "4000000", "--json"]) == 2
    line = capsys.readouterr().err.strip()
    per_value = sim._bytes_per_value(10, 32)
    fits = 64 * 2**20 // per_value
    assert f"--dim <= {fits:,} at --clients 10" in line and "64.0 MiB is available" in line
    monkeypatch.undo()
    report = simulate(capsys, "--clients", "10", "--dim", str(min(fits, 50_000)), "--seed", "1")
    assert report["exact"] is True  # what the message names does run
