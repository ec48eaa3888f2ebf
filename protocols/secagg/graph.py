"""The communication graph: who masks with, and shares secrets to, whom.

The complete graph is classic SecAgg. The sparse graph of SecAgg+ (Bell et al. 2020,
section 3) is the Harary graph H(m, k), every client joined to the k/2 clients on either side
of it on a ring, after a uniformly random relabelling.

Bell et al. prove security for a graph the adversary does not choose. So the relabelling is
not drawn by the server: :func:`derived_neighbourhoods` draws it from a CSPRNG keyed by the
round's transcript (:func:`protocols.secagg._keys.transcript`), a hash of every advertisement
the server included, each carrying a fresh nonce of its client. Every client recomputes the
graph from the roster it is sent and refuses a key broadcast whose neighbours differ. What a
server that picks which advertisements to include can still do is bounded in SECURITY.md.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Sequence
from functools import lru_cache
from typing import Protocol, TypeVar

import numpy as np

from secagg.errors import ConfigError, ProtocolError
from secagg.rng import Csprng

__all__ = ["NeighbourLists", "PairBox", "Ring", "derived_neighbourhoods", "derived_neighbours",
           "neighbourhoods", "prune"]


class _ToPeer(Protocol):
    @property
    def peer(self) -> int: ...


T = TypeVar("T", bound=_ToPeer)  # a message field with a peer: a share, an escrow


class Ring:
    """The graph of :func:`neighbourhoods`, read one client at a time: drawing it costs the
    relabelling (n draws), each neighbourhood then O(k). A client needs its own (and, in the
    enrolled mode, its neighbours'), not all n of them (O(n k)).

    Raises:
        ConfigError: k outside 0..n-1, or odd k below n - 1.
    """

    __slots__ = ("_half", "_n", "_order", "_pos")

    def __init__(self, n: int, k: int, rng: Csprng) -> None:
        if not 0 <= k <= n - 1:
            raise ConfigError(f"degree must be in 0..{n - 1}, got {k}")
        if k < n - 1 and k % 2:
            raise ConfigError(f"a Harary graph needs an even degree below n - 1, got {k}")
        self._n, self._half = n, (None if k == n - 1 else k // 2)
        self._order: list[int] = [] if self._half is None else rng.permutation(n)
        inverse = np.empty(len(self._order), np.int64)  # u's place on the ring
        inverse[self._order] = np.arange(len(self._order))
        self._pos: list[int] = inverse.tolist()

    def of(self, u: int) -> frozenset[int]:
        """Client u's neighbours: the k/2 on either side of it on the relabelled ring (or
        everyone else, in the complete graph)."""
        n, half = self._n, self._half
        if half is None:
            return frozenset(range(u)) | frozenset(range(u + 1, n))
        order, at = self._order, self._pos[u]
        return frozenset(order[(at + j) % n] for j in range(-half, half + 1) if j)


def neighbourhoods(n: int, k: int, rng: Csprng) -> tuple[frozenset[int], ...]:
    """Each of clients 0..n-1's neighbours (a symmetric relation without self-loops), the
    relabelling drawn from ``rng``: every :meth:`Ring.of`.

    Raises:
        ConfigError: k outside 0..n-1, or odd k below n - 1.
    """
    ring = Ring(n, k, rng)
    return tuple(ring.of(u) for u in range(n))


def derived_neighbourhoods(ids: Sequence[int], k: int, seed: bytes) -> dict[int, frozenset[int]]:
    """The graph over the clients ``ids`` (sorted, distinct), relabelled by a CSPRNG keyed
    with ``seed`` (32 bytes): the same for every party that knows ``ids`` and ``seed``.

    With ``k >= len(ids) - 1`` it is the complete graph over ``ids``.

    Raises:
        ConfigError: an odd k below ``len(ids) - 1``, a negative k, or ids not sorted and
            distinct.
    """
    if list(ids) != sorted(set(ids)):
        raise ConfigError("graph ids must be sorted and distinct")
    if k < 0:
        raise ConfigError(f"degree must be >= 0, got {k}")
    return dict(_derived(tuple(ids), k, bytes(seed)))


def derived_neighbours(ids: Sequence[int], k: int, seed: bytes, me: int) -> frozenset[int]:
    """``derived_neighbourhoods(ids, k, seed)[me]``, without the rest of the graph
    (:class:`Ring`): a client does not pay for every client's neighbourhood (O(len(ids) k):
    0.23 s at n = 10,000, k = 54, against about 1 ms for the relabelling).

    Raises:
        ConfigError: as :func:`derived_neighbourhoods`, or ``me`` not in ``ids``.
    """
    if list(ids) != sorted(set(ids)):
        raise ConfigError("graph ids must be sorted and distinct")
    if k < 0:
        raise ConfigError(f"degree must be >= 0, got {k}")
    m = len(ids)
    i = bisect_left(ids, me)
    if i == m or ids[i] != me:
        raise ConfigError(f"client {me} is not among the graph's {m} ids")
    ring = Ring(m, min(k, m - 1), Csprng(bytes(seed)))
    return frozenset(ids[j] for j in ring.of(i))


@lru_cache(maxsize=16)
def _derived(ids: tuple[int, ...], k: int, seed: bytes) -> tuple[tuple[int, frozenset[int]], ...]:
    # A pure function of its arguments, cached: the clients of one simulation all recompute
    # the same graph.
    m = len(ids)
    local = neighbourhoods(m, min(k, m - 1), Csprng(seed)) if m else ()
    return tuple((ids[i], frozenset(ids[j] for j in nb)) for i, nb in enumerate(local))


def prune(nbrs: dict[int, set[int]], t: int) -> dict[int, set[int]]:
    """The live subgraph: drop clients with fewer than t - 1 live neighbours, until none is
    left to drop (a client needs t - 1 neighbours and itself to hold t shares)."""
    live = {u: set(vs) for u, vs in nbrs.items()}
    changed = True
    while changed:
        changed = False
        for u in [u for u, vs in live.items() if len(vs) + 1 < t]:
            del live[u]
            for vs in live.values():
                vs.discard(u)
            changed = True
    return live


class NeighbourLists:
    """The server's copy of a graph: sorted neighbour lists in one flat int32 array with
    offsets (CSR): 4 bytes a pair, with no per-client container. Client u's list is
    ``flat[start[u]:start[u + 1]]``, and the pair (u, its i-th neighbour) has the global slot
    ``start[u] + i``."""

    __slots__ = ("_mirror", "flat", "owners", "start")

    def __init__(self, n: int, lists: dict[int, set[int]]) -> None:
        self.owners = array("i", sorted(lists))
        self.start = array("q", bytes(8 * (n + 1)))
        self.flat = array("i")
        for u in range(n):
            vs = lists.get(u)
            if vs:
                self.flat.extend(sorted(vs))
            self.start[u + 1] = len(self.flat)
        self._mirror: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.flat)

    def of(self, u: int) -> array[int]:
        return self.flat[self.start[u]:self.start[u + 1]]

    def slot(self, u: int, v: int) -> int:
        """The global slot of the pair (u, v); v must be one of u's neighbours."""
        lo, hi = self.start[u], self.start[u + 1]
        i = bisect_left(self.flat, v, lo, hi)
        if i == hi or self.flat[i] != v:
            raise ProtocolError(f"client {v} is not a neighbour of client {u}")
        return i

    def mirror(self) -> np.ndarray:
        """``m[p]``: the slot of pair p reversed (``m[slot(u, v)] == slot(v, u)``), for every
        slot at once; computed on first use (one sort, not a search per pair).

        Raises:
            ConfigError: the graph is not symmetric.
        """
        if self._mirror is None:
            n = len(self.start) - 1
            nb = np.frombuffer(self.flat, np.int32).astype(np.int64)
            counts = np.diff(np.frombuffer(self.start, np.int64)).astype(np.int64)
            owner = np.repeat(np.arange(n, dtype=np.int64), counts)
            keys = owner * n + nb  # increasing: owners in order, each list sorted
            back = nb * n + owner
            m = np.searchsorted(keys, back)
            if m.size and (m.max() >= m.size or not np.array_equal(keys[m], back)):
                raise ConfigError("the neighbour lists are not symmetric")
            self._mirror = m.astype(np.int32)  # 4 bytes a pair: it is held at the share peak
        return self._mirror

    def order(self, u: int, peers: Sequence[int], what: str) -> list[int] | None:
        """How to sort ``peers`` into u's neighbour list, checked to be exactly one per
        neighbour: None when they are in order already (the usual case), else the indices
        of ``peers`` in increasing peer order.

        Raises:
            ProtocolError: a missing, extra or repeated peer (names ``what``).
        """
        nb = self.of(u)
        try:
            if array("i", peers) == nb:
                return None
            order = sorted(range(len(peers)), key=peers.__getitem__)
            if array("i", [peers[i] for i in order]) == nb:
                return order
        except OverflowError:  # a peer id outside int32 is no neighbour
            pass
        raise ProtocolError(f"client {u} must send exactly one {what} to each neighbour")

    def in_order(self, u: int, items: Sequence[T], what: str) -> Sequence[T]:
        """``items`` (each with a ``peer``) in increasing peer order, checked as by
        :meth:`order`."""
        order = self.order(u, [x.peer for x in items], what)
        return items if order is None else [items[i] for i in order]


class PairBox:
    """A ``size``-byte record for every slot of a :class:`NeighbourLists`, in one array of
    opaque ``size``-byte items: ``size`` bytes a pair, no per-record object. Records are put
    and read a client at a time, one per neighbour in increasing order."""

    __slots__ = ("_graph", "_item", "_rows", "size")

    def __init__(self, graph: NeighbourLists, size: int) -> None:
        self._graph, self.size, self._item = graph, size, np.dtype(("V", size))
        self._rows = np.zeros(len(graph), self._item)

    @property
    def nbytes(self) -> int:
        return int(self._rows.nbytes)

    def check(self, u: int, records: Sequence[bytes], what: str) -> bytes:
        """That ``records`` fit u's slots (one ``size``-byte record per neighbour); returns
        them joined, for :meth:`put`.

        Raises:
            ProtocolError: a record count or size that does not fit (names ``what``).
        """
        g = self._graph
        if len(records) != g.start[u + 1] - g.start[u] or set(map(len, records)) - {self.size}:
            raise ProtocolError(f"client {u} must send one {self.size}-byte {what} per neighbour")
        return b"".join(records)

    def put(self, u: int, blob: bytes, *, order: Sequence[int] | None = None, mirrored: bool,
            what: str) -> None:
        """Keep u's records, ``blob`` cut into ``size``-byte pieces (one per neighbour v, in
        increasing order, or in the order :meth:`NeighbourLists.order` gave), in the slots
        (u, v), or with ``mirrored`` in (v, u): what u sent v, filed under its recipient.

        Raises:
            ProtocolError: a ``blob`` that is not one record per neighbour, before anything
                is kept.
        """
        g = self._graph
        lo, hi = g.start[u], g.start[u + 1]
        if len(blob) != (hi - lo) * self.size:
            raise ProtocolError(f"client {u} must send one {self.size}-byte {what} per neighbour")
        if lo == hi:
            return
        block = np.frombuffer(blob, self._item)
        if order is not None:
            block = block[np.asarray(order, np.intp)]
        self._rows[g.mirror()[lo:hi] if mirrored else slice(lo, hi)] = block

    def blob(self, u: int, keep: Sequence[int] | None = None) -> bytes:
        """The records in u's slots (u, v), one per neighbour v in increasing order, joined;
        with ``keep``, only those of the neighbours at these positions in u's list."""
        g = self._graph
        rows = self._rows[g.start[u]:g.start[u + 1]]
        return (rows if keep is None else rows[np.asarray(keep, np.intp)]).tobytes()

    def records(self, u: int) -> list[bytes]:
        """The records in u's slots (u, v), one per neighbour v in increasing order."""
        blob, size = self.blob(u), self.size
        return [blob[i:i + size] for i in range(0, len(blob), size)]

    def get(self, u: int, v: int) -> bytes:
        """The record in the slot (u, v)."""
        record: bytes = self._rows[self._graph.slot(u, v)].tobytes()
        return record
