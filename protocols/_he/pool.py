"""A reusable process pool for the schemes' encryption work."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

__all__ = ["parallel_map"]

R = TypeVar("R")
_POOLS: dict[int, ProcessPoolExecutor] = {}


def parallel_map(fn: Callable[..., R], tasks: Sequence[tuple[Any, ...]], workers: int) -> list[R]:
    """``[fn(*t) for t in tasks]``, spread over ``workers`` processes.

    With ``workers == 1`` or a single task it runs here. Otherwise a pool of that size is
    started once (``forkserver``: no threads are inherited) and reused. Only bytes, ints and
    arrays cross to the workers; ``fn`` must be a module-level function. A broken pool is
    discarded and the work redone here. Scripts must guard their entry point
    (``if __name__ == "__main__":``), as for any multiprocessing.
    """
    if workers <= 1 or len(tasks) <= 1:
        return [fn(*t) for t in tasks]
    pool = _POOLS.get(workers)
    if pool is None:
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("forkserver"))
        _POOLS[workers] = pool
    try:
        return list(pool.map(fn, *zip(*tasks)))
    except BrokenProcessPool:
        _POOLS.pop(workers, None)
        return [fn(*t) for t in tasks]
