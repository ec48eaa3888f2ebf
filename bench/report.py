"""Results of a bench run: the JSON object, the CSV, the headline and the terminal table."""

from __future__ import annotations

import csv
import json
import os
import platform
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fl.training.report import json_safe

__all__ = [
    "CSV_COLUMNS",
    "headline",
    "headline_markdown",
    "machine_info",
    "print_table",
    "write_csv",
    "write_json",
]

#: The CSV's columns, in order (nested JSON fields are flattened with a prefix).
CSV_COLUMNS = (
    "protocol", "clients", "dim", "dropout", "drop_schedule", "status", "error", "repeats",
    "aborted_repeats", "degree", "threshold", "num_shares", "dropped", "dropped_by_stage",
    "survivors",
    "client_seconds", "client_seconds_max", "server_seconds", "helper_seconds",
    "upload_bytes_per_client", "download_bytes_per_client", "upload_bytes_per_param",
    "server_peak_bytes", "exact", "max_abs_error",
    "floor_streams", "floor_bytes_per_stream", "floor_seconds", "floor_keystream_seconds",
    "x_floor", "x_keystream_floor", "floor_samples",
    "server_floor_streams", "server_floor_seconds", "server_floor_keystream_seconds",
    "x_server_floor", "x_server_keystream_floor",
    "flower_status", "flower_workflow", "flower_num_shares", "flower_threshold",
    "flower_error", "flower_client_seconds", "flower_server_seconds",
    "flower_server_strategy_seconds", "flower_upload_bytes_per_client",
    "flower_download_bytes_per_client", "flower_upload_bytes_per_param",
    "flower_max_abs_error", "flower_repeats", "flower_aborted_repeats",
    "speedup_vs_flower_server", "speedup_vs_flower_client", "wall_seconds",
)


def _flat(cell: dict[str, Any]) -> dict[str, Any]:
    row = {k: v for k, v in cell.items() if k not in ("flower", "speedup_vs_flower")}
    for k, v in (cell.get("flower") or {}).items():
        row[f"flower_{k}"] = v
    for k, v in (cell.get("speedup_vs_flower") or {}).items():
        row[f"speedup_vs_flower_{k}"] = v
    if isinstance(row.get("dropped_by_stage"), dict):
        row["dropped_by_stage"] = json.dumps(row["dropped_by_stage"], sort_keys=True)
    return row


def write_csv(cells: Sequence[dict[str, Any]], path: Path) -> Path:
    """One row per cell with :data:`CSV_COLUMNS` (empty where not applicable)."""
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(CSV_COLUMNS), extrasaction="ignore")
        w.writeheader()
        for cell in cells:
            w.writerow({k: ("" if v is None else v) for k, v in _flat(cell).items()})
    return path




def write_json(obj: dict[str, Any], path: Path) -> Path:
    """``obj`` as strict JSON (NaN and infinities become null)."""
    path.write_text(json.dumps(json_safe(obj), indent=1, allow_nan=False) + "\n")
    return path


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on (and how busy it was)."""
    import cryptography
    import numpy

    cpu = platform.processor() or None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem: int | None = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    except OSError:
        pass
    usable: int | None
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=5, check=False,
                                cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    from bench.flower_peer import flower_version

    return {
        "cpu": cpu, "cpu_count": os.cpu_count(), "usable_cores": usable,
        "memory_bytes": mem, "platform": platform.platform(),
        "python": platform.python_version(), "numpy": numpy.__version__,
        "cryptography": cryptography.__version__, "flwr": flower_version(),
        "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "commit": commit or None,
    }


def _find(cells: Sequence[dict[str, Any]], protocol: str, n: int, d: int, f: float,
          schedule: str = "masked_input") -> dict[str, Any] | None:
    for c in cells:
        if (c["protocol"], c["clients"], c["dim"], c["dropout"], c["drop_schedule"]) == \
                (protocol, n, d, f, schedule):
            return c
    return None


_HEAD_KEYS = ("status", "degree", "threshold", "client_seconds", "x_floor",
              "x_keystream_floor", "floor_seconds", "server_seconds", "server_floor_seconds",
              "x_server_floor", "x_server_keystream_floor", "upload_bytes_per_param",
              "upload_bytes_per_client", "server_peak_bytes", "exact", "speedup_vs_flower")


def headline(cells: Sequence[dict[str, Any]], floor: dict[str, Any]) -> dict[str, Any]:
    """The numbers the foundation issue's targets name (n=100, d=1M, 10 % dropout)."""
    out: dict[str, Any] = {"keystream_gb_per_second": floor["keystream"]["gb_per_second"],
                           "add_gb_per_second": floor["add"]["gb_per_second"]}
    for proto in ("secagg+", "secagg"):
        c = _find(cells, proto, 100, 1_000_000, 0.1)
        if c is None:
            continue
        h = {k: c.get(k) for k in _HEAD_KEYS}
        f = c.get("flower") or {}
        h["flower"] = {k: f.get(k) for k in ("status", "error", "workflow", "num_shares",
                                              "threshold", "client_seconds", "server_seconds",
                                              "upload_bytes_per_param")} if f else None
        out[proto] = h
    return out


def _fmt(v: Any, kind: str = "g") -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "NO"
    if kind == "s":
        return f"{v:.3g}"
    if kind == "x":
        return f"{v:.2f}x"
    if kind == "mb":
        return f"{v / 1e6:.1f}"
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def print_table(cells: Sequence[dict[str, Any]], console: Any) -> None:
    """A rich table of the cells on ``console``."""
    from rich.table import Table

    t = Table(title="secagg bench (medians over repeats; x = ratio in this run)")
    cols = ("protocol", "n", "d", "drop", "sched", "status", "client s", "x floor", "server s",
            "x srv floor", "up B/param", "peak MB", "exact", "Flower client s", "Flower server s",
            "speedup server", "speedup client")
    for col in cols:
        t.add_column(col, justify="left" if col in ("protocol", "sched", "status") else "right")
    for c in cells:
        f = c.get("flower") or {}
        sp = c.get("speedup_vs_flower") or {}
        fstat = f.get("status")
        t.add_row(
            c["protocol"], str(c["clients"]), f"{c['dim']:,}", f"{c['dropout']:g}",
            c["drop_schedule"], c.get("status", "?"), _fmt(c.get("client_seconds"), "s"),
            _fmt(c.get("x_floor"), "x"), _fmt(c.get("server_seconds"), "s"),
            _fmt(c.get("x_server_floor"), "x"),
            _fmt(c.get("upload_bytes_per_param")), _fmt(c.get("server_peak_bytes"), "mb"),
            _fmt(c.get("exact")),
            _fmt(f.get("client_seconds"), "s") if fstat == "ok" else (fstat or "-"),
            _fmt(f.get("server_seconds"), "s") if fstat == "ok" else (fstat or "-"),
            _fmt(sp.get("server"), "x"), _fmt(sp.get("client"), "x"),
        )
    console.print(t)


def headline_markdown(result: dict[str, Any]) -> str:
    """A markdown table of the headline cells, for the README."""
    h = result["headline"]
    rows = [("| protocol (n=100, d=1M, 10% dropout) | client s | x floor | server s "
             "| upload B/param | server peak MB | Flower client s | Flower server s "
             "| speedup server | speedup client |"), "|---|---|---|---|---|---|---|---|---|---|"]
    for proto in ("secagg+", "secagg"):
        c = h.get(proto)
        if not c:
            continue
        f = c.get("flower") or {}
        sp = c.get("speedup_vs_flower") or {}
        ok = f.get("status") == "ok"
        name = (f"{proto} (k={c['degree']}, t={c['threshold']})" if c.get("degree") is not None
                else proto)
        rows.append(" | ".join([
            f"| {name}", _fmt(c.get("client_seconds"), "s"), _fmt(c.get("x_floor"), "x"),
            _fmt(c.get("server_seconds"), "s"), _fmt(c.get("upload_bytes_per_param")),
            _fmt(c.get("server_peak_bytes"), "mb"),
            _fmt(f.get("client_seconds"), "s") if ok else (f.get("status") or "-"),
            _fmt(f.get("server_seconds"), "s") if ok else (f.get("status") or "-"),
            _fmt(sp.get("server"), "x"), _fmt(sp.get("client"), "x")]) + " |")
    rows.append("")
    rows.append(f"ChaCha20 keystream floor: {h['keystream_gb_per_second']:.2f} GB/s per core; "
                f"uint32 add: {h['add_gb_per_second']:.2f} GB/s.")
    return "\n".join(rows)
