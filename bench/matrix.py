"""Run the matrix: each cell through :func:`fl.engines.simulation.run_round`, timed, with its floor
and (optionally) Flower's SecAgg+ on the same inputs, dropouts and parameters.

Every ratio the bench reports is measured in this process run: for each repeat of a cell it
measures, back to back, the client floor (:func:`bench.floor.client_floor`), our round, the
server's floor (the keystreams our masking server expanded in that round, counted by
:class:`bench.floor.ServerStreams` and timed right after it), and Flower's round, so load on
a shared machine hits all of them alike. A cell's numbers are the
medians over its repeats. Nothing here is a pass/fail test of speed.

Graph parameters of the masking cells: ``secagg`` is the complete graph (k = n - 1) with
our default threshold t = n//2 + 1. ``secagg+`` uses k = ``degree`` and t = ``threshold``
(default 10 and 6, i.e. Flower's ``num_shares = 11, reconstruction_threshold = 6``, the
configuration of the foundation issue's reference numbers); for small cohorts k shrinks to
fit and t shrinks in proportion. ``degree=None`` uses our own derivation (Bell et al.) from
n and the dropout rate instead.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

import protocols
from bench.cells import CellSpec, drop_plan, masking, split_variant
from bench.floor import ServerStreams, client_floor
from fl.engines.pool import process_map
from fl.engines.simulation import RoundReport, run_round
from protocols.he import HeConfig
from secagg.encoding import EncodingConfig
from secagg.rng import Csprng

__all__ = ["MatrixOptions", "graph_parameters", "make_input", "make_inputs",
           "run_cell", "run_cells"]

Progress = Callable[[str], None]

#: Protocols too slow for every cell of a quick run: the largest n * d they are given there.
HEAVY = {"paillier": 10_000, "ckks": 1_000_000}


@dataclass(frozen=True)
class MatrixOptions:
    """How to run the cells (see the module docstring)."""

    repeats: int = 3
    cell_budget: float | None = None  # stop repeating a cell once it has used this many s
    degree: int | None = 10
    threshold: int | None = 6
    vs_flower: bool = False
    flower_complete_max_n: int | None = None
    limit_heavy: bool = False
    seed: int = 0
    #: (clients, dim, dropout, schedule) points that always get every repeat (the headline)
    full_repeats: frozenset[tuple[int, int, float, str]] = frozenset()


def graph_parameters(protocol: str, n: int, dropout: float,
                     opts: MatrixOptions) -> dict[str, int] | None:
    """``{"degree": k, "threshold": t}`` for a masking protocol, None for the others."""
    if not masking(protocol):
        return None
    if protocol.partition(":")[0] == "secagg":
        return {"degree": n - 1, "threshold": n // 2 + 1}
    if opts.degree is None:
        cfg = protocols.get("secagg+").make_config(
            n, 1, dropout_tolerance=max(0.1, dropout),
            encoding=EncodingConfig(max_clients=max(n, 1)))
        return {"degree": cfg.degree, "threshold": cfg.threshold}  # type: ignore[attr-defined]
    k = min(opts.degree, n - 1)
    if k < n - 1 and k % 2:
        k -= 1
    t = opts.threshold if opts.threshold is not None else k // 2 + 1
    if k < opts.degree:
        t = max(1, round(t * (k + 1) / (opts.degree + 1)))
    return {"degree": k, "threshold": min(t, k + 1)}


def make_input(n: int, dim: int, seed: int, u: int, clip: float = 1.0) -> np.ndarray:
    """Client ``u``'s float32 update, norm uniform in [0, clip], the same on every call
    (benchmark data only: the inputs of a lean cell)."""
    gen = np.random.default_rng([seed, n, dim, u])
    v = gen.standard_normal(dim, dtype=np.float32)
    v *= np.float32(clip * gen.uniform() / max(float(np.linalg.norm(v)), 1e-12))
    return v


def make_inputs(n: int, dim: int, seed: int, clip: float = 1.0) -> list[np.ndarray]:
    """Random float32 updates with L2 norm uniform in [0, clip] (benchmark data only)."""
    gen = np.random.default_rng([seed, n, dim])
    out = []
    for _ in range(n):
        v = gen.standard_normal(dim, dtype=np.float32)
        v *= np.float32(clip * gen.uniform() / max(float(np.linalg.norm(v)), 1e-12))
        out.append(v)
    return out


def _config(cell: CellSpec, graph: dict[str, int] | None) -> Any:
    base, options = split_variant(cell.protocol)
    spec = protocols.get(base)
    kw: dict[str, Any] = {"encoding": EncodingConfig(max_clients=max(cell.clients, 1)), **options}
    if graph is not None:
        kw.update(graph)
    return spec.make_config(cell.clients, cell.dim, **kw)


def _median(xs: Sequence[float | None]) -> float | None:
    vals = [x for x in xs if x is not None]
    return statistics.median(vals) if vals else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


Inputs = Sequence[np.ndarray] | Callable[[int], np.ndarray]


def run_cell(cell: CellSpec, inputs: Inputs, opts: MatrixOptions,
             progress: Progress | None = None) -> dict[str, Any]:
    """Run one cell (repeats, floor, Flower) and return its JSON record.

    ``inputs`` is one vector per client, or ``u -> vector`` (then the rounds run lean).
    """
    say = progress or (lambda s: None)
    rec: dict[str, Any] = {
        "protocol": cell.protocol, "clients": cell.clients, "dim": cell.dim,
        "dropout": cell.dropout, "drop_schedule": cell.schedule,
    }
    t_cell = time.perf_counter()
    heavy = HEAVY.get(cell.protocol)
    if opts.limit_heavy and heavy is not None and cell.clients * cell.dim > heavy:
        rec.update(status="skipped", error=(
            f"n*d = {cell.clients * cell.dim:,} is over the quick-run limit "
            f"{HEAVY[cell.protocol]:,} for {cell.protocol}"), repeats=0)
        return rec
    graph = graph_parameters(cell.protocol, cell.clients, cell.dropout, opts)
    try:
        config = _config(cell, graph)
        plan = drop_plan(cell, opts.seed)
    except Exception as exc:  # noqa: BLE001 - a cell that cannot be configured is a result
        rec.update(status="error", error=f"{type(exc).__name__}: {exc}", repeats=0)
        return rec
    spec = protocols.get(split_variant(cell.protocol)[0])
    if graph:
        rec.update(degree=graph["degree"], threshold=graph["threshold"],
                   num_shares=graph["degree"] + 1)
    flower_plan = _flower_plan(cell, opts)
    ours: list[RoundReport] = []
    floors: list[Any] = []
    server_floors: list[Any] = []
    flowers: list[Any] = []
    item = config.encoding.dtype.itemsize
    def sample_floor() -> None:
        # Sampled before, between the stages of (run_round's progress hook: each stage the
        # server opens and each deadline, outside every timed region) and after each of our
        # rounds, so a busy machine weighs on the floor as it does on the clients it is
        # compared with.
        if graph:
            floors.append(client_floor(graph["degree"] + 1, (cell.dim + 1) * item, repeats=1))

    # HE clients encrypt over every core, as a deployment's would (the cores own no pool).
    client_map = process_map(os.cpu_count() or 1) if isinstance(config, HeConfig) else None
    full = (cell.clients, cell.dim, cell.dropout, cell.schedule) in opts.full_repeats
    for r in range(max(1, opts.repeats)):
        say(f"{cell.label()}: ours, repeat {r + 1}")
        rng = Csprng.from_seed(opts.seed).spawn(f"bench/{cell.label()}/{r}")
        sample_floor()
        counter = ServerStreams()
        try:
            with counter:
                def stage(msg: str, r: int = r) -> None:
                    say(f"{cell.label()}: ours, repeat {r + 1}: {msg}")
                    sample_floor()

                ours.append(run_round(spec, config, inputs, rng, drop_at=plan,
                                      progress=stage,
                                      client_map=client_map, lean=callable(inputs)))
        except Exception as exc:  # noqa: BLE001
            rec.update(status="error", error=f"{type(exc).__name__}: {exc}", repeats=r)
            return rec
        sample_floor()
        if graph and counter.streams and not ours[-1].error:
            # the server's own floor: the keystreams it expanded in this repeat, timed now
            say(f"{cell.label()}: server floor, {counter.streams} keystreams")
            server_floors.append(client_floor(counter.streams, counter.nbytes, repeats=1))
        if flower_plan is not None and (not flowers or any(not f.aborted for f in flowers)):
            from bench.flower_peer import run_flower

            say(f"{cell.label()}: Flower {flower_plan['workflow']}, repeat {r + 1}")
            listed = ([inputs(u) for u in range(cell.clients)] if callable(inputs)
                      else inputs)
            flowers.append(run_flower(listed, num_shares=flower_plan["num_shares"],
                                      threshold=flower_plan["threshold"], drop_at=plan,
                                      complete=flower_plan["complete"]))
        if not full and opts.cell_budget is not None \
                and time.perf_counter() - t_cell > opts.cell_budget:
            break
    rec.update(_summarise(ours, item))
    if floors:
        fl_s = _median([f.seconds for f in floors])
        ks_s = _median([f.keystream_seconds for f in floors])
        rec.update(floor_samples=len(floors),
                   floor_streams=graph["degree"] + 1 if graph else None,
                   floor_bytes_per_stream=(cell.dim + 1) * item,
                   floor_seconds=fl_s, floor_keystream_seconds=ks_s,
                   x_floor=_ratio(rec["client_seconds"], fl_s),
                   x_keystream_floor=_ratio(rec["client_seconds"], ks_s))
    if server_floors:
        sf = _median([f.seconds for f in server_floors])
        sk = _median([f.keystream_seconds for f in server_floors])
        rec.update(server_floor_streams=int(statistics.median(f.streams for f in server_floors)),
                   server_floor_seconds=sf, server_floor_keystream_seconds=sk,
                   x_server_floor=_ratio(rec["server_seconds"], sf),
                   x_server_keystream_floor=_ratio(rec["server_seconds"], sk))
    if opts.vs_flower and masking(cell.protocol):
        rec["flower"] = (_flower_summary(flowers, cell.dim) if flowers else
                         {"status": "not_run", "error": _why_not(cell, opts)})
        f = rec["flower"]
        ok = f.get("status") == "ok" and rec["status"] == "ok"
        rec["speedup_vs_flower"] = ({
            "server": _ratio(f["server_seconds"], rec["server_seconds"]),
            "client": _ratio(f["client_seconds"], rec["client_seconds"]),
        } if ok else None)
    rec["lean"] = callable(inputs)
    # The process's peak resident memory so far (monotone over the run: for the largest
    # cell it is that cell's), next to what the roles hold, for the simulator's overhead.
    rec["process_peak_rss_bytes"] = _peak_rss()
    rec["wall_seconds"] = time.perf_counter() - t_cell
    return rec


def _peak_rss() -> int | None:
    try:
        import resource
    except ImportError:  # not on POSIX
        return None
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # Linux: kB


def _summarise(reports: Sequence[RoundReport], item: int) -> dict[str, Any]:
    """Medians over the repeats that finished; a cell is aborted only if every repeat was.

    Each repeat draws a new graph (secagg+) and new keys, so at a dropout rate the
    parameters do not tolerate, some repeats may abort and others not: ``aborted_repeats``
    counts them and ``error`` keeps the first abort's reason.
    """
    done = [r for r in reports if not r.error] or list(reports)
    first = done[0]
    errors = [r.error for r in reports if r.error]
    exacts = [r.exact for r in done]
    errs = [r.max_abs_error for r in done if r.max_abs_error is not None]
    up = first.upload_bytes_per_client
    return {
        "status": "aborted" if len(errors) == len(reports) else "ok",
        "error": errors[0] if errors else None,
        "repeats": len(reports),
        "aborted_repeats": len(errors),
        "dropped": len(first.dropped), "dropped_by_stage": first.dropped_by_stage,
        "survivors": len(first.contributors),
        "client_seconds": _median([r.client_seconds for r in done]),
        "client_seconds_max": _median([max(r.client_seconds_all, default=0.0) for r in done]),
        "server_seconds": _median([r.server_seconds for r in done]),
        "helper_seconds": _median([r.helper_seconds for r in done]),
        "upload_bytes_per_client": up,
        "download_bytes_per_client": first.download_bytes_per_client,
        "upload_bytes_per_param": up / first.dim if first.dim else None,
        "server_peak_bytes": max(r.server_peak_bytes for r in done),
        "exact": (None if errors and len(errors) == len(reports) or any(e is None for e in exacts)
                  else all(exacts)),
        "max_abs_error": max(errs) if errs else None,
        "ring_bytes": item,
    }


def _why_not(cell: CellSpec, opts: MatrixOptions) -> str:
    from bench.flower_peer import available

    if not available():
        return "flwr is not installed (pip install 'secagg[flower]')"
    if ":" in cell.protocol:
        return f"Flower has no counterpart of {cell.protocol} (it sets keys up every round)"
    return (f"Flower's SecAggWorkflow (complete graph) is only run up to n = "
            f"{opts.flower_complete_max_n} here (its pure-Python Shamir on the server grows "
            f"as n^2); raise --flower-complete-max-n to run n = {cell.clients}")


def _flower_plan(cell: CellSpec, opts: MatrixOptions) -> dict[str, Any] | None:
    from bench.flower_peer import available

    if not (opts.vs_flower and masking(cell.protocol)) or ":" in cell.protocol \
            or not available():  # a variant has no Flower counterpart
        return None
    graph = graph_parameters(cell.protocol, cell.clients, cell.dropout, opts)
    assert graph is not None
    complete = cell.protocol == "secagg"
    if complete and opts.flower_complete_max_n is not None \
            and cell.clients > opts.flower_complete_max_n:
        return None
    return {"workflow": "SecAggWorkflow" if complete else "SecAggPlusWorkflow",
            "complete": complete, "num_shares": graph["degree"] + 1,
            "threshold": graph["threshold"]}


def _flower_summary(results: Sequence[Any], dim: int) -> dict[str, Any]:
    ok = [r for r in results if not r.aborted]
    first = (ok or list(results))[0]
    out: dict[str, Any] = first.to_json()
    out["repeats"] = len(results)
    out["aborted_repeats"] = len(results) - len(ok)
    if not ok:
        out["status"] = "aborted"
        return out
    out["status"] = "ok"
    out["client_seconds"] = _median([r.client_seconds for r in ok])
    out["server_seconds"] = _median([r.server_seconds for r in ok])
    out["server_strategy_seconds"] = _median([r.server_strategy_seconds for r in ok])
    out["max_abs_error"] = max(r.max_abs_error for r in ok if r.max_abs_error is not None)
    up = first.upload_bytes_per_client
    out["upload_bytes_per_param"] = up / dim if up is not None else None
    return out


def run_cells(cells: Sequence[CellSpec], opts: MatrixOptions, progress: Progress | None = None,
              on_cell: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Run ``cells`` in order.

    Each client's input is generated when it needs it (:func:`make_input`, the same on every
    call) and the rounds run lean (``run_round(lean=True)``): the driver never holds every
    input and encoding at once, so what a cell holds is about what its roles hold.
    ``progress`` hears what is running now; ``on_cell`` gets each finished cell's record.
    """
    say = progress or (lambda s: None)
    out: list[dict[str, Any]] = []
    for i, cell in enumerate(cells):
        inputs: Inputs = partial(make_input, cell.clients, cell.dim, opts.seed)
        say(f"[{i + 1}/{len(cells)}] {cell.label()}")

        def tell(s: str, i: int = i) -> None:
            say(f"[{i + 1}/{len(cells)}] {s}")

        out.append(run_cell(cell, inputs, opts, tell))
        if on_cell:
            on_cell(out[-1])
    return out
