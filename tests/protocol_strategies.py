"""Constructive hypothesis strategies for the protocol tests (SecAgg / SecAgg+ rounds).

Like :mod:`strategies`, these build valid inputs instead of filtering random ones: a sparse
graph's degree is drawn from the even values below ``n - 1``, its threshold from ``2..k+1``,
and a dropout schedule assigns each client either no dropout or a stage that exists.
"""

from __future__ import annotations

from hypothesis import strategies as st

__all__ = ["dropout_schedules", "graph_parameters", "sparse_degrees"]

#: client stages of the passive and the active SecAgg variants
PASSIVE_STAGES = 4
ACTIVE_STAGES = 5


def sparse_degrees(n: int) -> list[int]:
    """The degrees of a sparse (Harary) graph on ``n`` clients: even, 2 <= k < n - 1."""
    return list(range(2, n - 1, 2))


@st.composite
def graph_parameters(draw: st.DrawFn, n: int, sparse: bool) -> tuple[int, int]:
    """``(degree, threshold)`` valid for ``n`` clients: the complete graph unless ``sparse``
    (and a sparse degree exists), with any threshold in ``2..degree+1``."""
    degrees = sparse_degrees(n)
    k = draw(st.sampled_from(degrees), label="degree") if sparse and degrees else n - 1
    return k, draw(st.integers(2, k + 1), label="threshold")  # t = 1 is refused


def dropout_schedules(n: int, stages: int) -> st.SearchStrategy[dict[int, int]]:
    """client -> index of the first stage whose message it never gets, for some clients."""
    slot = st.none() | st.integers(0, stages - 1)
    return st.lists(slot, min_size=n, max_size=n).map(
        lambda slots: {u: s for u, s in enumerate(slots) if s is not None})
