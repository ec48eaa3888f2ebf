"""`secagg run`: the JSON contract, the report folder, and one-line errors with exit status 2."""

from __future__ import annotations

import importlib
import json
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

import fl.cli
from fl.training.report import REPORT_FILES

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SMALL = ["--clients", "10", "--rounds", "2", "--seed", "3"]


@pytest.fixture(autouse=True)
def only_run_command(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dispatch through fl.cli.main, loading only this sub-command's entry point, so a
    sibling command that is not importable cannot break these tests."""

    def commands() -> dict[str, ModuleType]:
        eps = [ep for ep in entry_points(group="secagg.commands") if ep.name == "run"]
        return {ep.name: importlib.import_module(ep.value) for ep in eps}

    monkeypatch.setattr(fl.cli, "_commands", commands)
    run_only = {name: ep for name, ep in fl.cli._entry_points().items() if name == "run"}
    monkeypatch.setattr(fl.cli, "_entry_points", lambda: run_only)


@pytest.fixture(autouse=True, scope="module")
def _restore_torch_threads() -> Any:
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)  # `secagg run` sets one thread for its tiny models


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[dict[str, Any], str]:
    assert fl.cli.main(["run", *argv, "--json"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    result = json.loads(lines[-1])
    assert isinstance(result, dict)
    return result, captured.err


def test_registered_as_entry_point() -> None:
    found = {ep.name: ep.value for ep in entry_points(group="secagg.commands")}
    assert found.get("run") == "fl.cli.run"


def test_json_contract_and_report_folder(capsys: pytest.CaptureFixture[str],
                                         tmp_path: Path) -> None:
    out, err = run_json(capsys, *SMALL, "--plots", "--out", str(tmp_path / "rep"))
    for key in ("protocol", "rounds", "clients", "final_accuracy", "epsilon", "delta",
                "report_dir", "history", "noise_multiplier", "seconds_per_round",
                "bytes_per_client"):
        assert key in out
    assert out["protocol"] == "secagg+" and out["dp"] is True and out["dp_mode"] == "central"
    assert out["rounds"] == 2 and out["clients"] == 10 and len(out["history"]) == 2
    assert out["final_accuracy"] >= 0.85
    assert 0 < out["epsilon"] <= 3.0 and out["delta"] == 1e-5
    assert [h["epsilon"] for h in out["history"]][-1] == out["epsilon"]
    folder = Path(out["report_dir"])
    assert folder == (tmp_path / "rep").resolve()
    assert sorted(p.name for p in folder.iterdir()) == sorted(REPORT_FILES)
    for name in REPORT_FILES:
        if name.endswith(".png"):
            assert (folder / name).read_bytes().startswith(PNG_MAGIC)
    assert json.loads((folder / "metrics.json").read_text())["epsilon"] == out["epsilon"]
    assert "accuracy (held-out)" in err and "epsilon at delta" in err  # the table, on stderr


def test_plaintext_without_dp_prints_a_table_and_null_epsilon(
    capsys: pytest.CaptureFixture[str], tmp_path: Path,
) -> None:
    argv = [*SMALL, "--protocol", "plaintext", "--no-dp", "--out", str(tmp_path / "p")]
    assert fl.cli.main(["run", *argv]) == 0
    table = capsys.readouterr().out
    assert "DP is off" in table and "accuracy (held-out)" in table
    out, _ = run_json(capsys, *argv)
    assert out["epsilon"] is None and out["delta"] is None and out["dp"] is False
    assert out["final_accuracy"] >= 0.9


def test_default_report_folder_is_under_secagg_runs(capsys: pytest.CaptureFixture[str],
                                                     tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    out, _ = run_json(capsys, "--clients", "4", "--rounds", "1", "--seed", "1",
                      "--protocol", "plaintext")
    folder = Path(out["report_dir"])
    assert folder.parent == tmp_path / "secagg-runs" and (folder / "metrics.csv").exists()


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--dataset", "mnist"], "choose one of: breast_cancer, digits, synthetic"),
        (["--protocol", "rot13"], "choose one of: plaintext, secagg, secagg+"),
        (["--engine", "pigeon"], "unknown engine 'pigeon'; choose one of: "),
        (["--clients", "1"], "needs a cohort of at least 2 clients"),
        (["--clients", "10", "--protocol", "secagg", "--dropout", "0.6"],
         "needs at least 6 survivors (threshold), but dropout 0.6 drops 6 and leaves 4"),
        (["--dropout", "1"], "dropout must be a fraction in [0, 1)"),
        (["--clients", "1000"], "allow 1 to 113 clients"),
        (["--noise-multiplier", "0.3", "--epsilon", "1"], "round(s) fit, or use a noise"),
        (["--no-dp", "--epsilon", "2"], "need DP"),
        (["--protocol", "plaintext", "--dp-mode", "distributed"],
         "use it with one of: secagg, secagg+"),
    ],
)
def test_bad_input_is_one_line_with_exit_status_2(capsys: pytest.CaptureFixture[str],
                                                 tmp_path: Path, argv: list[str],
                                                 needle: str) -> None:
    assert fl.cli.main(["run", *argv, "--out", str(tmp_path / "x"), "--json"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("secagg: error: ")
    assert needle in lines[0]
    assert captured.out == "" and not (tmp_path / "x").exists()


def test_a_spent_budget_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.json"
    common = ["--clients", "4", "--seed", "2", "--protocol", "plaintext", "--ledger", str(ledger)]
    first, _ = run_json(capsys, *common, "--rounds", "2", "--epsilon", "4",
                        "--out", str(tmp_path / "a"))
    assert ledger.exists() and first["epsilon"] <= 4
    assert fl.cli.main(["run", *common, "--epsilon", "1", "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "privacy budget already spent" in err[0]
    assert f"epsilon={first['epsilon']:.4g}" in err[0]


# -- mistakes a new user made (issue 11) -----------------------------------------------------

import csv  # noqa: E402

import fl.training.loop  # noqa: E402
from fl.training.report import METRICS_FILES  # noqa: E402


def _no_training(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the run started although --out is unusable")

    monkeypatch.setattr(fl.training.loop, "plan_run", refuse)
    monkeypatch.setattr(fl.training.loop, "run_training", refuse)


@pytest.mark.parametrize("where", ["proc", "file", "under_file"])
def test_an_unusable_out_folder_is_refused_before_any_work(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    where: str,
) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    out = {"proc": Path("/proc/nope"), "file": a_file, "under_file": a_file / "sub" / "dir"}
    _no_training(monkeypatch)
    assert fl.cli.main(["run", *SMALL, "--out", str(out[where]), "--json"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("secagg: error: --out ")
    assert "folder" in lines[0] and captured.out == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]  # nothing left behind


def test_a_creatable_out_folder_is_checked_without_a_trace(tmp_path: Path) -> None:
    from fl.cli._common import check_out_dir

    target = tmp_path / "new" / "nested"
    assert check_out_dir(target) == target.absolute()
    assert not (tmp_path / "new").exists()
    (tmp_path / "kept").mkdir()
    assert check_out_dir(tmp_path / "kept") == (tmp_path / "kept").absolute()
    assert list((tmp_path / "kept").iterdir()) == []


def test_an_exhausted_ledger_is_refused_unless_the_budget_is_raised(
    capsys: pytest.CaptureFixture[str], tmp_path: Path,
) -> None:
    ledger = tmp_path / "ledger.json"
    common = ["--clients", "4", "--rounds", "2", "--seed", "5", "--protocol", "plaintext",
              "--no-plots", "--ledger", str(ledger)]
    first, _ = run_json(capsys, *common, "--out", str(tmp_path / "a"))
    assert 2.9 < first["epsilon"] <= 3.0  # calibrated: the default budget, nearly all spent
    assert fl.cli.main(["run", *common, "--out", str(tmp_path / "b"), "--json"]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and "privacy budget already spent" in err[0]
    assert "raise the total budget with --epsilon" in err[0] and captured.out == ""
    assert not (tmp_path / "b").exists()
    kept = json.loads(ledger.read_text())
    assert len(kept["rounds"]) == 2  # the refused run charged nothing
    third, _ = run_json(capsys, *common, "--epsilon", "6", "--out", str(tmp_path / "c"))
    assert first["epsilon"] < third["epsilon"] <= 6.0
    assert third["noise_multiplier"] < 100  # a real run, not noise multiplier 2059


def test_noise_that_swamps_the_signal_is_named_with_a_fix(
    capsys: pytest.CaptureFixture[str], tmp_path: Path,
) -> None:
    out, err = run_json(capsys, "--dataset", "digits", "--clients", "10", "--rounds", "2",
                        "--seed", "1", "--no-plots", "--out", str(tmp_path / "d"))
    assert out["noise_swamps_signal"] is True and out["noise_to_signal"] > 1
    need = out["clients_for_noise_to_signal_1"]
    assert need > 10
    warning = " ".join(err.split())
    assert "noise swamps the model updates" in warning and f"--clients {need}" in warning
    assert json.loads((tmp_path / "d" / "metrics.json").read_text())["noise_to_signal"] == (
        out["noise_to_signal"])
    # The fix it names does what it says: the run's noise-to-signal reaches 1.
    fixed, err = run_json(capsys, "--dataset", "digits", "--clients", str(need), "--rounds",
                          "2", "--seed", "1", "--no-plots", "--out", str(tmp_path / "e"))
    assert fixed["noise_swamps_signal"] is False
    assert fixed["noise_to_signal_run"] == pytest.approx(1.0, rel=0.05)
    assert "warning: DP noise" not in err


def test_the_default_run_is_not_flagged(capsys: pytest.CaptureFixture[str],
                                        tmp_path: Path) -> None:
    out, err = run_json(capsys, "--seed", "1", "--no-plots", "--out", str(tmp_path / "d"))
    assert out["noise_swamps_signal"] is False and "warning: DP noise" not in err
    assert out["clients_for_noise_to_signal_1"] == out["clients"]


def test_dp_noised_train_metrics_are_named_so(capsys: pytest.CaptureFixture[str],
                                              tmp_path: Path) -> None:
    out, _ = run_json(capsys, *SMALL, "--out", str(tmp_path / "dp"))  # no plots by default
    assert sorted(p.name for p in (tmp_path / "dp").iterdir()) == sorted(METRICS_FILES)
    for row in out["history"]:
        assert {"train_loss_dp_noised", "train_accuracy_dp_noised"} <= set(row)
        assert "train_loss" not in row and "train_accuracy" not in row
    with (tmp_path / "dp" / "metrics.csv").open() as fh:
        header = next(csv.reader(fh))
    assert "train_loss_dp_noised" in header and "train_loss" not in header
    plain, _ = run_json(capsys, *SMALL, "--no-dp", "--no-plots", "--out", str(tmp_path / "p"))
    assert "train_loss" in plain["history"][0] and "noise_to_signal" not in plain
    with (tmp_path / "p" / "metrics.csv").open() as fh:
        assert "train_loss" in next(csv.reader(fh))
