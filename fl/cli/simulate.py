"""``secagg simulate``: one aggregation round, in process, on random vectors.

Clients hold random updates inside the clipping ball; ``--dropout F`` makes round(F*n) of
them fall silent, spread over the protocol's stages. Reports what the round did and cost;
with ``--json`` the last stdout line is the JSON object of DESIGN.md's contract.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numpy as np

import protocols
from fl.cli._common import add_json_flag, check_memory, emit_json, progress_status, stderr_console
from fl.engines.simulation import RoundReport, plan_dropouts, run_round
from fl.privacy.rounds import DP_MODES
from protocols.base import stages_of
from protocols.secagg.enrolled_keys import EnrolledRegistry, Identity
from secagg.dp import (
    CentralDiscreteGaussian,
    DistributedDiscreteGaussian,
    client_noise_bound,
    compute_epsilon,
)
from secagg.encoding import EncodingConfig, clip_l2
from secagg.errors import ConfigError, UsageError
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
    p.add_argument("--enrolled", action="store_true",
                   help="clients enrolled with long-term keys: two exchanges per round, no "
                        "key setup (secagg, secagg+; simulated enrolment)")
    p.add_argument("--enrolment", type=Path, default=None, metavar="DIR",
                   help="with --enrolled: load registry.json and client-<id>.key from DIR "
                        "(written by 'secagg enroll') instead of enrolling in memory")
    p.add_argument("--dp", choices=("none", *(m for m in DP_MODES if m != "bolt-on")), default="none",
                   help="discrete Gaussian noise: added once by the decoding party (central), "
                        "or by every client before masking (distributed; secagg, secagg+)")
    p.add_argument("--noise-multiplier", type=float, default=1.0,
                   help="noise std / one client's L2 sensitivity (default 1)")
    p.add_argument("--delta", type=float, default=1e-5, help="delta for the reported epsilon")
    p.add_argument("--clip", type=float, default=1.0, help="L2 clip of each update (default 1)")
    p.add_argument("--frac-bits", type=int, default=16, help="fixed-point fraction bits")
    p.add_argument("--bits", type=int, default=32, choices=(32, 64), help="ring width")
    add_json_flag(p)


def _config(spec: protocols.ProtocolSpec, args: argparse.Namespace) -> Any:
    def encoding(noise_bound: int = 0) -> EncodingConfig:
        return EncodingConfig(clip=args.clip, frac_bits=args.frac_bits, bits=args.bits,
                              max_clients=max(args.clients, 1), noise_bound=noise_bound)

    kw: dict[str, Any] = {"encoding": encoding()}
    sens = kw["encoding"].l2_sensitivity(args.dim)
    if args.dp == "central":
        kw["noise"] = CentralDiscreteGaussian(args.noise_multiplier, sens)
    elif args.dp == "distributed":
        if not spec.supports_distributed_dp:
            able = [n for n in protocols.names() if protocols.get(n).supports_distributed_dp]
            raise ConfigError(f"--dp distributed needs {' or '.join(able)}, not {spec.name}")
        hook = DistributedDiscreteGaussian(args.noise_multiplier, sens, args.clients)
        kw["client_noise"] = hook
        kw["encoding"] = encoding(args.clients * client_noise_bound(hook, args.dim, args.clients))
    if args.enrolment is not None:
        if not args.enrolled:
            raise ConfigError("--enrolment needs --enrolled")
        registry = EnrolledRegistry.load(args.enrolment / "registry.json")
        if not registry.covers(args.clients):
            raise ConfigError(f"{args.enrolment} enrols {len(registry.keys)} clients, "
                              f"not 0..{args.clients - 1}; use --clients "
                              f"{len(registry.keys)} or enrol more")
        kw["registry"] = registry
    # make_config refuses, in one typed line, what the protocol does not support.
    return spec.make_config(args.clients, args.dim, threshold=args.threshold,
                            degree=args.degree, active=args.active, enrolled=args.enrolled,
                            dropout_tolerance=max(0.1, args.dropout), **kw)


def _identities(args: argparse.Namespace) -> dict[int, dict[str, Any]] | None:
    """The enrolled clients' identities from ``--enrolment``'s key files (None: simulate)."""
    if args.enrolment is None:
        return None
    return {u: {"identity": Identity.load(args.enrolment / f"client-{u}.key")}
            for u in range(args.clients)}


def _bytes_per_value(clients: int, bits: int) -> int:
    """A lower bound on the bytes a round holds per vector coordinate: one client's float32
    input (:func:`_inputs` makes each on demand), its encoded and masked ring vectors, and
    the server's ring accumulator and float64 sum. (``clients`` is kept for the estimate's
    signature: the lean simulator's memory does not grow with it per coordinate.)"""
    ring = bits // 8
    return 4 + 2 * ring + ring + 8


def _fits(per_value: int) -> int:
    """The largest ``--dim`` whose lower bound fits in the memory available now."""
    from fl.cli._common import available_memory

    avail = available_memory()
    return 0 if avail is None else avail // per_value


def _inputs(n: int, dim: int, clip: float, seed: int | None) -> Callable[[int], np.ndarray]:
    """Client ``u``'s random float32 update, L2 norm uniform in [0, clip] (simulation data
    only), made on demand so the simulator never holds every client's input at once."""
    base = cast(int, np.random.SeedSequence(seed).entropy)  # an int seed or None: an int

    def update(u: int) -> np.ndarray:
        gen = np.random.default_rng([base, u])
        v = gen.standard_normal(dim, dtype=np.float32)
        v *= np.float32(clip * gen.uniform() / max(float(np.linalg.norm(v)), 1e-12))
        return v

    return update


def run(args: argparse.Namespace) -> int:
    spec = protocols.get(args.protocol)
    if args.clients < 1:
        raise ConfigError(f"--clients must be >= 1, got {args.clients}")
    if args.dim < 1:
        raise ConfigError(f"--dim must be >= 1, got {args.dim}")
    per_value = _bytes_per_value(args.clients, args.bits)
    check_memory(per_value * args.dim,
                 f"{args.clients:,} clients x {args.dim:,} values",
                 f"--dim <= {max(_fits(per_value), 0):,} at --clients {args.clients:,}, "
                 "or fewer --clients")
    config = _config(spec, args)
    rng = Csprng.from_seed(args.seed) if args.seed is not None else Csprng()
    console = stderr_console()
    drop = plan_dropouts(args.clients, args.dropout, stages_of(spec, config),
                         rng.spawn("dropouts"))
    with progress_status(console, f"{spec.name}: {args.clients} clients x {args.dim} values, "
                         f"{len(drop)} dropping") as update:
        inputs = _inputs(args.clients, args.dim, args.clip, args.seed)
        report = run_round(spec, config, inputs, rng, drop_at=drop, lean=True, credentials=_identities(args),
                           progress=lambda s: update(f"{spec.name}: {s}"))
    out = report.to_json()
    if args.dp != "none" and report.result is not None:
        out["dp"] = _dp_report(args, config, inputs, report)
    out.update(spec.graph_params(config).as_dict())
    if args.json:
        emit_json(out)
    else:
        _table(out)
    return 0 if report.error is None else 1


def _dp_report(args: argparse.Namespace, config: Any, inputs: Callable[[int], np.ndarray],
               report: RoundReport) -> dict[str, Any]:
    """The noise that was added, and how far the released sum is from the noiseless one."""
    res = report.result
    if res is None:
        raise UsageError("the round released nothing")
    s, n = len(res.contributors), args.clients
    sens = config.encoding.l2_sensitivity(args.dim)
    z = args.noise_multiplier * (1.0 if args.dp == "central" else math.sqrt(s / n))
    clean = np.zeros(args.dim)
    for u in res.contributors:
        clean += clip_l2(inputs(u), args.clip)[0]
    deviation = res.sum - clean
    return {
        "mode": args.dp,
        "noise_multiplier": z,
        "noise_std": z * sens / config.encoding.scale,
        "deviation_std": float(deviation.std()),
        "deviation_mean": float(deviation.mean()),
        "epsilon": compute_epsilon(z, 1.0, 1, args.delta),
        "delta": args.delta,
    }


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
