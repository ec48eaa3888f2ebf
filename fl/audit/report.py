"""The report folder of an audit: its JSON, every canary's score, and a histogram.

:func:`write_audit_report` writes exactly :data:`AUDIT_FILES`:

============== ===========================================================================
file           contents
============== ===========================================================================
audit.json     the ``secagg audit --json`` object
canaries.csv   one row per canary: its index, secret bit, score and the attack's guess
scores.png     histograms of the scores of included and excluded canaries, the two
               guessing thresholds, and both epsilons in the title
============== ===========================================================================

Canaries are synthetic clients made by the audit, and scores are computed from released
aggregates only, so nothing here comes from a real client (principle 3).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from fl.audit.canaries import AuditResult
from fl.training.report import json_safe

__all__ = ["AUDIT_FILES", "write_audit_report"]

#: The files :func:`write_audit_report` writes, and nothing else.
AUDIT_FILES: tuple[str, ...] = ("audit.json", "canaries.csv", "scores.png")




def write_audit_report(result: AuditResult, out_dir: str | Path) -> Path:
    """Write :data:`AUDIT_FILES` for ``result`` into ``out_dir`` (created if needed).

    Returns:
        The folder, as an absolute path.

    Raises:
        OSError: the folder cannot be created or written.
    """
    folder = Path(out_dir).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    summary = json_safe(result.to_json(str(folder)))
    (folder / "audit.json").write_text(json.dumps(summary, indent=1, allow_nan=False) + "\n")
    guess = np.full(len(result.scores), "abstain", dtype=object)
    guess[result.guessed_in] = "in"
    guess[result.guessed_out] = "out"
    with (folder / "canaries.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["canary", "included", "score", "guess"])
        for j, (bit, score) in enumerate(zip(result.included, result.scores)):
            writer.writerow([j, int(bit), f"{score:.6g}", guess[j]])
    _plot(result, folder / "scores.png")
    return folder


def _plot(result: AuditResult, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cfg, s = result.config, result.scores
    fig = Figure(figsize=(7.0, 4.0), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    bins: int | list[float] = 10
    if s.size and s.max() > s.min():
        bins = np.linspace(float(s.min()), float(s.max()), 41).tolist()
    ax.hist(s[result.included], bins=bins, alpha=0.6, label="included canaries (in)")
    ax.hist(s[~result.included], bins=bins, alpha=0.6, label="excluded canaries (out)")
    if len(result.guessed_in):
        ax.axvline(float(s[result.guessed_in].min()), color="black", linestyle="--",
                   label=f"guess 'in' above ({len(result.guessed_in)})")
        ax.axvline(float(s[result.guessed_out].max()), color="grey", linestyle=":",
                   label=f"guess 'out' below ({len(result.guessed_out)})")
    eps = result.run.epsilon
    accounted = f"accounted ε = {eps:.3f}" if eps is not None else "no DP (ε = ∞)"
    ax.set_title(f"Canary audit, {cfg.protocol}: empirical ε ≥ {result.empirical_epsilon:.3f} "
                 f"({cfg.confidence:.0%}) vs {accounted}, δ = {cfg.delta:g}", fontsize="medium")
    ax.set_xlabel("score: Σ over rounds of cos(released aggregate, canary direction)")
    ax.set_ylabel("canaries")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    fig.savefig(path, format="png")
