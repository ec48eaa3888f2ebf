"""Helpers shared by the sub-commands: the JSON contract and a stderr console."""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

from rich.console import Console

__all__ = ["add_json_flag", "emit_json", "stderr_console"]


def add_json_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true",
                   help="print one JSON object as the last line of stdout")


def _clean(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    return v


def emit_json(obj: dict[str, Any]) -> None:
    """Print ``obj`` as one line of strict JSON (NaN/inf become null)."""
    sys.stdout.write(json.dumps(_clean(obj), allow_nan=False) + "\n")
    sys.stdout.flush()


def stderr_console() -> Console:
    """Progress and status go to stderr, so stdout stays machine-readable."""
    return Console(file=sys.stderr)
