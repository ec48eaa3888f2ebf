"""The communication graph: who masks with, and shares secrets to, whom.

The complete graph is classic SecAgg. The sparse graph of SecAgg+ (Bell et al. 2020,
section 3) is the Harary graph H(n, k), every client joined to the k/2 clients on either side
of it on a ring, after a uniformly random relabelling drawn from the server's CSPRNG.
"""

from __future__ import annotations

from secagg.errors import ConfigError
from secagg.rng import Csprng

__all__ = ["neighbourhoods"]


def neighbourhoods(n: int, k: int, rng: Csprng) -> tuple[frozenset[int], ...]:
    """Each client's neighbours (a symmetric relation without self-loops).

    Raises:
        ConfigError: k outside 0..n-1, or odd k below n - 1.
    """
    if not 0 <= k <= n - 1:
        raise ConfigError(f"degree must be in 0..{n - 1}, got {k}")
    if k == n - 1:
        everyone = frozenset(range(n))
        return tuple(everyone - {u} for u in range(n))
    if k % 2:
        raise ConfigError(f"a Harary graph needs an even degree below n - 1, got {k}")
    order = rng.permutation(n)
    out: list[set[int]] = [set() for _ in range(n)]
    for i, u in enumerate(order):
        for j in range(1, k // 2 + 1):
            v = order[(i + j) % n]
            out[u].add(v)
            out[v].add(u)
    return tuple(frozenset(s) for s in out)
