"""A reusable process pool for the HE clients' encryption, on the driver side.

The protocol cores never start processes (DESIGN.md: sans-IO); an HE client takes an
executor-like ``map`` instead (:class:`protocols.he.HeClient`). :func:`process_map` is the
one drivers hand it: ``spec.client(config, u, rng, map=process_map(4), ...)``.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from secagg.errors import ConfigError

__all__ = ["process_map"]

_POOLS: dict[int, ProcessPoolExecutor] = {}


def process_map(workers: int) -> Callable[..., Iterable[Any]]:
    """``map(fn, *iterables)`` spread over ``workers`` processes (1: the builtin ``map``).

    A pool of that size is started once (``forkserver``: no threads are inherited) and reused.
    Only bytes, ints and arrays should cross to the workers; ``fn`` must be a module-level
    function. A broken pool is discarded and the work redone here. Scripts must guard their
    entry point (``if __name__ == "__main__":``), as for any multiprocessing.

    Raises:
        ConfigError: ``workers`` below 1.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers must be an integer >= 1, got {workers!r}")
    if workers == 1:
        return map

    def pooled(fn: Callable[..., Any], *iterables: Iterable[Any]) -> list[Any]:
        args = [list(it) for it in iterables]
        if len(args[0]) <= 1:
            return list(map(fn, *args))
        pool = _POOLS.get(workers)
        if pool is None:
            pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("forkserver"))
            _POOLS[workers] = pool
        try:
            return list(pool.map(fn, *args))
        except BrokenProcessPool:
            _POOLS.pop(workers, None)
            return list(map(fn, *args))

    return pooled
