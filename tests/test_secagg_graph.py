"""The server's graph bookkeeping: the flat neighbour lists and the live subgraph."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.secagg.graph import (
    NeighbourLists,
    PairBox,
    derived_neighbourhoods,
    derived_neighbours,
    prune,
)
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


@given(graphs())
def test_mirror_maps_every_slot_to_its_reversed_pair(g: tuple[int, dict[int, set[int]]]) -> None:
    n, lists = g
    nl = NeighbourLists(n, lists)
    m = nl.mirror()
    for u in lists:
        for v in lists[u]:
            assert m[nl.slot(u, v)] == nl.slot(v, u)


def test_mirror_refuses_an_asymmetric_graph() -> None:
    with pytest.raises(ConfigError, match="not symmetric"):
        NeighbourLists(3, {0: {1}, 1: {2}, 2: {1}}).mirror()


class _To:
    def __init__(self, peer: int, tag: str = "") -> None:
        self.peer, self.tag = peer, tag


@given(graphs(), st.randoms(use_true_random=False))
def test_in_order_sorts_one_item_per_neighbour_and_refuses_anything_else(
        g: tuple[int, dict[int, set[int]]], rnd: object) -> None:
    n, lists = g
    nl = NeighbourLists(n, lists)
    for u, vs in lists.items():
        items = [_To(v, f"to {v}") for v in vs]
        rnd.shuffle(items)  # type: ignore[attr-defined]
        assert [x.tag for x in nl.in_order(u, items, "thing")] == [f"to {v}" for v in sorted(vs)]
        peers = [x.peer for x in items]
        order = nl.order(u, peers, "thing")
        if peers == sorted(vs):
            assert order is None  # in order already: nothing to move
        else:
            assert order is not None and [peers[i] for i in order] == sorted(vs)
        wrong = [*items, _To(items[0].peer)] if items else [_To(n + 1)]
        with pytest.raises(ProtocolError, match="exactly one thing to each neighbour"):
            nl.in_order(u, wrong, "thing")
        with pytest.raises(ProtocolError, match="exactly one thing"):
            nl.in_order(u, [*items[1:], _To(1 << 40)], "thing")


@given(graphs())
def test_pair_box_files_records_under_the_pair_or_its_mirror(
        g: tuple[int, dict[int, set[int]]]) -> None:
    n, lists = g
    nl = NeighbourLists(n, lists)
    own, mirrored = PairBox(nl, 6), PairBox(nl, 6)
    for u, vs in lists.items():
        records = [f"{u:03d}>{v:02d}".encode()[:6].ljust(6, b".") for v in sorted(vs)]
        own.put(u, b"".join(records), mirrored=False, what="record")
        # sent out of order, with the order that sorts them: filed the same way
        peers = sorted(vs)[::-1]
        mirrored.put(u, b"".join(records[::-1]), order=nl.order(u, peers, "record"),
                     mirrored=True, what="record")
    for u, vs in lists.items():
        assert own.records(u) == [own.get(u, v) for v in sorted(vs)]
        assert own.blob(u) == b"".join(own.records(u))
        assert own.blob(u, range(0, len(vs), 2)) == b"".join(own.records(u)[::2])
        for v in vs:
            assert own.get(u, v) == mirrored.get(v, u)  # what u sent v, filed under v
    assert own.nbytes == 6 * len(nl)


def test_pair_box_refuses_a_wrong_count_or_size_and_keeps_what_it_had() -> None:
    nl = NeighbourLists(3, {0: {1, 2}, 1: {0}, 2: {0}})
    box = PairBox(nl, 4)
    box.put(0, b"aaaabbbb", mirrored=False, what="record")
    for bad in ([b"cccc"], [b"cccc", b"ddd"], [b"cccc", b"dddd", b"eeee"], [b"cc", b"dddddd"]):
        with pytest.raises(ProtocolError, match="one 4-byte record per neighbour"):
            box.check(0, bad, "record")  # record by record: sizes that only add up too
        if sum(map(len, bad)) != 8:
            with pytest.raises(ProtocolError, match="one 4-byte record per neighbour"):
                box.put(0, b"".join(bad), mirrored=False, what="record")
    assert box.check(1, [b"cccc"], "record") == b"cccc"  # fits: joined for put
    assert box.records(0) == [b"aaaa", b"bbbb"]
