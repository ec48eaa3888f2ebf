"""``secagg bench``: the benchmark matrix, with its floor and, optionally, Flower side by side.

Runs protocols x clients x dims x dropout through :func:`fl.engines.simulation.run_round`
(:mod:`bench.matrix`), measures the ChaCha20/uint32 floor in the same run
(:mod:`bench.floor`) and, with ``--vs flower``, Flower's own SecAgg+ on the same cells
(:mod:`bench.flower_peer`). Writes ``results.json``, ``results.csv``, ``headline.md`` and five
PNG plots into ``--out``; prints a table (stdout, or stderr with ``--json``); with ``--json``
the last stdout line is the whole result as one JSON object. Progress goes to stderr.

Reproduce the README's headline table with::

    secagg bench --quick --vs flower --json --out bench-results
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console

import protocols
from bench import cells as cellmod
from bench.floor import machine_floor
from bench.matrix import MatrixOptions, run_cells
from bench.plots import write_plots
from bench.report import (
    headline,
    headline_markdown,
    machine_info,
    print_table,
    write_csv,
    write_json,
)
from fl.cli._common import add_json_flag, emit_json, progress_status, stderr_console
from secagg.errors import ConfigError

HELP = ("benchmark the protocols over clients x dims x dropout: time, bytes, memory, "
        "x the ChaCha20 floor, and optionally x Flower's SecAgg+")

DEFAULT_CLIENTS = (10, 30, 100)
DEFAULT_DIMS = (1_000, 10_000, 100_000, 1_000_000)
DEFAULT_DROPOUTS = (0.0, 0.1, 0.2)


def _ints(text: str) -> list[int]:
    out = []
    for part in text.split(","):
        v = float(part)
        if not v.is_integer() or v < 1:
            raise argparse.ArgumentTypeError(f"expected positive integers, got {part!r}")
        out.append(int(v))
    return out


def _floats(text: str) -> list[float]:
    return [float(p) for p in text.split(",")]


def _names(text: str) -> list[str]:
    return [p for p in text.split(",") if p]


def _flatten(values: list[list[Any]] | None) -> list[Any] | None:
    return None if values is None else [v for vs in values for v in vs]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true",
                   help="the few-minute star design (see bench.cells); includes secagg+ and "
                        "secagg at n=100, d=1,000,000, 10%% dropout")
    p.add_argument("--protocols", nargs="+", type=_names, default=None, metavar="P",
                   help=f"protocols to run (default: all registered: "
                        f"{', '.join(protocols.names())}); secagg:enrolled and "
                        f"secagg+:enrolled run the enrolled mode (two exchanges per round)")
    p.add_argument("--clients", nargs="+", type=_ints, default=None, metavar="N",
                   help=f"cohort sizes (default {' '.join(map(str, DEFAULT_CLIENTS))})")
    p.add_argument("--dims", nargs="+", type=_ints, default=None, metavar="D",
                   help="vector lengths, 1e6 style accepted (default 1e3 1e4 1e5 1e6)")
    p.add_argument("--dropout", nargs="+", type=_floats, default=None, metavar="F",
                   help=f"dropout rates (default {' '.join(map(str, DEFAULT_DROPOUTS))})")
    p.add_argument("--schedules", nargs="+", type=_names, default=None, metavar="S",
                   help="dropout schedules: masked_input (clients drop after sharing keys, "
                        "before their masked input; Flower survives it) and/or spread (over "
                        "all stages, as simulate does) (default: masked_input spread)")
    p.add_argument("--repeats", type=int, default=3, help="repeats per cell (default 3)")
    p.add_argument("--cell-budget", type=float, default=None, metavar="SECONDS",
                   help="stop repeating a cell after this long, except at the headline point "
                        "n=100, d=1e6, 10%% dropout (default: 10 with --quick)")
    p.add_argument("--degree", default="10",
                   help="secagg+ neighbours k (Flower num_shares = k+1), or 'auto' for our "
                        "derivation from n and the dropout (default 10)")
    p.add_argument("--threshold", type=int, default=6,
                   help="secagg+ Shamir threshold t (= Flower reconstruction_threshold; "
                        "default 6)")
    p.add_argument("--vs", choices=["flower"], default=None,
                   help="also run Flower's own SecAgg+/SecAgg on the masking cells")
    p.add_argument("--flower-complete-max-n", type=int, default=None, metavar="N",
                   help="largest n for Flower's complete-graph SecAggWorkflow "
                        "(default: 30 with --quick, no limit otherwise)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the inputs, dropout plans and every party's CSPRNG")
    p.add_argument("--out", type=Path, default=Path("bench-results"),
                   help="folder for results.json, results.csv, headline.md and PNGs")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--deployment", action="store_true",
                   help="seconds per training round on one loopback Flower deployment: plain "
                        "FedAvg, Flower's own SecAgg+, and each protocol (bench.deployment)")
    p.add_argument("--rounds", type=int, default=3,
                   help="with --deployment: rounds per job (default 3)")
    add_json_flag(p)


def _options(args: argparse.Namespace) -> MatrixOptions:
    if args.repeats < 1:
        raise ConfigError(f"--repeats must be >= 1, got {args.repeats}")
    if args.degree == "auto":
        degree = None
    else:
        try:
            degree = int(args.degree)
        except ValueError:
            raise ConfigError(
                f"--degree must be an integer or 'auto', got {args.degree!r}") from None
        if degree < 2:
            raise ConfigError(f"--degree must be >= 2, got {degree}")
    if not 1 <= args.threshold <= (degree or 10**9) + 1:
        raise ConfigError(f"--threshold must be in 1..{degree + 1 if degree else 'k+1'} "
                          f"(k = {degree} neighbours + the client), got {args.threshold}")
    budget = args.cell_budget if args.cell_budget is not None else (10.0 if args.quick else None)
    complete_n = (args.flower_complete_max_n if args.flower_complete_max_n is not None
                  else (30 if args.quick else None))
    return MatrixOptions(repeats=args.repeats, cell_budget=budget, degree=degree,
                         threshold=args.threshold, vs_flower=args.vs == "flower",
                         flower_complete_max_n=complete_n, limit_heavy=args.quick,
                         seed=args.seed, full_repeats=frozenset([cellmod.HEADLINE]))


def _cells(args: argparse.Namespace) -> tuple[list[cellmod.CellSpec], cellmod.Sweep]:
    names = _flatten(args.protocols) or list(protocols.names())
    for name in names:
        protocols.get(cellmod.split_variant(name)[0])  # unknown names fail here
    clients, dims, dropouts = (_flatten(args.clients), _flatten(args.dims),
                               _flatten(args.dropout))
    schedules = _flatten(args.schedules)
    for s in schedules or ():
        if s not in cellmod.SCHEDULES:
            raise ConfigError(f"unknown schedule {s!r}; choose from {', '.join(cellmod.SCHEDULES)}")
    for f in dropouts or ():
        if not 0 <= f < 1:
            raise ConfigError(f"dropout rates must be in [0, 1), got {f}")
    if args.quick and not (clients or dims or dropouts or schedules):
        return cellmod.quick_cells(names)
    return cellmod.grid_cells(names, clients or DEFAULT_CLIENTS, dims or DEFAULT_DIMS,
                              dropouts if dropouts is not None else DEFAULT_DROPOUTS,
                              schedules or cellmod.SCHEDULES)


def _one_line(c: dict[str, Any]) -> str:
    parts = [(f"{c['protocol']} n={c['clients']} d={c['dim']:,} drop={c['dropout']:g} "
              f"({c['drop_schedule']}): {c.get('status')}")]
    for key, label in (("client_seconds", "client"), ("server_seconds", "server")):
        if c.get(key) is not None:
            parts.append(f"{label} {c[key]:.3g} s")
    if c.get("x_floor") is not None:
        parts.append(f"x floor {c['x_floor']:.2f}")
    if c.get("x_server_floor") is not None:
        parts.append(f"server x its floor {c['x_server_floor']:.2f}")
    f = c.get("flower")
    if f:
        parts.append(f"Flower {f.get('status')}"
                     + (f" server {f['server_seconds']:.3g} s" if f.get("status") == "ok" else ""))
    if c.get("error"):
        parts.append(str(c["error"])[:80])
    return ", ".join(parts)


def _run_deployment(args: argparse.Namespace) -> int:
    from bench.deployment import run_deployment, write_outputs

    clients = _flatten(args.clients) or [3]
    names = _flatten(args.protocols) or ["secagg+", "secagg+:enrolled"]
    console = stderr_console()
    result: dict[str, Any] = {"runs": []}
    for n in clients:
        one = run_deployment(n, names, args.rounds, log=console.print)
        result["runs"].append(one)
    result.update({k: v for k, v in result["runs"][-1].items() if k != "deployment"})
    result["deployment"] = result["runs"][-1]["deployment"]
    files = write_outputs(result, args.out, plots=not args.no_plots)
    for run in result["runs"]:
        d = run["deployment"]
        console.print(f"n={d['clients']}: fedavg {d['fedavg_round_seconds']}, Flower SecAgg+ "
                      f"{d['flower_secaggplus_round_seconds']}, ours {d['round_seconds']} "
                      f"s/round (medians); ratios {d['ratios']}")
    console.print(f"wrote {', '.join(str(f) for f in files)}")
    if args.json:
        emit_json(result)
    return 0


def run(args: argparse.Namespace) -> int:
    if getattr(args, "deployment", False):
        return _run_deployment(args)
    opts = _options(args)
    cells, base = _cells(args)
    console = stderr_console()
    if not console.is_terminal:
        console = Console(file=sys.stderr, width=200)
    out_dir: Path = args.out
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    t0 = time.perf_counter()
    machine = machine_info()
    console.print(f"secagg bench: {len(cells)} cells, {opts.repeats} repeats max"
                  f"{', vs Flower' if opts.vs_flower else ''}; measuring the floor")
    floor_start = machine_floor()
    with progress_status(console, "running") as update:
        results = run_cells(cells, opts, update, on_cell=lambda c: console.log(_one_line(c)))
    floor_end = machine_floor()
    machine["loadavg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    result: dict[str, Any] = {
        "command": "secagg bench", "argv": sys.argv[1:], "quick": args.quick,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "machine": machine,
        "floor": {**floor_start, "end": floor_end},
        "settings": {
            "repeats": opts.repeats, "cell_budget_seconds": opts.cell_budget,
            "secagg+_degree": "auto" if opts.degree is None else opts.degree,
            "secagg+_threshold": opts.threshold, "vs": args.vs,
            "flower_complete_max_n": opts.flower_complete_max_n, "seed": opts.seed,
            "base": {"clients": base.clients, "dim": base.dim, "dropout": base.dropout,
                     "schedule": base.schedule},
            "encoding": {"clip": 1.0, "frac_bits": 16, "bits": 32},
        },
        "cells": results,
    }
    result["headline"] = headline(results, floor_start)
    files = {"json": out_dir / "results.json", "csv": out_dir / "results.csv",
             "headline": out_dir / "headline.md"}
    write_csv(results, files["csv"])
    files["headline"].write_text(headline_markdown(result) + "\n")
    plots = [] if args.no_plots else write_plots(results, base, out_dir)
    result["files"] = {**{k: str(v) for k, v in files.items()},
                       "plots": [str(p) for p in plots]}
    result["wall_seconds"] = time.perf_counter() - t0
    write_json(result, files["json"])
    stdout = Console(file=sys.stdout)
    if not stdout.is_terminal:
        stdout = Console(file=sys.stdout, width=200)
    print_table(results, console if args.json else stdout)
    console.print(f"wrote {out_dir}/ (results.json, results.csv, headline.md"
                  f"{', ' + str(len(plots)) + ' plots' if plots else ''}) in "
                  f"{result['wall_seconds']:.0f} s")
    if args.json:
        emit_json(result)
    return 0
