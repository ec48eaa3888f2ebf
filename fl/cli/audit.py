"""``secagg audit``: measure privacy from below with canary clients, next to the accountant.

Trains like ``secagg run`` (real protocol, real DP, real ledger) with ``--canaries`` extra
clients, each a fixed random direction of norm = the clip, each included with probability
1/2. An adversary that sees every released aggregate scores every canary, guesses "in" for
the top scores and "out" for the bottom ones, and the number of right guesses becomes an
empirical epsilon lower bound at 95% confidence (Steinke, Nasr and Jagielski 2023), printed
next to the ledger's epsilon at the same delta (:mod:`fl.audit`).

Progress goes to stderr; the table to stdout (to stderr with ``--json``, whose object is the
last stdout line). The report folder (``--out``) receives ``audit.json``, ``canaries.csv``
and ``scores.png`` (:mod:`fl.audit.report`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import protocols
from fl.cli._common import (
    add_json_flag,
    check_out_dir,
    default_out,
    emit_json,
    one_torch_thread,
    stderr_console,
)
from fl.training.config import DEFAULT_EPSILON, RoundRecord
from fl.training.data import DATASETS

if TYPE_CHECKING:
    from rich.progress import Progress
    from rich.table import Table

__all__ = ["HELP", "add_arguments", "run"]

HELP = "empirical privacy audit: canary clients, a membership attack, an epsilon lower bound"


#: The defaults of :class:`fl.audit.AuditConfig`, spelled out so that parsing the command line
#: does not import the audit (and torch with it); tests/test_cli.py checks they agree.
DEFAULTS = SimpleNamespace(protocol="secagg+", clients=20, rounds=5, dataset="digits", dp=True,
                           delta=1e-5, epochs=5, canaries=500)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add ``secagg audit``'s options to ``p``."""
    d = DEFAULTS
    p.add_argument("--protocol", default=d.protocol,
                   help=f"one of: {', '.join(protocols.names())} (default {d.protocol})")
    p.add_argument("--dp", action=argparse.BooleanOptionalAction, default=d.dp,
                   help="central DP on every aggregate (default on)")
    p.add_argument("--epsilon", type=float, default=None,
                   help=f"DP budget at --delta (default {DEFAULT_EPSILON:g})")
    p.add_argument("--delta", type=float, default=d.delta,
                   help=f"delta of both epsilons (default {d.delta:g})")
    p.add_argument("--noise-multiplier", type=float, default=None, metavar="Z",
                   help="noise std / sensitivity (default: calibrated to --epsilon)")
    p.add_argument("--canaries", type=int, default=d.canaries, metavar="M",
                   help=f"canary clients, each included with probability 1/2 "
                   f"(default {d.canaries})")
    p.add_argument("--guesses", type=int, default=None, metavar="R",
                   help="guesses: top R/2 scores 'in', bottom R/2 'out' (default 2*floor(M/5))")
    p.add_argument("--rounds", type=int, default=d.rounds, help=f"rounds (default {d.rounds})")
    p.add_argument("--clients", type=int, default=d.clients,
                   help=f"real clients, all in every round (default {d.clients})")
    p.add_argument("--dataset", default=d.dataset,
                   help=f"one of: {', '.join(DATASETS)} (default {d.dataset}: an MLP of "
                   "2,410 parameters, so random directions are nearly orthogonal)")
    p.add_argument("--epochs", type=int, default=d.epochs,
                   help=f"local epochs per round (default {d.epochs})")
    p.add_argument("--seed", type=int, default=None,
                   help="seed the run, the canaries and the secret bits (experiments only)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="report folder (default secagg-runs/<time>-audit-<protocol>)")
    add_json_flag(p)




class _Bars:
    """One progress bar over rounds, on stderr."""

    def __init__(self, progress: Progress, rounds: int) -> None:
        self.progress = progress
        self.task = progress.add_task("rounds", total=rounds)

    def round_started(self, round_: int, cohort: int) -> None:
        self.progress.update(self.task, description=f"round {round_}: local training")

    def client_trained(self) -> None:
        pass

    def round_finished(self, record: RoundRecord) -> None:
        eps = "" if record.epsilon is None else f"  ε={record.epsilon:.2f}"
        self.progress.update(self.task, advance=1, description=f"rounds  {record.contributors} "
                             f"contributors ({record.cohort} real){eps}")


def run(args: argparse.Namespace) -> int:
    """Audit, write the report, print the table and/or JSON."""
    out_dir = check_out_dir(args.out if args.out else default_out(args.protocol, "audit"),
                            "--out")
    logging.getLogger("absl").setLevel(logging.ERROR)  # dp_accounting's per-order notes
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from fl.audit import AuditConfig, plan_audit, run_audit, write_audit_report

    console = stderr_console()
    cfg = AuditConfig(
        protocol=args.protocol, clients=args.clients, rounds=args.rounds,
        dataset=args.dataset, dp=args.dp, epsilon=args.epsilon, delta=args.delta,
        noise_multiplier=args.noise_multiplier, epochs=args.epochs, canaries=args.canaries,
        guesses=args.guesses, seed=args.seed,
    )
    plan = plan_audit(cfg)  # every check, before any output
    one_torch_thread()
    if cfg.seed is not None and cfg.dp:
        console.print("[yellow]note: --seed makes the DP noise reproducible: for experiments "
                      "only, it protects nobody[/yellow]")
    out_dir.mkdir(parents=True, exist_ok=True)  # checked above; made before any training
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        result = run_audit(plan, observer=_Bars(progress, cfg.rounds))
    folder = write_audit_report(result, out_dir)
    summary = result.to_json(str(folder))
    table = _table(summary)
    if args.json:
        console.print(table)
        emit_json(summary)
    else:
        Console(file=sys.stdout).print(table)
    return 0


def _table(s: dict[str, Any]) -> Table:
    from rich.table import Table

    t = Table(title=f"secagg audit: {s['protocol']}, {s['dataset']} "
              f"({s['model_params']:,} parameters)")
    t.add_column("measure")
    t.add_column("value", justify="right", overflow="fold")
    t.add_row("canaries (included)", f"{s['canaries']} ({s['canaries_included']})")
    t.add_row("real clients x rounds", f"{s['clients']} x {s['rounds']}  (mean cohort "
              f"{s['mean_cohort']:.0f} with canaries)")
    t.add_row("correct guesses", f"{s['correct_guesses']} / {s['guesses']}  "
              f"({s['guess_accuracy']:.1%})")
    bound = (f"  (at most {s['max_advantage']:.3f} under the accounted ε)"
             if s["max_advantage"] is not None else "")
    t.add_row("advantage TPR - FPR (median threshold)", f"{s['advantage']:.3f}{bound}")
    t.add_row(f"empirical ε lower bound ({s['confidence']:.0%}, δ={s['delta']:g})",
              f"{s['empirical_epsilon_lower_bound']:.3f}")
    if s["dp"]:
        t.add_row(f"accounted ε (δ={s['delta']:g})",
                  f"{s['epsilon']:.3f}  (noise multiplier {s['noise_multiplier']:.4g})")
    else:
        t.add_row("accounted ε", "none: DP is off (ε = ∞)")
    t.add_row("model accuracy (canaries in the cohort)", f"{s['final_accuracy']:.3f}")
    t.add_row("time", f"{s['seconds']:.1f} s")
    t.add_row("report", str(s["report_dir"]))
    return t
