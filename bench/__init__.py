"""Benchmark harness: the protocol matrix, the hardware floor, and Flower side by side.

``secagg bench`` (:mod:`bench.cli`) runs protocols x clients x dims x dropout through the
in-process driver :func:`fl.engines.simulation.run_round`, reports each cell's cost and correctness,
its ratio to the ChaCha20 keystream floor measured in the same run (:mod:`bench.floor`) and,
with ``--vs flower``, its ratio to Flower's own SecAgg+ driven in process on the same inputs
(:mod:`bench.flower_peer`). Imports point one way: bench uses fl, protocols and secagg;
nothing imports bench.
"""

from __future__ import annotations

from bench.cells import (
    BASE,
    QUICK_CLIENTS,
    QUICK_DIMS,
    QUICK_DROPOUTS,
    SCHEDULES,
    CellSpec,
    Sweep,
    drop_plan,
    grid_cells,
    quick_cells,
)
from bench.floor import (
    FloorTiming,
    Throughput,
    add_throughput,
    client_floor,
    keystream_throughput,
    machine_floor,
)
from bench.matrix import (
    MatrixOptions,
    graph_parameters,
    make_inputs,
    run_cell,
    run_cells,
)
from bench.plots import PLOTS, write_plots
from bench.report import CSV_COLUMNS, headline, headline_markdown, write_csv, write_json

__all__ = [
    "BASE", "CSV_COLUMNS", "PLOTS", "QUICK_CLIENTS", "QUICK_DIMS", "QUICK_DROPOUTS",
    "SCHEDULES", "CellSpec", "FloorTiming", "MatrixOptions", "Sweep", "Throughput",
    "add_throughput", "client_floor", "drop_plan", "graph_parameters", "grid_cells",
    "headline", "headline_markdown", "keystream_throughput", "machine_floor", "make_inputs",
    "quick_cells", "run_cell", "run_cells", "write_csv", "write_json", "write_plots",
]
