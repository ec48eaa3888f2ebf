"""The report folder of a training run: metrics as JSON and CSV, and PNG plots.

:func:`write_report` writes exactly these files into a folder:

============== ===========================================================================
file           contents
============== ===========================================================================
metrics.json   the ``secagg run --json`` object: settings, final figures, per-round history
metrics.csv    one row per round: the fields of :class:`fl.run.RoundRecord`
accuracy.png   held-out test accuracy per round (round 0 is the initial model), and the
               clients' mean training accuracy as decoded from the secure sum (unless its
               DP noise would swamp it)
epsilon.png    epsilon at delta after each round (or a note that DP was off)
time.png       seconds per round: wall clock, and the protocol's server and client compute
bytes.png      bytes one client sent and received per round (median over the cohort)
============== ===========================================================================

Principle 3: everything here comes from a :class:`fl.run.RunResult`, which holds aggregates
only: no client's update, its bytes, or anything computed from one client alone.

Plots are drawn with matplotlib's Agg canvas directly (no pyplot, no display, no global
backend change).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from fl._json import json_safe
from fl.runconfig import RoundRecord, RunResult

__all__ = ["REPORT_FILES", "write_report"]

#: The files :func:`write_report` writes, and nothing else.
REPORT_FILES: tuple[str, ...] = (
    "metrics.json", "metrics.csv", "accuracy.png", "epsilon.png", "time.png", "bytes.png",
)

#: The clients' decoded training accuracy is drawn only while its DP noise is below this.
_MAX_TRAIN_NOISE = 0.1




def write_report(result: RunResult, out_dir: str | Path) -> Path:
    """Write :data:`REPORT_FILES` for ``result`` into ``out_dir`` (created if needed).

    Returns:
        The folder, as an absolute path.

    Raises:
        OSError: the folder cannot be created or written.
    """
    folder = Path(out_dir).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    summary = json_safe(result.to_json(str(folder)))
    (folder / "metrics.json").write_text(json.dumps(summary, indent=1, allow_nan=False) + "\n")
    _write_csv(folder / "metrics.csv", result.history)
    _plots(result, folder)
    return folder


def _write_csv(path: Path, history: Sequence[RoundRecord]) -> None:
    names = [f.name for f in fields(RoundRecord)]
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=names)
        writer.writeheader()
        for record in history:
            row = asdict(record)
            writer.writerow({k: "" if row[k] is None else row[k] for k in names})


def _figure(title: str, ylabel: str) -> tuple[Any, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.0, 3.6), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.set_title(title)
    ax.set_xlabel("round")
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    return fig, ax


def _from_zero(ax: Any, *series: Sequence[float]) -> None:
    top = max((max(s) for s in series if s), default=0.0)
    ax.set_ylim(0.0, top * 1.15 if top > 0 else 1.0)


def _save(fig: Any, ax: Any, path: Path, legend: bool = True) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best", fontsize="small")
    fig.savefig(path, format="png")


def _plots(result: RunResult, folder: Path) -> None:
    cfg = result.config
    hist = result.history
    rounds = [r.round for r in hist]
    label = f"{cfg.protocol}, {cfg.clients} clients, {cfg.dataset}"

    fig, ax = _figure(f"Accuracy ({label})", "accuracy")
    ax.plot([0, *rounds], [result.initial_accuracy, *(r.test_accuracy for r in hist)],
            marker="o", label="held-out test (server)")
    train = [(r.round, r.train_accuracy) for r in hist if r.train_accuracy is not None]
    stds = [r.train_noise_std for r in hist if r.train_noise_std is not None]
    noise = max(stds) if stds else 0.0
    if train and noise <= _MAX_TRAIN_NOISE:
        how = f", DP noise std {noise:.2g}" if stds else ""
        ax.plot(*zip(*train), marker=".", linestyle="--", alpha=0.6,
                label=f"clients' training mean (secure sum{how})")
    elif train:  # drawn, it would be noise: say so instead
        ax.plot([], [], linestyle="none", label=f"clients' training mean not drawn: its DP "
                f"noise std is {noise:.2g} (metrics.csv has it)")
    ax.set_ylim(0.0, 1.02)
    _save(fig, ax, folder / "accuracy.png")

    fig, ax = _figure("Privacy spent", "epsilon")
    eps = [(r.round, r.epsilon) for r in hist if r.epsilon is not None]
    if cfg.dp and eps:
        ax.plot(*zip(*eps), marker="o", label=f"epsilon at delta={cfg.delta:g}")
        budget = result.to_json()["epsilon_budget"]
        if budget is not None:
            ax.axhline(budget, color="red", linestyle=":", label=f"budget {budget:g}")
        ax.set_ylim(bottom=0.0)
    else:
        ax.text(0.5, 0.5, "DP off: no privacy guarantee", ha="center", va="center",
                transform=ax.transAxes)
    _save(fig, ax, folder / "epsilon.png")

    fig, ax = _figure("Time per round", "seconds")
    wall = [r.seconds for r in hist]
    ax.plot(rounds, wall, marker="o", label="round (wall clock, training included)")
    ax.plot(rounds, [r.server_seconds for r in hist], marker=".", label="server protocol compute")
    ax.plot(rounds, [r.client_seconds for r in hist], marker=".",
            label="one client's protocol compute (median)")
    _from_zero(ax, wall)
    _save(fig, ax, folder / "time.png")

    fig, ax = _figure("Bytes per client per round (median over the cohort)", "bytes")
    sent = [float(r.upload_bytes_per_client) for r in hist]
    got = [float(r.download_bytes_per_client) for r in hist]
    ax.plot(rounds, sent, marker="o", label="sent")
    ax.plot(rounds, got, marker="s", linestyle="--", label="received")
    _from_zero(ax, sent, got)
    _save(fig, ax, folder / "bytes.png")
