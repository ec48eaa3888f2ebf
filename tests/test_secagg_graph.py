"""The server's graph bookkeeping: the flat neighbour lists and the live subgraph."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.secagg.graph import NeighbourLists, derived_neighbourhoods, derived_neighbours, prune
from secagg.errors import ConfigError, ProtocolError


@st.composite
def graphs(draw: st.DrawFn) -> tuple[int, dict[int, set[int]]]:
    """n, and a symmetric graph without self-loops on some of the clients 0..n-1."""
    n = draw(st.integers(1, 24))
    members = draw(st.sets(st.integers(0, n - 1), min_size=1))
    edges = draw(st.sets(st.tuples(st.sampled_from(sorted(members)),
                                   st.sampled_from(sorted(members))), max_size=80))
    lists: dict[int, set[int]] = {u: set() for u in members}
    for u, v in edges:
        if u != v:
            lists[u].add(v)
            lists[v].add(u)
    return n, lists


@given(graphs())
def test_neighbour_lists_give_every_pair_its_own_slot(g: tuple[int, dict[int, set[int]]]) -> None:
    n, lists = g
    nl = NeighbourLists(n, lists)
    assert list(nl.owners) == sorted(lists)
    assert len(nl) == sum(len(vs) for vs in lists.values())
    slots = set()
    for u in range(n):
        assert list(nl.of(u)) == sorted(lists.get(u, ()))
        for v in range(n):
            if v in lists.get(u, ()):
                i = nl.slot(u, v)
                assert nl.flat[i] == v and nl.start[u] <= i < nl.start[u + 1]
                slots.add(i)
            else:
                with pytest.raises(ProtocolError, match="not a neighbour"):
                    nl.slot(u, v)
    assert slots == set(range(len(nl)))


@given(graphs(), st.integers(1, 6))
def test_prune_keeps_the_largest_subgraph_where_everyone_has_t_minus_1_neighbours(
        g: tuple[int, dict[int, set[int]]], t: int) -> None:
    _, lists = g
    before = {u: set(vs) for u, vs in lists.items()}
    live = prune(lists, t)
    assert lists == before  # the input is left alone
    assert set(live) <= set(lists)
    for u, vs in live.items():
        assert vs == lists[u] & set(live)  # symmetric, and only live neighbours
        assert len(vs) + 1 >= t
    # largest: adding back a dropped client only raises the others' counts, so it would fit
    # if it had t - 1 live neighbours; none has
    for u in set(lists) - set(live):
        assert len(lists[u] & set(live)) + 1 < t


@given(ids=st.sets(st.integers(0, 60), min_size=1, max_size=30), k=st.integers(0, 32),
       seed=st.binary(min_size=32, max_size=32))
def test_one_clients_neighbours_are_its_neighbourhood_in_the_whole_graph(
        ids: set[int], k: int, seed: bytes) -> None:
    order = sorted(ids)
    if k % 2 and k < len(order) - 1:
        with pytest.raises(ConfigError, match="even degree"):
            derived_neighbours(order, k, seed, order[0])
        return
    whole = derived_neighbourhoods(order, k, seed)
    for me in order:
        assert derived_neighbours(order, k, seed, me) == whole[me]
    with pytest.raises(ConfigError, match="not among"):
        derived_neighbours(order, k, seed, max(order) + 1)
