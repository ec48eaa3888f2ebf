"""``secagg simulate``: one aggregation round, in process, on random vectors.

Clients hold random updates inside the clipping ball; ``--dropout F`` makes round(F*n) of
them fall silent, spread over the protocol's stages. Reports what the round did and cost;
with ``--json`` the last stdout line is the JSON object of DESIGN.md's contract.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import numpy as np

import protocols
from protocols.base import stages_of
from fl.cli._common import add_json_flag, emit_json, stderr_console
from fl.simulation import plan_dropouts, run_round
from secagg.encoding import EncodingConfig
from secagg.errors import ConfigError
from secagg.rng import Csprng

HELP = "run one secure-aggregation round on random vectors and report cost and correctness"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--protocol", default="secagg+",
                   help=f"one of: {', '.join(protocols.names())} (default secagg+)")
    p.add_argument("--clients", type=int, default=100, help="number of clients (default 100)")
    p.add_argument("--dim", type=int, default=10_000, help="update length (default 10000)")
    p.add_argument("--dropout", type=float, default=0.0,
                   help="fraction of clients that drop, at random stages (default 0)")
    p.add_argument("--seed", type=int, default=None,
                   help="seed every party's CSPRNG (reproducible; never for production)")
    p.add_argument("--threshold", type=int, default=None, help="Shamir threshold t (masking)")
    p.add_argument("--degree", type=int, default=None, help="neighbours per client k (secagg+)")
    p.add_argument("--active", action="store_true",
                   help="active-adversary variant: signed keys and a consistency round "
                        "(secagg, secagg+)")
    p.add_argument("--clip", type=float, default=1.0, help="L2 clip of each update (default 1)")
    p.add_argument("--frac-bits", type=int, default=16, help="fixed-point fraction bits")
    p.add_argument("--bits", type=int, default=32, choices=(32, 64), help="ring width")
    add_json_flag(p)


def _config(spec: protocols.ProtocolSpec, args: argparse.Namespace) -> Any:
    encoding = EncodingConfig(clip=args.clip, frac_bits=args.frac_bits, bits=args.bits,
                              max_clients=max(args.clients, 1))
    kw: dict[str, Any] = {"encoding": encoding}
    if args.threshold is not None:
        kw["threshold"] = args.threshold
    if args.degree is not None:
        kw["degree"] = args.degree
    if spec.name in ("secagg", "secagg+"):
        kw["dropout_tolerance"] = max(0.1, args.dropout)
        kw["active"] = args.active
    elif args.threshold is not None or args.degree is not None or args.active:
        raise ConfigError(f"--threshold/--degree/--active apply to secagg and secagg+, "
                          f"not {spec.name}")
    return spec.make_config(args.clients, args.dim, **kw)


def _inputs(n: int, dim: int, clip: float, seed: int | None) -> list[np.ndarray]:
    """Random float32 updates with L2 norm uniform in [0, clip] (simulation data only)."""
    gen = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        v = gen.standard_normal(dim).astype(np.float32)
        v *= np.float32(clip * gen.uniform() / max(float(np.linalg.norm(v)), 1e-12))
        out.append(v)
    return out


def run(args: argparse.Namespace) -> int:
    spec = protocols.get(args.protocol)
    if args.clients < 1:
        raise ConfigError(f"--clients must be >= 1, got {args.clients}")
    if args.dim < 1:
        raise ConfigError(f"--dim must be >= 1, got {args.dim}")
    config = _config(spec, args)
    rng = Csprng.from_seed(args.seed) if args.seed is not None else Csprng()
    console = stderr_console()
    drop = plan_dropouts(args.clients, args.dropout, stages_of(spec, config),
                         rng.spawn("dropouts"))
    with console.status(f"{spec.name}: {args.clients} clients x {args.dim} values, "
                        f"{len(drop)} dropping") as status:
        inputs = _inputs(args.clients, args.dim, args.clip, args.seed)
        report = run_round(spec, config, inputs, rng, drop_at=drop,
                           progress=lambda s: status.update(f"{spec.name}: {s}"))
    out = report.to_json()
    for name in ("threshold", "degree"):
        if hasattr(config, name):
            out[name] = getattr(config, name)
    if args.json:
        emit_json(out)
    else:
        _table(out)
    return 0 if report.error is None else 1


def _table(out: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"secagg simulate: {out['protocol']}", show_header=True)
    t.add_column("measure")
    t.add_column("value", justify="right")
    for k, v in out.items():
        if isinstance(v, float):
            v = f"{v:.6g}"
        t.add_row(k, str(v))
    Console(file=sys.stdout).print(t)
