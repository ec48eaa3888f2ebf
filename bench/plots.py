"""PNG plots of a bench run (matplotlib, Agg backend): one line per protocol.

Each plot varies one axis and holds the others at the run's base point (see
:mod:`bench.cells`). Flower's SecAgg+/SecAgg, when measured, is drawn dashed in the colour
of the protocol it is paired with; the client floor (k + 1 keystreams) is dotted. ``server_vs_n.png`` is the scaling curve:
server time against n next to the server's own keystream floor (dotted), and the server's
peak memory, also per (client, neighbour) pair after the accumulator.
Aborted or skipped cells are left out of the lines (they are in the JSON and CSV).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.cells import Sweep

__all__ = ["PLOTS", "write_plots"]

PLOTS = ("time_vs_clients.png", "time_vs_dim.png", "bytes_vs_dim.png",
         "server_time_vs_dropout.png", "server_vs_n.png")

Cell = dict[str, Any]


def _on_sweep(cells: Sequence[Cell], base: Sweep, axis: str) -> list[Cell]:
    fixed = {"clients": base.clients, "dim": base.dim, "dropout": base.dropout}
    fixed.pop(axis)
    return [c for c in cells
            if c["drop_schedule"] == base.schedule and all(c[k] == v for k, v in fixed.items())]


def _series(cells: Sequence[Cell], axis: str,
            value: Callable[[Cell], float | None]) -> dict[str, tuple[list[float], list[float]]]:
    out: dict[str, tuple[list[float], list[float]]] = {}
    for c in sorted(cells, key=lambda c: c[axis]):
        v = value(c)
        if v is None or v <= 0:
            continue
        xs, ys = out.setdefault(c["protocol"], ([], []))
        xs.append(c[axis])
        ys.append(v)
    return out


def _flower(key: str) -> Callable[[Cell], float | None]:
    def get(c: Cell) -> float | None:
        f = c.get("flower") or {}
        return f.get(key) if f.get("status") == "ok" else None
    return get


def _panel(ax: Any, cells: Sequence[Cell], axis: str, key: str, *, floor: bool = False,
           logx: bool = True) -> None:
    colours: dict[str, Any] = {}
    ours = [c for c in cells if c.get("status") == "ok"]
    for proto, (xs, ys) in _series(ours, axis, lambda c: c.get(key)).items():
        (line,) = ax.plot(xs, ys, marker="o", label=proto)
        colours[proto] = line.get_color()
    for proto, (xs, ys) in _series(cells, axis, _flower(key)).items():
        ax.plot(xs, ys, marker="s", linestyle="--", color=colours.get(proto),
                label=f"Flower ({proto} parameters)")
    if floor:
        for proto, (xs, ys) in _series(ours, axis, lambda c: c.get("floor_seconds")).items():
            ax.plot(xs, ys, linestyle=":", color=colours.get(proto),
                    label=f"floor: k+1 keystreams ({proto})")
    if logx:
        ax.set_xscale("log")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)


def write_plots(cells: Sequence[Cell], base: Sweep, out_dir: Path) -> list[Path]:
    """Write the PNGs of :data:`PLOTS` into ``out_dir``; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    where = (f"d={base.dim:,}", f"n={base.clients}", f"dropout={base.dropout:g}")

    def save(fig: Any, name: str) -> None:
        fig.tight_layout()
        path = out_dir / name
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)

    for axis, name, label, held in (("clients", PLOTS[0], "clients n", (where[0], where[2])),
                                    ("dim", PLOTS[1], "vector length d", (where[1], where[2]))):
        cells_on = _on_sweep(cells, base, axis)
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2))
        _panel(a1, cells_on, axis, "client_seconds", floor=True)
        a1.set(xlabel=label, ylabel="seconds",
               title=f"client compute (median client), {', '.join(held)}")
        _panel(a2, cells_on, axis, "server_seconds")
        a2.set(xlabel=label, ylabel="seconds", title=f"server compute, {', '.join(held)}")
        save(fig, name)

    cells_d = _on_sweep(cells, base, "dim")
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2))
    _panel(a1, cells_d, "dim", "upload_bytes_per_client")
    a1.set(xlabel="vector length d", ylabel="bytes",
           title=f"upload per client, {where[1]}, {where[2]}")
    _panel(a2, cells_d, "dim", "download_bytes_per_client")
    a2.set(xlabel="vector length d", ylabel="bytes",
           title=f"download per client, {where[1]}, {where[2]}")
    save(fig, PLOTS[2])

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    _panel(ax, _on_sweep(cells, base, "dropout"), "dropout", "server_seconds", logx=False)
    ax.set(xlabel=f"dropout rate ({base.schedule} schedule)", ylabel="seconds",
           title=f"server compute, {where[1]}, {where[0]}")
    save(fig, PLOTS[3])

    cells_n = [c for c in _on_sweep(cells, base, "clients") if c.get("status") == "ok"]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2))
    _panel(a1, cells_n, "clients", "server_seconds")
    for proto, (xs, ys) in _series(cells_n, "clients",
                                   lambda c: c.get("server_floor_seconds")).items():
        a1.plot(xs, ys, linestyle=":", marker=".", label=f"server floor: its keystreams ({proto})")
    a1.legend(fontsize=7)
    a1.set(xlabel="clients n", ylabel="seconds",
           title=f"server compute vs its floor, {where[0]}, {where[2]}")

    def per_pair(c: Cell) -> float | None:
        # the peak less the accumulator (dim + 1 ring words), per (client, neighbour) pair
        k, peak = c.get("degree"), c.get("server_peak_bytes")
        acc = (c["dim"] + 1) * (c.get("ring_bytes") or 4)
        return (peak - acc) / (c["clients"] * k) if k and peak else None

    _panel(a2, [c for c in cells_n if c.get("degree")], "clients", "server_peak_bytes")
    a2b = a2.twinx()
    for proto, (xs, ys) in _series(cells_n, "clients", per_pair).items():
        a2b.plot(xs, ys, linestyle="-.", marker="x", color="grey",
                 label=f"bytes per (client, neighbour) pair ({proto})")
    a2b.set_ylabel("bytes per pair")
    a2b.legend(fontsize=7, loc="lower right")
    a2.set(xlabel="clients n", ylabel="server peak bytes",
           title=f"server memory, {where[0]}, {where[2]}")
    save(fig, PLOTS[4])
    return paths
