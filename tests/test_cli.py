"""The CLI dispatcher: entry-point discovery, typed errors as one line, broken commands isolated."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest

import fl.cli


def test_every_design_command_is_registered() -> None:
    _, commands = fl.cli.build_parser()
    assert {"simulate", "privacy", "run", "bench"} <= set(commands)


def test_a_command_that_cannot_import_does_not_break_the_others(monkeypatch, capsys) -> None:
    real = fl.cli.entry_points

    def fake(group: str):
        return [*real(group=group), EntryPoint("broken", "fl.cli._no_such_module", group)]

    monkeypatch.setattr(fl.cli, "entry_points", fake)
    assert fl.cli.main(["broken", "--whatever"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("secagg: error: 'broken' is unavailable")
    assert fl.cli.main(["simulate", "--clients", "3", "--dim", "4", "--json", "--seed", "1"]) == 0


def test_unknown_argument_is_an_argparse_error() -> None:
    with pytest.raises(SystemExit) as exc:
        fl.cli.main(["simulate", "--no-such-flag"])
    assert exc.value.code == 2


# -- start-up: nothing heavy to parse the command line -----------------------------------------

import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
#: What a command module may not import to parse its arguments (each costs 0.3-1.5 s).
HEAVY = ("torch", "sklearn", "matplotlib", "dp_accounting", "flwr", "scipy")


def _heavy_after(code: str) -> list[str]:
    """The heavy modules loaded by ``code`` in a fresh interpreter."""
    probe = f"{code}\nimport sys\nprint(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         cwd=ROOT, check=True, env={**_env(), "PYTHONPATH": str(ROOT)})
    return eval(out.stdout.strip().splitlines()[-1])  # noqa: S307 - our own probe's output


def _env() -> dict[str, str]:
    import os

    return dict(os.environ)


@pytest.mark.parametrize("name", sorted(ep.name for ep in fl.cli._entry_points().values()))
def test_every_command_parses_without_heavy_imports(name: str) -> None:
    import importlib.util

    module = fl.cli._entry_points()[name].value
    try:
        found = importlib.util.find_spec(module) is not None
    except ImportError:
        found = False
    if not found:  # registered by another checkout's metadata; the dispatcher isolates it
        pytest.skip(f"{module} is not importable here")
    code = (
        "import argparse, importlib, fl.cli\n"
        f"ep = fl.cli._entry_points()[{name!r}]\n"
        "m = importlib.import_module(ep.value)\n"
        "m.add_arguments(argparse.ArgumentParser())\n"
    )
    assert _heavy_after(code) == []


def test_top_level_help_and_a_settings_error_import_nothing_heavy() -> None:
    help_code = ("import fl.cli\ntry:\n    fl.cli.main(['--help'])\n"
                 "except SystemExit:\n    pass\n")
    assert _heavy_after(help_code) == []
    error_code = ("import fl.cli\nassert fl.cli.main(['run', '--protocol', 'rot13', "
                  "'--out', '/nonexistent-dir-for-test/x']) == 2\n")
    assert _heavy_after(error_code) == []


def test_only_the_chosen_command_is_imported(monkeypatch, capsys) -> None:
    loaded: list[str] = []
    real = fl.cli._load

    def spy(ep):  # type: ignore[no-untyped-def]
        loaded.append(ep.name)
        return real(ep)

    monkeypatch.setattr(fl.cli, "_load", spy)
    assert fl.cli.main(["privacy", "--noise-multiplier", "1", "--sampling-rate", "1",
                        "--rounds", "1", "--delta", "1e-5", "--json"]) == 0
    assert loaded == ["privacy"]
    with pytest.raises(SystemExit):
        fl.cli.main(["--help"])
    assert loaded == ["privacy"]  # help reads each HELP from source, importing no command
    assert "privacy" in capsys.readouterr().out


def test_help_imports_no_command_module_nor_a_command_package() -> None:
    """Not even ``bench``, whose package ``__init__`` imports the protocols."""
    import subprocess
    import sys

    probe = ("import sys\nfrom fl.cli import main\ntry:\n    main(['--help'])\n"
             "except SystemExit:\n    pass\n"
             "print(sorted(m for m in sys.modules if m.startswith(('fl.cli.', 'bench', "
             "'protocols'))))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True).stdout.strip().splitlines()[-1]
    assert out == "[]"


def test_help_names_a_missing_command_and_reads_a_computed_help_by_import(
        monkeypatch, capsys, tmp_path) -> None:
    real = fl.cli.entry_points
    (tmp_path / "computed_help_cmd.py").write_text(
        "HELP = ' '.join(['computed', 'help'])\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))

    def fake(group: str):
        return [*real(group=group), EntryPoint("gone", "fl.cli._no_such_module", group),
                EntryPoint("computed", "computed_help_cmd", group)]

    monkeypatch.setattr(fl.cli, "entry_points", fake)
    with pytest.raises(SystemExit) as exc:
        fl.cli.main(["--help"])
    assert exc.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "gone (unavailable: no module named 'fl.cli._no_such_module')" in out
    assert "computed computed help" in out


def test_help_lists_every_command_with_its_help(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        fl.cli.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name, module in fl.cli._commands().items():
        assert name in out
        if not isinstance(module, Exception):
            assert module.HELP.split()[0] in out


def test_an_unknown_command_names_the_commands(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        fl.cli.main(["pigeon"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'pigeon'" in err and "run" in err and "simulate" in err


def test_the_audit_defaults_spelled_out_in_the_cli_match_the_library() -> None:
    from fl.audit import AuditConfig
    from fl.cli.audit import DEFAULTS

    d = AuditConfig()
    for key, value in vars(DEFAULTS).items():
        assert getattr(d, key) == value, key


def test_every_choice_list_in_the_help_is_the_registry(capsys) -> None:
    import protocols
    from fl.engines import engine_names
    from fl.privacy.rounds import DP_MODES
    from fl.training.config import SPLITS
    from fl.training.data import DATASETS
    from secagg.dp import ACCOUNTANTS

    with pytest.raises(SystemExit):
        fl.cli.main(["run", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for names in (protocols.names(), DATASETS, DP_MODES, engine_names(), SPLITS, ACCOUNTANTS):
        assert f"one of: {', '.join(names)}" in out
    assert "flower" in engine_names() and "simulation" in engine_names()


def test_an_unknown_engine_lists_every_engine(capsys, tmp_path) -> None:
    from fl.engines import engine_names, make_engine
    from secagg.errors import ConfigError

    assert fl.cli.main(["run", "--engine", "flwr", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"choose one of: {', '.join(engine_names())}" in err[0]
    assert "flower" in err[0]
    with pytest.raises(ConfigError, match="flower"):
        make_engine("flwr")


def test_fl_exports_the_run_entry_points_lazily() -> None:
    import fl
    import fl.engines
    import fl.training.config
    import fl.training.loop

    assert fl.RunConfig is fl.training.config.RunConfig
    assert fl.run_training is fl.training.loop.run_training
    assert fl.plan_run is fl.training.loop.plan_run and fl.make_engine is fl.engines.make_engine
    assert fl.SimulationEngine is fl.engines.SimulationEngine
    assert {"RunConfig", "plan_run", "run_training", "make_engine", "Engine",
            "SimulationEngine"} <= set(fl.__all__)
    assert _heavy_after("import fl\nfl.RunConfig\nfl.run_training\nfl.make_engine") == []


def test_the_fl_subpackages_are_light_and_export_what_they_name() -> None:
    import fl.engines
    import fl.privacy
    import fl.training

    for package in (fl, fl.training, fl.privacy, fl.engines):
        for name in package.__all__:
            assert getattr(package, name) is not None, (package.__name__, name)
    with pytest.raises(AttributeError, match="fl.training"):
        fl.training.no_such_name  # noqa: B018
    assert _heavy_after("import fl.training, fl.privacy, fl.engines, fl.training.config\n"
                        "fl.training.RunConfig; fl.training.plan_run") == []


def test_errors_that_need_no_model_come_before_torch(tmp_path: Path) -> None:
    """A spent budget and a cohort below the threshold are refused before the model (and,
    for a net, torch) is built, so those one-line errors come at once."""
    ledger = tmp_path / "ledger.json"
    spend = ["run", "--rounds", "1", "--clients", "6", "--ledger", str(ledger), "--seed", "1",
             "--epsilon", "1", "--out", str(tmp_path / "r0")]
    assert fl.cli.main(spend) == 0
    cases = {
        "BudgetExceededError": ["run", "--clients", "6", "--ledger", str(ledger),
                                "--epsilon", "1", "--model", "mlp", "--out", str(tmp_path / "r1")],
        "threshold": ["run", "--clients", "6", "--cohort", "2", "--dropout", "0.5",
                      "--model", "mlp", "--out", str(tmp_path / "r2")],
    }
    for what, argv in cases.items():
        code = ("import sys, fl.cli\n"
                f"rc = fl.cli.main({argv!r})\n"
                "print(rc, 'torch' in sys.modules)")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             cwd=ROOT, env={**_env(), "PYTHONPATH": str(ROOT)}, check=True)
        err = out.stderr.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("secagg: error:"), (what, out.stderr)
        assert out.stdout.split() == ["2", "False"], (what, out.stdout, err)
        if what == "threshold":
            assert "threshold" in err[0]
        else:
            assert "budget already spent" in err[0]


def test_a_run_on_the_linear_model_never_imports_torch(tmp_path: Path) -> None:
    """The default model is numpy logistic regression: a whole run trains, aggregates and
    reports without torch; an mlp brings torch in."""
    for model, loads in (("linear", False), ("mlp", True)):
        argv = ["run", "--rounds", "1", "--clients", "6", "--model", model, "--seed", "1",
                "--json", "--out", str(tmp_path / model)]
        code = ("import sys, fl.cli\n"
                f"rc = fl.cli.main({argv!r})\n"
                "print(rc, 'torch' in sys.modules, file=sys.stderr)")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             cwd=ROOT, env={**_env(), "PYTHONPATH": str(ROOT)}, check=True)
        assert out.stderr.split()[-2:] == ["0", str(loads)], (model, out.stderr[-500:])
        summary = json.loads(out.stdout)
        assert summary["rounds"] == 1 and summary["failed_rounds"] == 0
        assert (summary["model_params"] == 62) == (model == "linear")


def test_progress_off_a_terminal_is_one_timed_line_per_change() -> None:
    import io

    from rich.console import Console

    from fl.cli._common import progress_status

    buf = io.StringIO()
    console = Console(file=buf, width=120)
    assert not console.is_terminal
    with progress_status(console, "starting") as update:
        update("stage 1")
        update("stage 1")  # unchanged: no new line
        update("stage 2")
    lines = buf.getvalue().splitlines()
    assert [line.split("] ", 1)[1] for line in lines] == ["starting", "stage 1", "stage 2"]
    assert all(line.startswith("[") and " s] " in line for line in lines)


def test_the_executable_exits_with_the_commands_status_and_output() -> None:
    """``fl.cli.console`` (the ``secagg`` script) returns main's status: 0 with the JSON
    line, 2 with the one-line error, after its collect-and-freeze exit."""
    import json
    import subprocess
    import sys

    def console(*argv: str) -> subprocess.CompletedProcess[str]:
        code = "import sys\nfrom fl.cli import console\nsys.argv = ['secagg', *sys.argv[1:]]\nconsole()"
        return subprocess.run([sys.executable, "-c", code, *argv], capture_output=True,
                              text=True, check=False)

    ok = console("privacy", "--noise-multiplier", "1", "--sampling-rate", "1", "--rounds", "1",
                 "--delta", "1e-5", "--json")
    assert ok.returncode == 0 and json.loads(ok.stdout.strip().splitlines()[-1])["epsilon"] > 0
    bad = console("privacy", "--noise-multiplier", "-1", "--sampling-rate", "1", "--rounds",
                  "1", "--delta", "1e-5")
    assert bad.returncode == 2 and bad.stderr.strip().startswith("secagg: error:")
