"""Helpers shared by the sub-commands: the JSON contract and a stderr console."""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console

from fl._json import json_safe

__all__ = ["add_json_flag", "default_out", "emit_json", "stderr_console"]


def add_json_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true",
                   help="print one JSON object as the last line of stdout")




def emit_json(obj: dict[str, Any]) -> None:
    """Print ``obj`` as one line of strict JSON (NaN/inf become null)."""
    sys.stdout.write(json.dumps(json_safe(obj), allow_nan=False) + "\n")
    sys.stdout.flush()


def stderr_console() -> Console:
    """Progress and status go to stderr, so stdout stays machine-readable."""
    return Console(file=sys.stderr)


def default_out(protocol: str, kind: str = "") -> Path:
    """A fresh report folder ``secagg-runs/<UTC time>[-kind]-<protocol>`` (never reused)."""
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    safe = "".join(c if c.isalnum() else "-" for c in protocol.replace("+", "plus"))
    base = Path("secagg-runs") / "-".join(p for p in (stamp, kind, safe) if p)
    out, n = base, 1
    while out.exists():
        n += 1
        out = base.with_name(f"{base.name}-{n}")
    return out
