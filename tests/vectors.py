"""The one reader of the test vectors under ``tests/vectors/<primitive>/<source>.json``.

Vectors are typed in from the RFCs that publish them, one JSON file per source. Byte strings
are written as the RFCs print them: hex, optionally with spaces or colons between bytes, and
long ones as a list of rows (one row per line of the RFC's hex dump). :func:`unhex` turns any
of these forms back into bytes; :func:`load` reads a file; :func:`cases` turns a list of
vectors into pytest parameters named after the RFC section.

A vector that disagrees with the code under test is a finding, never something to "fix":
check it against the RFC text first.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest

__all__ = ["VECTORS_DIR", "cases", "load", "unhex"]

VECTORS_DIR = Path(__file__).resolve().parent / "vectors"


def unhex(value: str | list[str]) -> bytes:
    """Bytes from an RFC-style hex string or list of rows (spaces and colons ignored)."""
    text = "".join(value) if isinstance(value, list) else value
    digits = "".join(text.split()).replace(":", "")
    return bytes.fromhex(digits)


@cache
def _read(relpath: str) -> str:
    return (VECTORS_DIR / relpath).read_text(encoding="utf-8")


def load(relpath: str) -> dict[str, Any]:
    """The parsed JSON of ``tests/vectors/<relpath>`` (a fresh copy on every call)."""
    data: dict[str, Any] = json.loads(_read(relpath))
    return data


def cases(relpath: str, group: str) -> list[Any]:
    """A ``pytest.param`` per vector in ``load(relpath)[group]``, named after the vector."""
    return [pytest.param(v, id=v["name"]) for v in load(relpath)[group]]
