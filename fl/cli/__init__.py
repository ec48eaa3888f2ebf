"""The ``secagg`` command line.

Each sub-command is a module with ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``,
registered under the ``secagg.commands`` entry-point group in pyproject.toml. Discovery by
entry point lets ``bench`` add ``secagg bench`` without ``fl`` importing ``bench``: imports
keep pointing one way (secagg <- protocols <- fl <- bench).

Contracts (DESIGN.md, "Command line"): with ``--json`` the last line on stdout is one JSON
object; progress goes to stderr; a :class:`secagg.errors.SecAggError` becomes a one-line
``secagg: error: ...`` on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from importlib.metadata import entry_points
from types import ModuleType

from secagg.errors import SecAggError

__all__ = ["main", "build_parser"]

_GROUP = "secagg.commands"


def _commands() -> dict[str, ModuleType | Exception]:
    """Each registered command's module, or the error that kept it from importing (so one
    broken command, e.g. a missing optional dependency, does not take the others down)."""
    found: dict[str, ModuleType | Exception] = {}
    for ep in sorted(entry_points(group=_GROUP), key=lambda e: e.name):
        try:
            found[ep.name] = importlib.import_module(ep.value)
        except ImportError as exc:
            found[ep.name] = exc
    return found


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, ModuleType | Exception]]:
    parser = argparse.ArgumentParser(
        prog="secagg",
        description="Secure aggregation for federated learning, with differential privacy.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    commands = _commands()
    for name, module in commands.items():
        if isinstance(module, Exception):
            sub.add_parser(name, help=f"(unavailable: {module})", add_help=False)
            continue
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
    return parser, commands


def main(argv: list[str] | None = None) -> int:
    parser, commands = build_parser()
    args, extra = parser.parse_known_args(argv)
    module = commands[args.command]
    if isinstance(module, Exception):
        print(f"secagg: error: '{args.command}' is unavailable: {module}", file=sys.stderr)
        return 2
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return int(module.run(args))
    except SecAggError as exc:
        print(f"secagg: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("secagg: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
