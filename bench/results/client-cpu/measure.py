"""One-off: the k = 10 client (n = 100, d = 1M, 10% dropout before the masked input) over its
keystream+add floor, both in thread CPU time, so that waiting for a core on a shared machine
does not count. It swaps the clock of fl.engines.simulation and bench.floor for time.thread_time.

Run: ``PYTHONPATH=. python3 bench/results/client-cpu/measure.py 3``
"""

from __future__ import annotations

import statistics
import sys
import time
import types

import bench.floor as floor_module
import fl.engines.simulation as sim
import protocols
from bench.cells import CellSpec, drop_plan
from bench.matrix import MatrixOptions, _config, graph_parameters, make_inputs
from secagg.rng import Csprng


def main(repeats: int) -> None:
    sim.time = types.SimpleNamespace(perf_counter=time.thread_time)  # type: ignore[attr-defined,assignment]
    floor_module.time = types.SimpleNamespace(  # type: ignore[attr-defined,assignment]
        perf_counter=time.thread_time)
    cell = CellSpec(100, 1_000_000, 0.1, "secagg+", "masked_input")
    graph = graph_parameters("secagg+", 100, 0.1, MatrixOptions(repeats=1))
    cfg = _config(cell, graph)
    inputs = make_inputs(100, 1_000_000, 0)
    plan = drop_plan(cell, 0)
    spec = protocols.get("secagg+")
    xs = []
    for r in range(repeats):
        rep = sim.run_round(spec, cfg, inputs, Csprng.from_seed(r), drop_at=plan,
                            measure_memory=False)
        fl = statistics.median(floor_module.client_floor(11, 1_000_001 * 4, repeats=1).seconds
                               for _ in range(5))
        xs.append(rep.client_seconds / fl)
        print(f"client CPU {rep.client_seconds * 1e3:.1f} ms, floor CPU {fl * 1e3:.1f} ms, "
              f"x {xs[-1]:.3f}, exact {rep.exact}", flush=True)
    print("median x floor (CPU time)", round(statistics.median(xs), 3))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
