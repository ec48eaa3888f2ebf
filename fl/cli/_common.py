"""Helpers shared by the sub-commands: the JSON contract, a stderr console, and the checks
that run before any work (the report folder, memory).

Light at import (see :mod:`fl.cli`): rich is imported when a console is made.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import errno
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fl.training.report import json_safe
from secagg.errors import ConfigError

if TYPE_CHECKING:
    from rich.console import Console

__all__ = [
    "add_json_flag",
    "available_memory",
    "check_memory",
    "check_out_dir",
    "default_out",
    "emit_json",
    "format_bytes",
    "progress_status",
    "stderr_console",
]


def add_json_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true",
                   help="print one JSON object as the last line of stdout")


def emit_json(obj: dict[str, Any]) -> None:
    """Print ``obj`` as one line of strict JSON (NaN/inf become null)."""
    sys.stdout.write(json.dumps(json_safe(obj), allow_nan=False) + "\n")
    sys.stdout.flush()


def stderr_console() -> Console:
    """Progress and status go to stderr, so stdout stays machine-readable."""
    from rich.console import Console

    return Console(file=sys.stderr)


@contextmanager
def progress_status(console: Console, first: str) -> Iterator[Callable[[str], None]]:
    """Yields ``update(text)`` for what is running now: a live status line on a terminal;
    otherwise (a log file, CI) one line per change, with the seconds since the start, so a
    long run piped to a file still shows where it is."""
    if console.is_terminal:
        with console.status(first) as status:
            yield status.update
        return
    t0, last = time.perf_counter(), [""]

    def line(text: str) -> None:
        if text != last[0]:
            last[0] = text
            console.print(f"[{time.perf_counter() - t0:7.1f} s] {text}", highlight=False)

    line(first)
    yield line


def one_torch_thread() -> None:
    """One torch thread for the small torch models (``mlp``, ``cnn``): it trains them faster
    than several that wait on each other. Call it once the model is built; a run on the numpy
    linear model never loaded torch, and this does not load it."""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)


def default_out(protocol: str, kind: str = "") -> Path:
    """A fresh report folder ``secagg-runs/<UTC time>[-kind]-<protocol>`` (never reused)."""
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%d-%H%M%S")
    safe = "".join(c if c.isalnum() else "-" for c in protocol.replace("+", "plus"))
    base = Path("secagg-runs") / "-".join(p for p in (stamp, kind, safe) if p)
    out, n = base, 1
    while out.exists():
        n += 1
        out = base.with_name(f"{base.name}-{n}")
    return out


def check_out_dir(path: str | os.PathLike[str], flag: str = "--out") -> Path:
    """Make sure a report folder can be written, before any work, and leave no trace.

    An existing folder must take a new file; a missing one must be creatable (every
    missing parent too). Both are tried for real (a probe file, the folders made and
    removed again), since permission bits do not tell (root, read-only mounts, /proc).

    Returns:
        ``path`` as an absolute :class:`~pathlib.Path` (not created).

    Raises:
        ConfigError: the path is a file, lies under a file, or cannot be created or written
            (the message says which part and why).
    """
    target = Path(path).expanduser().absolute()
    made: list[Path] = []
    try:
        if target.exists() and not target.is_dir():
            raise ConfigError(f"{flag} {path} is a file, not a folder; give a folder (it is "
                              "created if missing)")
        missing = []
        probe = target
        while not probe.exists():
            missing.append(probe)
            probe = probe.parent
        if not probe.is_dir():
            raise ConfigError(f"{flag} {path} cannot be created: {probe} is a file, not a "
                              "folder; give a path under a folder")
        for folder in reversed(missing):
            folder.mkdir()
            made.append(folder)
        with tempfile.TemporaryFile(dir=target):
            pass
    except OSError as exc:
        why = exc.strerror or errno.errorcode.get(exc.errno or 0, str(exc))
        raise ConfigError(f"{flag} {path} cannot be written: {why}; give a folder you can "
                          "write to (it is created if missing)") from None
    finally:
        for folder in reversed(made):
            try:
                folder.rmdir()
            except OSError:  # pragma: no cover - someone wrote into it meanwhile
                pass
    return target


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (``MemAvailable`` of /proc/meminfo,
    else free pages), or ``None`` where neither is known."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def format_bytes(n: float) -> str:
    """``1536`` -> ``'1.5 KiB'``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def check_memory(needed: float, what: str, fits: str) -> None:
    """Refuse, before allocating, work whose memory estimate exceeds what is available.

    Args:
        needed: the estimate, in bytes (a lower bound of what the work holds at once).
        what: the work, for the message (``"100 clients x 10^12 values"``).
        fits: what would fit, for the message (``"--dim <= 3,000,000"``).

    Raises:
        ConfigError: ``needed`` is more than the available memory.
    """
    avail = available_memory()
    if avail is not None and needed > avail:
        raise ConfigError(f"{what} needs at least {format_bytes(needed)} of memory, but "
                          f"{format_bytes(avail)} is available; use {fits}")
