"""The ``secagg`` command line.

Adding a command is one module and one entry point:

1. a module with ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``;
2. its registration under the ``secagg.commands`` entry-point group in pyproject.toml
   (``name = "package.module"``), then ``pip install -e .`` once to refresh the metadata.

Discovery by entry point lets ``bench`` add ``secagg bench`` without ``fl`` importing
``bench``: imports keep pointing one way (secagg <- protocols <- fl <- bench).

Start-up stays fast because nothing heavy is imported to parse the command line:

- :func:`main` imports only the chosen command's module and builds only its sub-parser;
  ``secagg --help`` imports none: it reads each command's ``HELP`` from its module's source
  (so ``HELP`` is a string literal; another expression makes ``--help`` import that module
  to read it), and adds no arguments.
- So a command module must be light at import time and in ``add_arguments``: argparse,
  ``protocols`` (its names), :mod:`fl.training.config`, :mod:`fl.training.data` and the like,
  but not torch, sklearn, matplotlib, tenseal, phe, dp_accounting, flwr or scipy (nor modules that
  import them, such as :mod:`fl.training.loop`). ``run(args)`` imports the heavy code it needs.
  ``tests/test_cli.py`` checks this for every registered command.

Contracts (DESIGN.md, "Command line"): with ``--json`` the last line on stdout is one JSON
object; progress goes to stderr; a :class:`secagg.errors.SecAggError` becomes a one-line
``secagg: error: ...`` on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import ast
import gc
import importlib
import importlib.util
import sys
from importlib.machinery import ModuleSpec, PathFinder
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from types import ModuleType
from typing import NoReturn

__all__ = ["build_parser", "console", "main"]

_GROUP = "secagg.commands"
_DESCRIPTION = "Secure aggregation for federated learning, with differential privacy."


def _entry_points() -> dict[str, EntryPoint]:
    """Every registered command, by name (reading metadata only: nothing is imported)."""
    return {ep.name: ep for ep in sorted(entry_points(group=_GROUP), key=lambda e: e.name)}


def _load(ep: EntryPoint) -> ModuleType | Exception:
    """A command's module, or the error that kept it from importing (so one broken
    command, e.g. a missing optional dependency, does not take the others down)."""
    try:
        return importlib.import_module(ep.value)
    except ImportError as exc:
        return exc


def _find_unimported(dotted: str) -> ModuleSpec | None:
    """Where module ``dotted`` lives, found without importing its parent packages (which
    ``importlib.util.find_spec`` would: a package's ``__init__`` may be heavy)."""
    parts = dotted.split(".")
    spec = importlib.util.find_spec(parts[0])  # a top-level name: nothing is imported
    for i in range(1, len(parts)):
        if spec is None or not spec.submodule_search_locations:
            return None
        spec = PathFinder.find_spec(".".join(parts[: i + 1]), list(spec.submodule_search_locations))
    return spec


def _help_line(ep: EntryPoint) -> str:
    """A command's ``HELP``, read from its module's source without importing the module
    (``--help`` stays as fast as Python's start-up); ``(unavailable: ...)`` when there is no
    such module."""
    try:
        spec = _find_unimported(ep.value)
    except (ImportError, ValueError) as exc:
        return f"(unavailable: {exc})"
    if spec is None or spec.origin is None:
        return f"(unavailable: no module named {ep.value!r})"
    try:
        tree = ast.parse(Path(str(spec.origin)).read_bytes())
    except (OSError, SyntaxError, ValueError):
        tree = ast.Module(body=[], type_ignores=[])
    for node in tree.body:
        if isinstance(node, ast.Assign):
            targets, expr = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, expr = [node.target], node.value
        else:
            continue
        if any(isinstance(t, ast.Name) and t.id == "HELP" for t in targets):
            try:
                value = ast.literal_eval(expr)
            except ValueError:
                break
            if isinstance(value, str):
                return value
            break
    module = _load(ep)  # HELP is not a literal string: import the module to read it
    return f"(unavailable: {module})" if isinstance(module, Exception) else str(module.HELP)


def _commands() -> dict[str, ModuleType | Exception]:
    """Every registered command's module (or its import error): what ``--help`` lists."""
    return {name: _load(ep) for name, ep in _entry_points().items()}


def _top_parser() -> tuple[argparse.ArgumentParser,
                               argparse._SubParsersAction[argparse.ArgumentParser]]:
    parser = argparse.ArgumentParser(prog="secagg", description=_DESCRIPTION)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    return parser, sub


def _add(sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, module: ModuleType | Exception,
         with_arguments: bool) -> None:
    if isinstance(module, Exception):
        sub.add_parser(name, help=f"(unavailable: {module})", add_help=False)
        return
    p = sub.add_parser(name, help=module.HELP, description=module.HELP)
    if with_arguments:
        module.add_arguments(p)


def build_parser(
    command: str | None = None,
) -> tuple[argparse.ArgumentParser, dict[str, ModuleType | Exception]]:
    """The parser and the command modules it was built from.

    Args:
        command: build only this command's sub-parser, arguments included (importing only
            its module). ``None``: every command with its ``HELP`` and arguments.
    """
    parser, sub = _top_parser()
    if command is None:
        commands = _commands()
    else:
        eps = _entry_points()
        commands = {command: _load(eps[command])} if command in eps else {}
    for name, module in commands.items():
        _add(sub, name, module, with_arguments=True)
    return parser, commands


def _chosen(argv: list[str], names: dict[str, EntryPoint]) -> str | None:
    """The command named on the command line, or ``None`` for top-level help or a
    mistake (which the full parser then reports)."""
    for arg in argv:
        if arg.startswith("-"):
            return None  # a top-level option (-h) comes before any command
        return arg if arg in names else None
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    eps = _entry_points()
    name = _chosen(argv, eps)
    if name is None:  # help, no command or an unknown one: list every command (no arguments)
        parser, sub = _top_parser()
        for other, ep in eps.items():
            sub.add_parser(other, help=_help_line(ep), add_help=False)
        parser.parse_args(argv)  # prints help or the usage error, and exits
        return 2  # pragma: no cover - argparse exits above
    from secagg.errors import SecAggError  # a command runs: secagg is imported anyway
    module = _load(eps[name])
    parser, sub = _top_parser()
    _add(sub, name, module, with_arguments=True)
    if isinstance(module, Exception):
        print(f"secagg: error: '{name}' is unavailable: {module}", file=sys.stderr)
        return 2
    args, extra = parser.parse_known_args(argv)
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


def console() -> NoReturn:
    """The ``secagg`` executable: :func:`main`, then a quicker exit.

    With torch and SciPy loaded, the interpreter's shutdown spends most of a second in the
    garbage collector walking their objects. Collecting once (so unreachable objects are
    finalized as usual) and then freezing the survivors lets the final collection skip
    them; they are still released with their modules. Only for the process's end: a
    caller of :func:`main` (the tests) keeps its collector as it was.
    """
    code = main()
    gc.collect()
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    console()
