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
