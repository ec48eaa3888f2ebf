"""Which cells a benchmark runs: protocol x clients x dims x dropout (x dropout schedule).

Two designs:

- **grid**: the full cartesian product of the lists given on the command line;
- **quick** (``--quick``): a *star* around a base point, one sweep per axis, which is all
  the plots need and fits in a few minutes on two cores:

  ============  =================================  =================================
  sweep         values                             others held at
  ============  =================================  =================================
  clients       10, 30, 100                        d = 100,000, 10 % dropout
  dims          1e4, 1e5, 1e6                      n = 100, 10 % dropout
  dropout       0, 10, 20 %                        n = 100, d = 100,000
  ============  =================================  =================================

  plus, for every protocol, the base point again under the ``spread`` schedule, and one
  small point (n = 10, d = 1,000, 10 %) where even the slow HE protocols run (beyond that,
  a quick run gives them only the cells under :data:`bench.matrix.HEAVY`; the others are
  reported as skipped, with the reason).
  The quick set always holds secagg+ and secagg at n = 100, d = 1,000,000, 10 % dropout.

Dropout schedules (the same clients drop under both; only the stage differs):

- ``masked_input``: every dropped client shared its keys, then fell silent instead of
  sending its masked input. This is the costliest case for the server (it must rebuild the
  dropped clients' keys and their pairwise masks) and the only early dropout Flower's
  SecAgg+ survives, so it is the schedule of the headline numbers and of the Flower ratios.
- ``spread``: :func:`fl.engines.simulation.plan_dropouts`, i.e. dropped clients spread round-robin
  over every stage, as ``secagg simulate --dropout`` does. Flower aborts these rounds as
  soon as one client drops before the masked-vector stage; the bench reports the abort.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import protocols
from fl.engines.simulation import plan_dropouts
from protocols.base import stages_of
from secagg.errors import ConfigError
from secagg.rng import Csprng

__all__ = [
    "BASE",
    "HEADLINE",
    "MASKING",
    "QUICK_CLIENTS",
    "QUICK_DIMS",
    "QUICK_DROPOUTS",
    "SCHEDULES",
    "CellSpec",
    "Sweep",
    "drop_plan",
    "grid_cells",
    "masking",
    "quick_cells",
    "split_variant",
]

SCHEDULES = ("masked_input", "spread")
MASKING = ("secagg", "secagg+")


#: protocol-name suffixes the bench understands: ``secagg+:enrolled`` is secagg+ with
#: ``make_config(..., enrolled=True)`` (long-term keys, two exchanges per round)
VARIANTS = {"enrolled": {"enrolled": True}}


def split_variant(protocol: str) -> tuple[str, dict[str, bool]]:
    """``"secagg+:enrolled"`` -> ``("secagg+", {"enrolled": True})``.

    Raises:
        ConfigError: an unknown variant, or a variant of a non-masking protocol.
    """
    base, _, variant = protocol.partition(":")
    if not variant:
        return base, {}
    if variant not in VARIANTS or base not in MASKING:
        raise ConfigError(f"unknown bench protocol {protocol!r}; variants: "
                          + ", ".join(f"{m}:{v}" for m in MASKING for v in VARIANTS))
    return base, dict(VARIANTS[variant])


def masking(protocol: str) -> bool:
    """Whether ``protocol`` is a pairwise-masking one (has a floor and a Flower peer)."""
    return protocol.partition(":")[0] in MASKING


@dataclass(frozen=True, order=True)
class CellSpec:
    """One point of the matrix."""

    clients: int
    dim: int
    dropout: float
    protocol: str
    schedule: str = "masked_input"

    def label(self) -> str:
        return (f"{self.protocol} n={self.clients} d={self.dim:,} "
                f"dropout={self.dropout:g} ({self.schedule})")


@dataclass(frozen=True)
class Sweep:
    """The base point that the plots hold fixed while one axis varies."""

    clients: int
    dim: int
    dropout: float
    schedule: str = "masked_input"


BASE = Sweep(clients=100, dim=100_000, dropout=0.1)
QUICK_CLIENTS = (10, 30, 100)
QUICK_DIMS = (10_000, 100_000, 1_000_000)
QUICK_DROPOUTS = (0.0, 0.1, 0.2)
#: The foundation issue's configuration: every quick run holds it, with all its repeats.
HEADLINE = (100, 1_000_000, 0.1, "masked_input")


def quick_cells(names: Sequence[str]) -> tuple[list[CellSpec], Sweep]:
    """The ``--quick`` star (see module docstring) for ``names``; returns (cells, base)."""
    points: set[tuple[int, int, float, str]] = set()
    for n in QUICK_CLIENTS:
        points.add((n, BASE.dim, BASE.dropout, "masked_input"))
    for d in QUICK_DIMS:
        points.add((BASE.clients, d, BASE.dropout, "masked_input"))
    for f in QUICK_DROPOUTS:
        points.add((BASE.clients, BASE.dim, f, "masked_input"))
    points.add((BASE.clients, BASE.dim, BASE.dropout, "spread"))
    points.add(HEADLINE)
    points.add((10, 1_000, BASE.dropout, "masked_input"))
    cells = [CellSpec(n, d, f, p, s) for (n, d, f, s) in points for p in names]
    return _order(cells), BASE


def grid_cells(names: Sequence[str], clients: Iterable[int], dims: Iterable[int],
               dropouts: Iterable[float], schedules: Iterable[str]) -> tuple[list[CellSpec], Sweep]:
    """The cartesian product; the plots' base is the largest n and d and the dropout
    closest to 10 %, under the first schedule."""
    clients, dims, dropouts = sorted(set(clients)), sorted(set(dims)), sorted(set(dropouts))
    schedules = list(dict.fromkeys(schedules))
    cells = []
    for n, d, f, s, p in itertools.product(clients, dims, dropouts, schedules, names):
        if f == 0 and s != schedules[0]:
            continue  # without dropouts the schedule makes no difference
        cells.append(CellSpec(n, d, f, p, s))
    base = Sweep(clients[-1], dims[-1], min(dropouts, key=lambda f: abs(f - 0.1)), schedules[0])
    return _order(cells), base


def _order(cells: list[CellSpec]) -> list[CellSpec]:
    # Cells sharing (n, d) run back to back so their inputs are generated once.
    return sorted(set(cells), key=lambda c: (c.clients, c.dim, c.dropout,
                                             SCHEDULES.index(c.schedule), c.protocol))


def drop_plan(cell: CellSpec, seed: int) -> dict[int, int]:
    """Client -> stage index from which it is silent, for ``cell`` (reproducible by seed).

    The chosen clients depend only on (seed, n, dropout), so they are the same for every
    protocol and schedule; the schedule picks the stages (see module docstring).
    """
    base, options = split_variant(cell.protocol)
    spec = protocols.get(base)
    rng = Csprng.from_seed(seed).spawn(f"bench/drops/{cell.clients}/{cell.dropout!r}")
    config = spec.make_config(cell.clients, 1, **options)
    stages = stages_of(spec, config)
    if cell.schedule == "spread":
        return plan_dropouts(cell.clients, cell.dropout, stages, rng)
    if cell.schedule != "masked_input":
        raise ValueError(f"unknown dropout schedule {cell.schedule!r}; one of {SCHEDULES}")
    chosen = rng.sample(cell.clients, round(cell.dropout * cell.clients))
    return {u: spec.input_stage(config) for u in chosen}  # as the protocol declares it
