"""``secagg privacy``: epsilon of a planned run, or the noise multiplier a target epsilon needs.

Forward: ``--noise-multiplier Z --sampling-rate Q --rounds T --delta D`` gives epsilon at
``D`` after ``T`` rounds of the (discrete) Gaussian mechanism with Poisson client sampling at
rate ``Q``. Inverse: ``--epsilon E`` instead of ``--noise-multiplier`` gives the smallest
noise multiplier (to 0.1%) whose epsilon is at most ``E``. ``--accountant`` picks RDP or PLD.

With ``--json`` the last line on stdout is one JSON object with ``epsilon``, ``delta``,
``accountant``, ``noise_multiplier``, ``sampling_rate``, ``rounds`` and ``mode``
(``"epsilon"`` or ``"noise_multiplier"``); the inverse also reports ``target_epsilon``.
"""

from __future__ import annotations

import argparse
import json
import logging
from typing import Any

from secagg.dp import ACCOUNTANTS, compute_epsilon, noise_multiplier_for

__all__ = ["HELP", "add_arguments", "run"]

HELP = "Epsilon of a DP training plan, or the noise multiplier a target epsilon needs."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this sub-command's options to ``parser``."""
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--noise-multiplier", type=float, metavar="Z", help="noise std / L2 sensitivity"
    )
    which.add_argument(
        "--epsilon", type=float, metavar="E", help="target epsilon: report the noise multiplier"
    )
    parser.add_argument(
        "--sampling-rate", type=float, required=True, metavar="Q",
        help="Poisson sampling rate of clients per round, in (0, 1]",
    )
    parser.add_argument("--rounds", type=int, required=True, metavar="T", help="number of rounds")
    parser.add_argument("--delta", type=float, required=True, metavar="D", help="target delta")
    parser.add_argument(
        "--accountant", choices=ACCOUNTANTS, default="rdp", help="accountant (default: rdp)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    """Compute, print, return 0. Bad values raise ConfigError (exit 2 via ``fl.cli.main``)."""
    # dp_accounting logs a warning per RDP order it drops; that is expected, not news.
    logging.getLogger("absl").setLevel(logging.ERROR)
    result: dict[str, Any] = {
        "accountant": args.accountant,
        "delta": args.delta,
        "sampling_rate": args.sampling_rate,
        "rounds": args.rounds,
    }
    if args.epsilon is not None:
        z = noise_multiplier_for(
            args.epsilon, args.delta, args.sampling_rate, args.rounds, args.accountant
        )
        result.update(
            mode="noise_multiplier",
            target_epsilon=args.epsilon,
            noise_multiplier=z,
            epsilon=compute_epsilon(
                z, args.sampling_rate, args.rounds, args.delta, args.accountant
            ),
        )
    else:
        result.update(
            mode="epsilon",
            noise_multiplier=args.noise_multiplier,
            epsilon=compute_epsilon(
                args.noise_multiplier, args.sampling_rate, args.rounds, args.delta, args.accountant
            ),
        )
    if args.json:
        print(json.dumps(result, sort_keys=True))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title="secagg privacy")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    rows = [
        ("noise multiplier" + (" (needed)" if result["mode"] == "noise_multiplier" else ""),
         f"{result['noise_multiplier']:.4f}"),
        ("sampling rate", f"{args.sampling_rate:g}"),
        ("rounds", str(args.rounds)),
        ("delta", f"{args.delta:g}"),
        ("accountant", args.accountant),
        ("epsilon", f"{result['epsilon']:.4f}"),
    ]
    if "target_epsilon" in result:
        rows.insert(0, ("target epsilon", f"{result['target_epsilon']:g}"))
    for name, value in rows:
        table.add_row(name, value)
    Console().print(table)
    return 0
