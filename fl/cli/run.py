"""``secagg run``: federated training over secure aggregation, with central DP by default.

Trains the dataset's default model with FedAvg (:mod:`fl.training.loop`): every round the cohort's
clipped updates and metrics go through one round of ``--protocol`` on ``--engine``, discrete
Gaussian noise goes into the sum (added by the decoding party, or with ``--dp-mode distributed`` by
every client before masking) and is charged to the privacy ledger, and the server evaluates the new
model on the held-out set. Progress bars go to stderr; the final table to stdout (to stderr with
``--json``, whose object is the last stdout line). The report folder (``--out``) receives metrics
as JSON and CSV and, with ``--plots``, PNG plots (:mod:`fl.training.report`; off by default:
matplotlib and the drawing cost about 0.6 s, a quarter of the start-up); in a DP run the decoded
train metrics are named ``*_dp_noised``.

With DP, ``--epsilon`` is the budget at ``--delta``. Without ``--noise-multiplier`` the noise
is calibrated so that all ``--rounds`` fit the budget (default budget
:data:`fl.training.config.DEFAULT_EPSILON`); with it, a plan that would exceed the budget is
refused before training. ``--ledger FILE`` carries the spent budget across runs; a ledger with less
than :data:`fl.privacy.rounds.MIN_BUDGET_LEFT` of its budget left is refused until ``--epsilon``
raises the budget.

Before any training: the report folder must be writable or creatable
(:func:`fl.cli._common.check_out_dir`), every setting is checked
(:func:`fl.training.loop.plan_run`), and a DP run whose noise will swamp its updates says so, with
the number of clients that would not (:func:`fl.training.report.noise_check`). Each refusal is one
``secagg: error:`` line.

``--dp-mode bolt-on`` (logistic regression only) replaces the client-level noise by Bolt-on
output perturbation (:mod:`fl.privacy.bolt_on`, example-level DP). ``--k-anonymity K`` makes every
client's records K-anonymous over ``--quasi-identifiers`` before it trains
(:mod:`fl.training.anonymity`); ``--baseline`` also trains on the raw records and reports both
accuracies.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
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
from fl.engines import engine_names
from fl.privacy.rounds import DP_MODES
from fl.training.config import (
    DEFAULT_EPSILON,
    DEFAULT_LR,
    SPLITS,
    RoundRecord,
    RunConfig,
    RunResult,
)
from fl.training.data import DATASETS
from secagg.dp import ACCOUNTANTS
from secagg.errors import ConfigError

if TYPE_CHECKING:
    from rich.progress import Progress
    from rich.table import Table

# Light at import: parsing the command line must not pay for torch (fl.cli's docstring).
# fl.training.loop, rich's widgets and the report are imported by run().

__all__ = ["HELP", "add_arguments", "run"]

HELP = "train a model with federated averaging over secure aggregation, with DP"

_DEFAULTS = RunConfig()


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add ``secagg run``'s options to ``p``."""
    d = _DEFAULTS
    g = p.add_argument_group("run")
    g.add_argument("--protocol", default=d.protocol,
                   help=f"one of: {', '.join(protocols.names())} (default {d.protocol})")
    g.add_argument("--clients", type=int, default=d.clients,
                   help=f"number of clients (default {d.clients})")
    g.add_argument("--rounds", type=int, default=d.rounds, help=f"rounds (default {d.rounds})")
    g.add_argument("--enrolled", action="store_true",
                   help="secagg/secagg+ with enrolled clients: two exchanges per round, no "
                        "per-round key setup (simulation engine)")
    g.add_argument("--dataset", default=d.dataset,
                   help=f"one of: {', '.join(DATASETS)} (default {d.dataset})")
    g.add_argument("--split", default=d.split,
                   help=f"one of: {', '.join(SPLITS)} (default {d.split})")
    g.add_argument("--alpha", type=float, default=d.alpha,
                   help=f"Dirichlet label skew for --split dirichlet (default {d.alpha})")
    g.add_argument("--dropout", type=float, default=d.dropout,
                   help="fraction of each cohort that drops out mid-protocol (default 0)")
    g.add_argument("--engine", default=d.engine,
                   help=f"one of: {', '.join(engine_names())} (default {d.engine})")
    g.add_argument("--seed", type=int, default=None,
                   help="seed everything, DP noise included (experiments only)")
    g.add_argument("--out", default=None, metavar="DIR",
                   help="report folder (default secagg-runs/<time>-<protocol>)")
    g.add_argument("--plots", action=argparse.BooleanOptionalAction, default=False,
                   help="also draw PNG plots of accuracy, epsilon, time and bytes per round "
                   "into the report folder (default off: metrics.json and metrics.csv only; "
                   "matplotlib costs about 0.6 s)")
    dp = p.add_argument_group("differential privacy")
    dp.add_argument("--dp", action=argparse.BooleanOptionalAction, default=d.dp,
                    help="central DP on every aggregate (default on)")
    dp.add_argument("--dp-mode", default=d.dp_mode,
                    help=f"one of: {', '.join(DP_MODES)} (default {d.dp_mode}; distributed: "
                    "every client noises before masking, secagg and secagg+ only; bolt-on: "
                    "output perturbation for logistic regression, example-level DP)")
    dp.add_argument("--bolt-on-l2", type=float, default=d.bolt_on_l2, metavar="LAMBDA",
                    help=f"bolt-on: L2 regularisation (default {d.bolt_on_l2:g}; 0: convex "
                    "bound with constant step --lr)")
    dp.add_argument("--bolt-on-norm", type=float, default=d.bolt_on_norm, metavar="R",
                    help=f"bolt-on: clip each record's features to L2 norm R "
                    f"(default {d.bolt_on_norm:g})")
    dp.add_argument("--epsilon", type=float, default=None,
                    help=f"budget at --delta (default {DEFAULT_EPSILON:g} when the noise "
                    "multiplier is calibrated)")
    dp.add_argument("--delta", type=float, default=d.delta, help=f"delta (default {d.delta:g})")
    dp.add_argument("--noise-multiplier", type=float, default=None, metavar="Z",
                    help="noise std / sensitivity (default: calibrated to --epsilon)")
    dp.add_argument("--accountant", default=d.accountant,
                    help=f"one of: {', '.join(ACCOUNTANTS)} (default {d.accountant})")
    dp.add_argument("--sampling-rate", type=float, default=d.sampling_rate, metavar="Q",
                    help="Poisson sampling rate of clients per round (default 1: everyone)")
    dp.add_argument("--cohort", type=int, default=None, metavar="K",
                    help="fixed-size sample of K clients per round instead")
    dp.add_argument("--ledger", default=None, metavar="FILE",
                    help="JSON file that keeps the spent budget across runs")
    an = p.add_argument_group("k-anonymity (each client, on its own records)")
    an.add_argument("--k-anonymity", type=int, default=None, metavar="K",
                    help="generalise the quasi-identifiers (Mondrian) until every record "
                    "shares them with K-1 others (default off)")
    an.add_argument("--quasi-identifiers", default=None, metavar="COL,COL",
                    help="the quasi-identifier columns (default: the dataset's; diabetes: "
                    "age,sex,bmi,bp; breast_cancer: the mean and worst radius, perimeter "
                    "and area)")
    an.add_argument("--baseline", action="store_true",
                    help="with --k-anonymity: also train without it and report both "
                    "accuracies (an experiment: the baseline trains on the raw records)")
    tr = p.add_argument_group("training")
    tr.add_argument("--model", default=None,
                    help="linear, mlp or cnn (default: the dataset's; linear for "
                    "breast_cancer and diabetes)")
    tr.add_argument("--clip", type=float, default=d.clip,
                    help=f"L2 clip of each client's update (default {d.clip:g})")
    tr.add_argument("--max-weight", type=float, default=None,
                    help="cap on a client's weight (default: mean examples per client)")
    tr.add_argument("--lr", type=float, default=None,
                    help="local SGD rate (default: " + ", ".join(
                        f"{v:g} for {k}" for k, v in DEFAULT_LR.items()) + ")")
    tr.add_argument("--epochs", type=int, default=d.epochs,
                    help=f"local epochs per round (default {d.epochs})")
    tr.add_argument("--batch-size", type=int, default=d.batch_size,
                    help=f"local batch size (default {d.batch_size})")
    tr.add_argument("--server-lr", type=float, default=d.server_lr,
                    help=f"FedAvg server learning rate (default {d.server_lr:g})")
    add_json_flag(p)


def _config(args: argparse.Namespace) -> RunConfig:
    return RunConfig(
        protocol=args.protocol, clients=args.clients, rounds=args.rounds, dataset=args.dataset,
        split=args.split, alpha=args.alpha, dropout=args.dropout, engine=args.engine,
        dp=args.dp, dp_mode=args.dp_mode, epsilon=args.epsilon, delta=args.delta,
        noise_multiplier=args.noise_multiplier, accountant=args.accountant,
        sampling_rate=args.sampling_rate, cohort=args.cohort, clip=args.clip,
        max_weight=args.max_weight, lr=args.lr, epochs=args.epochs,
        batch_size=args.batch_size, server_lr=args.server_lr, seed=args.seed,
        ledger_path=args.ledger, model=args.model, k_anonymity=args.k_anonymity,
        quasi_identifiers=_columns(args.quasi_identifiers),
        bolt_on_l2=args.bolt_on_l2, bolt_on_norm=args.bolt_on_norm, enrolled=args.enrolled,
    )




def _columns(text: str | None) -> tuple[str, ...] | None:
    """``"age, sex"`` -> ``("age", "sex")``; ``None`` stays ``None`` (the dataset's default)."""
    if text is None:
        return None
    return tuple(c.strip() for c in text.split(",") if c.strip())


class _Bars:
    """Progress bars for rounds and for the clients of the current round, on stderr."""

    def __init__(self, progress: Progress, rounds: int) -> None:
        self.progress = progress
        self.rounds = progress.add_task("rounds", total=rounds)
        self.clients = progress.add_task("clients", total=1, visible=False)

    def round_started(self, round_: int, cohort: int) -> None:
        self.progress.reset(self.clients, total=max(cohort, 1), visible=True,
                            description=f"round {round_}: local training")

    def client_trained(self) -> None:
        self.progress.advance(self.clients)
        task = self.progress.tasks[self.clients]
        if task.completed >= (task.total or 0):
            self.progress.update(self.clients, description="secure aggregation")

    def round_finished(self, record: RoundRecord) -> None:
        self.progress.update(self.clients, description="clients")
        eps = "" if record.epsilon is None else f"  ε={record.epsilon:.2f}"
        note = "  (no release)" if record.error else ""
        self.progress.update(
            self.rounds, advance=1,
            description=f"rounds  acc={record.test_accuracy:.3f}{eps}{note}",
        )


def run(args: argparse.Namespace) -> int:
    """Check (settings, report folder), plan, train, write the report, print the table
    and/or JSON. Every check runs before any training."""
    cfg = _config(args)
    if args.baseline and cfg.k_anonymity is None:
        raise ConfigError("--baseline compares against k-anonymity; add --k-anonymity K")
    # The folder first: a run that cannot keep its results should not start.
    out_dir = check_out_dir(args.out if args.out else default_out(cfg.protocol), "--out")
    logging.getLogger("absl").setLevel(logging.ERROR)  # dp_accounting's per-order notes
    from fl.training.loop import plan_run, run_training

    plan = plan_run(cfg)  # every check of the settings; the model (torch for a net) comes here
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from fl.training.report import noise_check, write_report

    one_torch_thread()
    console = stderr_console()
    if cfg.seed is not None and cfg.dp:
        console.print("[yellow]note: --seed makes the DP noise reproducible: for experiments "
                      "only, it protects nobody[/yellow]")
    out_dir.mkdir(parents=True, exist_ok=True)  # checked above; made before any training
    check = noise_check(plan)
    if check is not None and check.swamped:
        console.print(f"[yellow]warning: {check.advice()}[/yellow]", highlight=False,
                      soft_wrap=True)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        result = run_training(plan, observer=_Bars(progress, cfg.rounds))
    if args.baseline:  # the same run on the raw records, its ledger kept apart
        raw = plan_run(dataclasses.replace(cfg, k_anonymity=None, quasi_identifiers=None,
                                           ledger_path=None))
        result.baseline_accuracy = run_training(raw).final_accuracy
    extra = check.to_json() if check is not None else {}
    folder = write_report(result, out_dir, plots=args.plots, extra=extra)
    summary = {**result.to_json(str(folder)), **extra}
    table = _table(result, summary, args.plots)
    if args.json:
        console.print(table)
        emit_json(summary)
    else:
        Console(file=sys.stdout).print(table)
    return 0 if result.failed_rounds < len(result.history) else 1


def _table(result: RunResult, s: dict[str, Any], plots: bool = True) -> Table:
    from rich.table import Table

    cfg = result.config
    mode = " (enrolled)" if cfg.enrolled else ""
    t = Table(title=f"secagg run: {cfg.protocol}{mode} on {s['engine']}, {cfg.dataset}")
    t.add_column("measure")
    t.add_column("value", justify="right", overflow="fold")
    t.add_row("clients x rounds", f"{cfg.clients} x {s['rounds']}"
              + (f" ({s['failed_rounds']} released nothing)" if s["failed_rounds"] else ""))
    t.add_row("accuracy (held-out)", f"{s['final_accuracy']:.3f}  (initial "
              f"{s['initial_accuracy']:.3f})")
    if s["baseline_accuracy"] is not None:
        t.add_row("accuracy without k-anonymity", f"{s['baseline_accuracy']:.3f}")
    if result.anonymity is not None:
        a = result.anonymity
        t.add_row(f"k-anonymity (k={a['k']})",
                  f"k achieved {a['k_achieved']}, {a['classes']} classes, NCP {a['ncp']:.3f}, "
                  f"{a['suppressed']} suppressed")
    if result.bolt_on is not None:
        t.add_row("bolt-on sensitivity (model)", f"{result.bolt_on['model_sensitivity']:.4g}  "
                  f"({result.bolt_on['bound']}, L={result.bolt_on['lipschitz']:.3g})")
    if cfg.dp:
        t.add_row(f"epsilon at delta={cfg.delta:g}",
                  f"{s['epsilon']:.3f}  ({cfg.dp_mode}; budget {s['epsilon_budget']:g}, "
                  f"{cfg.accountant})")
        t.add_row("noise multiplier", f"{s['noise_multiplier']:.4g}")
        if s.get("noise_to_signal") is not None:
            t.add_row("noise-to-signal per round (run)",
                      f"{s['noise_to_signal']:.3g} ({s['noise_to_signal_run']:.3g})"
                      + ("  noise swamps the updates" if s["noise_swamps_signal"] else ""))
    else:
        t.add_row("epsilon", "none: DP is off")
    t.add_row("time per round", f"{s['seconds_per_round']:.2f} s  (total {s['seconds']:.1f} s)")
    t.add_row("bytes per client per round", f"{s['bytes_per_client']:,.0f}")
    t.add_row("report", str(s["report_dir"]) + ("" if plots else "  (--plots draws plots)"))
    return t
