"""`secagg privacy`: the JSON contract, the inverse, and one-line errors with exit status 2."""

from __future__ import annotations

import importlib
import json
from importlib.metadata import entry_points
from types import ModuleType

import dp_accounting as dpa
import pytest
from dp_accounting import pld, rdp

import fl.cli
from secagg.dp import compute_epsilon


@pytest.fixture(autouse=True)
def only_privacy_command(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dispatch through fl.cli.main, loading only this sub-command's registered entry point,
    so a sibling command that is not importable yet cannot break these tests."""

    def commands() -> dict[str, ModuleType]:
        eps = [ep for ep in entry_points(group="secagg.commands") if ep.name == "privacy"]
        return {ep.name: importlib.import_module(ep.value) for ep in eps}

    monkeypatch.setattr(fl.cli, "_commands", commands)


def test_registered_as_entry_point() -> None:
    found = {ep.name: ep.value for ep in entry_points(group="secagg.commands")}
    assert found.get("privacy") == "fl.cli.privacy"


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, object]:
    assert fl.cli.main(["privacy", *argv, "--json"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    result = json.loads(out[-1])
    assert isinstance(result, dict)
    return result


ISSUE_ARGS = ("--noise-multiplier", "1.0", "--sampling-rate", "0.01", "--rounds", "1000",
              "--delta", "1e-5")


@pytest.mark.parametrize("accountant", ["rdp", "pld"])
def test_issue_check_matches_dp_accounting(
    capsys: pytest.CaptureFixture[str], accountant: str
) -> None:
    result = run_json(capsys, *ISSUE_ARGS, "--accountant", accountant)
    acc = rdp.RdpAccountant() if accountant == "rdp" else pld.PLDAccountant()
    acc.compose(dpa.PoissonSampledDpEvent(0.01, dpa.GaussianDpEvent(1.0)), 1000)
    assert result["epsilon"] == pytest.approx(acc.get_epsilon(1e-5), rel=0.02)
    assert result["delta"] == 1e-5 and result["accountant"] == accountant
    assert result["noise_multiplier"] == 1.0 and result["sampling_rate"] == 0.01
    assert result["rounds"] == 1000 and result["mode"] == "epsilon"


def test_default_accountant_is_rdp(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_json(capsys, *ISSUE_ARGS)["accountant"] == "rdp"


def test_inverse_reports_the_noise_multiplier(capsys: pytest.CaptureFixture[str]) -> None:
    result = run_json(
        capsys, "--epsilon", "2.0", "--sampling-rate", "0.01", "--rounds", "1000", "--delta", "1e-5"
    )
    assert result["mode"] == "noise_multiplier" and result["target_epsilon"] == 2.0
    z = result["noise_multiplier"]
    assert isinstance(z, float) and 1.0 < z < 1.05  # epsilon 2.10 needs a bit more than z = 1
    assert result["epsilon"] == pytest.approx(compute_epsilon(z, 0.01, 1000, 1e-5), rel=1e-9)
    assert isinstance(result["epsilon"], float) and result["epsilon"] <= 2.0


def test_human_output_is_a_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert fl.cli.main(["privacy", *ISSUE_ARGS]) == 0
    out = capsys.readouterr().out
    assert "epsilon" in out and "2.1014" in out


@pytest.mark.parametrize(
    "bad",
    [["--delta", "2"], ["--delta", "0"], ["--rounds", "0"], ["--sampling-rate", "1.5"],
     ["--noise-multiplier", "-1"]],
)
def test_bad_value_is_one_line_error_exit_2(
    capsys: pytest.CaptureFixture[str], bad: list[str]
) -> None:
    args = dict(zip(ISSUE_ARGS[::2], ISSUE_ARGS[1::2]))
    args[bad[0]] = bad[1]
    argv = [x for kv in args.items() for x in kv]
    assert fl.cli.main(["privacy", *argv, "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("secagg: error: ")
    assert bad[0].lstrip("-").replace("-", "_") in lines[0]


def test_missing_or_conflicting_options_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--sampling-rate", "0.01", "--rounds", "10", "--delta", "1e-5"],
                 [*ISSUE_ARGS, "--epsilon", "1.0"]):
        with pytest.raises(SystemExit) as info:
            fl.cli.main(["privacy", *argv])
        assert info.value.code == 2
    assert "error" in capsys.readouterr().err
