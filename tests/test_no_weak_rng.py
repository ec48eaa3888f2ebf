"""No weak randomness and no pickle in the library: secagg/ and protocols/.

STYLE.md rule 5: randomness comes in from outside and is cryptographic. ``random`` and
``numpy.random`` never appear in secagg/ or protocols/, and the wire format is never pickle.
The check walks the syntax tree of every .py file, so a comment or a docstring that *mentions*
numpy.random is fine, but any import of, or attribute access to, them is not. Failures name the
file and the line.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("secagg", "protocols")

BANNED_MODULES = {
    "random": "the `random` module is not cryptographic; use secrets / os.urandom / Csprng",
    "numpy.random": "numpy.random is not cryptographic; use secagg.rng.Csprng",
    "pickle": "never pickle; secagg.wire is the one codec",
    "_pickle": "never pickle; secagg.wire is the one codec",
    "cPickle": "never pickle; secagg.wire is the one codec",
    "cloudpickle": "never pickle; secagg.wire is the one codec",
    "dill": "never pickle; secagg.wire is the one codec",
}


def _banned(module: str) -> str | None:
    for name, why in BANNED_MODULES.items():
        if module == name or module.startswith(name + "."):
            return why
    return None


def violations(source: str, filename: str) -> list[str]:
    """``file:line: what`` for every weak-randomness or pickle use in ``source``."""
    tree = ast.parse(source, filename=filename)
    numpy_names = {"numpy", "np"}  # names bound to the numpy module
    found: list[str] = []

    def report(node: ast.AST, what: str) -> None:
        found.append(f"{filename}:{getattr(node, 'lineno', '?')}: {what}")

    for node in ast.walk(tree):  # first pass: how is numpy imported?
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "numpy":
                    numpy_names.add(alias.asname or "numpy")
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                why = _banned(alias.name)
                if why:
                    report(node, f"import {alias.name}: {why}")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            why = _banned(node.module)
            if why:
                report(node, f"from {node.module} import ...: {why}")
            for alias in node.names:
                why = _banned(f"{node.module}.{alias.name}")
                if why and not _banned(node.module):
                    report(node, f"from {node.module} import {alias.name}: {why}")
        elif isinstance(node, ast.Attribute) and node.attr == "random":
            if isinstance(node.value, ast.Name) and node.value.id in numpy_names:
                report(node, f"{node.value.id}.random: {BANNED_MODULES['numpy.random']}")
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else (
                func.attr if isinstance(func, ast.Attribute) else "")
            arg = node.args[0].value
            if name in ("__import__", "import_module") and isinstance(arg, str):
                why = _banned(arg)
                if why:
                    report(node, f"{name}({arg!r}): {why}")
    return found


def _library_files() -> list[Path]:
    files = [p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))]
    return [p for p in files if "__pycache__" not in p.parts]


def test_the_library_files_are_found() -> None:
    files = {p.relative_to(ROOT).as_posix() for p in _library_files()}
    for must in ("secagg/rng.py", "secagg/prg.py", "secagg/wire.py", "protocols/__init__.py"):
        assert must in files


def test_no_weak_randomness_or_pickle_in_the_library() -> None:
    found: list[str] = []
    for path in _library_files():
        rel = path.relative_to(ROOT).as_posix()
        found += violations(path.read_text(encoding="utf-8"), rel)
    assert not found, "weak randomness or pickle in the library:\n" + "\n".join(found)


# -- the checker itself catches what it should, and only that -------------------------------
@pytest.mark.parametrize(("source", "line"), [
    ("import random\n", 1),
    ("import random as r\n", 1),
    ("x = 1\nfrom random import randint\n", 2),
    ("from random import SystemRandom\n", 1),
    ("import numpy as np\n\n\nx = np.random.default_rng(0)\n", 4),
    ("import numpy\nnumpy.random.seed(1)\n", 2),
    ("import numpy as xp\nxp.random.rand(3)\n", 2),
    ("from numpy import random\n", 1),
    ("from numpy.random import default_rng\n", 1),
    ("import numpy.random\n", 1),
    ("import pickle\n", 1),
    ("from pickle import loads\n", 1),
    ("import cloudpickle\n", 1),
    ("__import__('random')\n", 1),
    ("import importlib\nimportlib.import_module('pickle')\n", 2),
])
def test_checker_flags_violations_with_their_line(source: str, line: int) -> None:
    found = violations(source, "pkg/mod.py")
    assert found and found[0].startswith(f"pkg/mod.py:{line}: ")


@pytest.mark.parametrize("source", [
    "import secrets\nimport os\nx = secrets.token_bytes(32) + os.urandom(4)\n",
    "import numpy as np\nx = np.zeros(3)\n",
    '"""Never use numpy.random or random here; pickle is banned too."""\n',
    "# import random\nfrom secagg.rng import Csprng\nCsprng().random(3)\n",
    "from . import random\n",  # a sibling module that happens to be named random
    "randomness = 1\nimport randomized_module\n",
])
def test_checker_accepts_clean_code(source: str) -> None:
    assert violations(source, "pkg/mod.py") == []
