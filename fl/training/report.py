"""The report folder of a training run: metrics as JSON and CSV, and PNG plots.

:func:`write_report` writes exactly these files into a folder:

============== ===========================================================================
file           contents
============== ===========================================================================
metrics.json   the ``secagg run --json`` object: settings, final figures, per-round history
metrics.csv    one row per round: the fields of :class:`fl.training.config.RoundRecord` (in a
               DP run the decoded train metrics are ``train_loss_dp_noised`` and
               ``train_accuracy_dp_noised``: they carry the round's DP noise)
accuracy.png   held-out test accuracy per round (round 0 is the initial model), and the
               clients' mean training accuracy as decoded from the secure sum (unless its
               DP noise would swamp it)
epsilon.png    epsilon at delta after each round (or a note that DP was off)
time.png       seconds per round: wall clock, and the protocol's server and client compute
bytes.png      bytes one client sent and received per round (median over the cohort)
============== ===========================================================================

With ``plots=False`` (``secagg run`` without ``--plots``) only the two metrics files are
written, and matplotlib is never imported.

:func:`noise_check` tells before training whether a DP run's noise will swamp its updates.
:func:`json_safe` turns any of it into strict JSON (also for every ``--json`` output and the
audit and bench reports).

Principle 3: everything here comes from a :class:`fl.training.config.RunResult`, which holds
aggregates only: no client's update, its bytes, or anything computed from one client alone.

Plots are drawn with matplotlib's Agg canvas directly (no pyplot, no display, no global
backend change), with a fixed layout; matplotlib is imported only to draw them (about 0.4 s
of import and 0.2 s of drawing on a 2-core machine).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fl.training.config import DP_NOISED, DP_NOISED_SUFFIX, RoundRecord, RunResult
from fl.training.payload import WIRE_NORM

if TYPE_CHECKING:
    from fl.training.loop import RunPlan

__all__ = [
    "METRICS_FILES", "NoiseCheck", "REPORT_FILES", "json_safe", "noise_check", "write_report",
]

#: The files :func:`write_report` writes, and nothing else.
REPORT_FILES: tuple[str, ...] = (
    "metrics.json", "metrics.csv", "accuracy.png", "epsilon.png", "time.png", "bytes.png",
)
#: The files it writes with ``plots=False``.
METRICS_FILES: tuple[str, ...] = REPORT_FILES[:2]

#: The clients' decoded training accuracy is drawn only while its DP noise is below this.
_MAX_TRAIN_NOISE = 0.1




def json_safe(v: Any) -> Any:
    """``v`` with NaN/inf floats as None, tuples as lists and keys as strings, so that
    ``json.dumps(..., allow_nan=False)`` accepts it."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {str(k): json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [json_safe(x) for x in v]
    return v


def write_report(result: RunResult, out_dir: str | Path, *, plots: bool = True,
                 extra: Mapping[str, Any] | None = None) -> Path:
    """Write :data:`REPORT_FILES` for ``result`` into ``out_dir`` (created if needed).

    Args:
        plots: draw the PNG plots; ``False`` writes :data:`METRICS_FILES` only.
        extra: more top-level keys for metrics.json (e.g. :meth:`NoiseCheck.to_json`).

    Returns:
        The folder, as an absolute path.

    Raises:
        OSError: the folder cannot be created or written.
    """
    folder = Path(out_dir).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    summary = json_safe({**result.to_json(str(folder)), **(extra or {})})
    (folder / "metrics.json").write_text(json.dumps(summary, indent=1, allow_nan=False) + "\n")
    _write_csv(folder / "metrics.csv", result.history, dp_noised=result.config.dp)
    if plots:
        _plots(result, folder)
    return folder


def _write_csv(path: Path, history: Sequence[RoundRecord], *, dp_noised: bool) -> None:
    names = [f"{f.name}{DP_NOISED_SUFFIX}" if dp_noised and f.name in DP_NOISED else f.name
             for f in fields(RoundRecord)]
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=names)
        writer.writeheader()
        for record in history:
            row = record.to_json(dp_noised=dp_noised)
            writer.writerow({k: "" if row[k] is None else row[k] for k in names})


@dataclass(frozen=True)
class NoiseCheck:
    """How loud a DP run's noise is next to the updates it protects, known before training.

    ``ratio`` is the expected noise-to-signal of one round: the expected L2 norm of the noise
    in the summed model update over the largest norm that sum can have (every planned
    survivor's update at the clip, with full weight, all pointing the same way). Over
    ``rounds`` rounds such steps add up ``rounds`` times while independent noise adds up
    ``sqrt(rounds)`` times, so the run's ratio is ``ratio / sqrt(rounds)``; above 1 the noise
    outweighs even the best-aligned training (real updates point apart, so this is a lower
    bound): the run is ``swamped``. (On the bundled data at the defaults: breast_cancer 0.64,
    accuracy 0.95; digits 4.0, accuracy about 0.3; synthetic 5.6, about 0.13.)

    At a fixed noise multiplier (set by epsilon, delta, rounds and the sampling rate alone)
    the ratio falls as ``1 / cohort``: ``clients_needed`` (or ``cohort_needed`` with a fixed
    cohort) brings the run's ratio to 1.
    """

    ratio: float
    rounds: int
    noise_multiplier: float
    cohort: float
    cohort_needed: int
    clients: int
    clients_needed: int
    fixed_cohort: bool

    @property
    def run_ratio(self) -> float:
        """The run's noise-to-signal, ``ratio / sqrt(rounds)``."""
        return self.ratio / math.sqrt(self.rounds)

    @property
    def swamped(self) -> bool:
        """Whether the noise outweighs the best-aligned training (``run_ratio > 1``)."""
        return self.run_ratio > 1.0

    def advice(self) -> str:
        """One line for the user: the ratio, and what would bring it down."""
        more = (f"--cohort {self.cohort_needed} (with --clients >= {self.cohort_needed})"
                if self.fixed_cohort else f"--clients {self.clients_needed}")
        return (f"DP noise swamps the model updates: expected noise-to-signal is "
                f"{self.ratio:.3g} per round, {self.run_ratio:.3g} over {self.rounds} "
                f"round(s) (noise multiplier {self.noise_multiplier:.3g}, {self.cohort:g} "
                f"clients per round), so accuracy will stall; about {more} would bring it "
                "to 1, as would a larger --epsilon")

    def to_json(self) -> dict[str, Any]:
        """The keys ``secagg run`` adds to its JSON and metrics.json."""
        return {"noise_to_signal": self.ratio, "noise_to_signal_run": self.run_ratio,
                "noise_swamps_signal": self.swamped,
                "clients_for_noise_to_signal_1": max(self.clients_needed, self.clients)}


def noise_check(plan: RunPlan) -> NoiseCheck | None:
    """The :class:`NoiseCheck` of a planned run, or ``None`` without DP."""
    cfg, z = plan.config, plan.noise_multiplier
    if z is None:
        return None
    d = len(plan.model)
    enc = plan.encoding
    sigma = z * enc.l2_sensitivity(d + 2)  # per coordinate of the sum, integer units
    cohort = float(cfg.cohort) if cfg.cohort is not None else cfg.sampling_rate * cfg.clients
    survivors = max(cohort - round(cfg.dropout * cohort), 1.0)
    signal = survivors * plan.max_weight * WIRE_NORM * enc.scale
    ratio = sigma * math.sqrt(d) / signal
    grow = max(ratio / math.sqrt(cfg.rounds), 1.0)
    return NoiseCheck(
        ratio=ratio, rounds=cfg.rounds, noise_multiplier=z, cohort=survivors,
        cohort_needed=math.ceil(cohort * grow), clients=cfg.clients,
        clients_needed=math.ceil(cfg.clients * grow), fixed_cohort=cfg.cohort is not None,
    )


def _figure(title: str, ylabel: str) -> tuple[Any, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # A fixed layout: matplotlib's constrained layout costs a third more per figure.
    fig = Figure(figsize=(6.0, 3.6), dpi=100)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(left=0.12, right=0.97, top=0.91, bottom=0.14)
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
