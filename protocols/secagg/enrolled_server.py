"""The server of the enrolled mode of SecAgg / SecAgg+ (see :mod:`.enrolled_client`).

Theory of operation: the server names the cohort, then accumulates uploads into one running
sum as they arrive (never a per-client vector), keeping each upload's sealed shares (for
their recipients) and escrows. With U the clients whose upload arrived and D = cohort \\ U:

    sum_{u in U} y_u = sum x_u + sum_{u in U} PRG(b_u)
                       + sum_{u in U, v in D, v ~ u} +-PRG(s_uv)

(pairs inside U cancel). It forwards each survivor the shares addressed to it, learns b_u for
every u in U from t shares, and s_uv for every such pair from u itself or, if u vanished
before answering, from t partial decryptions of u's escrow of s_uv; then subtracts those
masks. A client dropped before its upload is simply not in the sum; after the upload, the
round needs t answering holders for every secret it must rebuild, or it aborts with
:class:`DropoutError`. A message the server refuses (late, duplicate, malformed) raises
:class:`ProtocolError` and changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from itertools import combinations
from typing import Any, ClassVar

import numpy as np

from protocols.base import (
    SERVER,
    AggregateResult,
    Message,
    finalize,
    header,
)
from protocols.secagg._enrolled_keys import (
    ESCROW_SIZE,
    SEALED_SIZE,
    escrow_ad,
    escrow_key,
    round_graph,
    self_mask_key,
    survivors_message,
)
from protocols.secagg._enrolled_state import (
    ACTIVE_SERVER_TRANSITIONS,
    Event,
    Kind,
    ServerStage,
    tables,
)
from protocols.secagg._keys import COMMITMENT_SIZE, mask_sign, seed_commitment
from protocols.secagg._recover import MAX_TRIES, rebuild
from protocols.secagg._roles import MaskingServer
from protocols.secagg.config import SecAggConfig
from protocols.secagg.enrolled_client import enrolled_registry
from protocols.secagg.enrolled_messages import (
    ConsistencyRequest,
    ConsistencyResponse,
    EscrowRequest,
    SealedShare,
    Signed,
    UnmaskRequest,
    UnmaskResponse,
    Upload,
    UploadRequest,
)
from protocols.secagg.graph import NeighbourLists, PairBox
from secagg import aead, shamir, threshold
from secagg.errors import (
    ConfigError,
    DropoutError,
    ForgedShareError,
    ProtocolError,
    UsageError,
)
from secagg.prg import add_masks
from secagg.rng import Csprng

__all__ = ["EnrolledServer"]

_STAGE_OF: dict[object, ServerStage] = {
    kind: stage for (stage, kind) in ACTIVE_SERVER_TRANSITIONS if isinstance(kind, Kind)
}
_SEED_SIZE = 32


class EnrolledServer(MaskingServer):
    """The server's role in one enrolled round.

    Args:
        cohort: the enrolled clients asked to take part (default: all ``0..n_clients-1``).

    Raises:
        UsageError: no enrolled registry in the config.
        ConfigError: a cohort that is not enrolled or too small for t and min_clients.
    """

    def __init__(self, config: SecAggConfig, rng: Csprng,
                 cohort: Sequence[int] | None = None) -> None:
        registry = enrolled_registry(config)
        members = tuple(sorted(set(range(config.n_clients) if cohort is None else cohort)))
        if cohort is not None and len(members) != len(cohort):
            raise ConfigError("the cohort lists a client twice")
        if any(not 0 <= u < config.n_clients or u not in registry.kex_keys for u in members):
            raise ConfigError(f"the cohort must be enrolled clients in 0..{config.n_clients - 1}")
        t = config.threshold
        if len(members) < max(t, config.min_clients, 2):
            raise ConfigError(f"a cohort of {len(members)} is too small: it needs at least "
                              f"max(t={t}, min_clients={config.min_clients}, 2)")
        graph = round_graph(config, members)
        thin = [u for u, vs in graph.items() if len(vs) + 1 < t]
        if thin:
            raise ConfigError(f"clients {thin[:5]} have fewer than t-1={t - 1} neighbours in a "
                              f"cohort of {len(members)}; lower the threshold or grow the cohort")
        # Per-pair state in flat buffers (as the per-round server): the graph as one int32
        # array of sorted neighbour lists, and each sealed share and escrow in its pair's
        # slot (the share from v to u and u's escrow with v both in the slot of (u, v)).
        self._graph = NeighbourLists(config.n_clients, {u: set(vs) for u, vs in graph.items()})
        self._inbox = PairBox(self._graph, SEALED_SIZE)
        self._escrow = PairBox(self._graph, ESCROW_SIZE)
        self._escrow_kept: dict[tuple[int, int], bytes] = {}
        self.config, self.cohort, self._rng = config, members, rng
        self._registry = registry
        self._table = tables(config.active)[1]
        self.stage = ServerStage.COLLECT_UPLOADS
        self._started = False
        self._waiting: set[int] = set()
        self._acc = np.zeros(config.dim + 1, config.encoding.dtype)
        self._uploaded: set[int] = set()
        self._survivor_list: tuple[int, ...] = ()
        self._signatures: dict[int, bytes] = {}
        self._asked: dict[int, frozenset[tuple[int, int]]] = {}  # escrows asked of each holder
        # every share of each survivor's seed, compactly (a holder's shares are checked
        # against the commitment, and a forged one is found among the others)
        holders = max(len(vs) for vs in graph.values()) + 1
        self._seed_shares = shamir.ShareBook(t, max(t, holders))
        self._commitments: dict[int, bytes] = {}
        #: owner -> the holders whose shares of its self-mask seed, or partials of its
        #: escrows, did not fit (the round went on without them)
        self.suspects: dict[int, tuple[int, ...]] = {}
        self._round_seeds: dict[tuple[int, int], bytes] = {}
        self._partials: dict[tuple[int, int], dict[int, bytes]] = {}
        self._answered: set[int] = set()
        self._result: AggregateResult | None = None
        self.dropped_at: dict[ServerStage, tuple[int, ...]] = {}

    # -- ServerCore ----------------------------------------------------------------------
    def start(self) -> list[Message]:
        """Ask every cohort member for its upload."""
        if self._started:
            raise UsageError("the round has already started")
        self._started = True
        self._waiting = set(self.cohort)
        return [UploadRequest(**header(self.config, SERVER, u), cohort=self.cohort)
                for u in self.cohort]

    # -- handlers: validate, then commit ---------------------------------------------------
    def _on_upload(self, msg: Message) -> None:
        self._expect(msg, Upload)
        if not isinstance(msg, Upload):
            raise ProtocolError("expected Upload")
        u, y = msg.sender, msg.masked
        if y.dtype != self._acc.dtype or y.shape != self._acc.shape:
            raise ProtocolError(f"masked input must be {self._acc.size} values of "
                                f"{self._acc.dtype}, got {y.size} of {y.dtype}")
        g = self._graph
        shares = g.in_order(u, msg.shares, "sealed share")
        escrow = g.in_order(u, msg.escrow, "escrow")
        if len(msg.commitment) != COMMITMENT_SIZE:
            raise ProtocolError(f"the seed commitment must be {COMMITMENT_SIZE} bytes")
        # both checked before anything is kept
        cts = self._inbox.check(u, [sh.ciphertext for sh in shares], "sealed share")
        ects = self._escrow.check(u, [e.ciphertext for e in escrow], "escrow")
        np.add(self._acc, y, out=self._acc)
        self._inbox.put(u, cts, mirrored=True, what="sealed share")  # the graph is symmetric
        self._escrow.put(u, ects, mirrored=False, what="escrow")
        self._commitments[u] = bytes(msg.commitment)
        self._uploaded.add(u)
        self._waiting.discard(u)

    def _on_consistency(self, msg: Message) -> None:
        self._on_consistency_response(msg, ConsistencyResponse, self._registry.verify_key)

    def _survivors_message(self, survivors: tuple[int, ...]) -> bytes:
        return survivors_message(self.config, survivors)

    def _on_unmask_response(self, msg: Message) -> None:
        self._expect(msg, UnmaskResponse)
        if not isinstance(msg, UnmaskResponse):
            raise ProtocolError("expected UnmaskResponse")
        w = msg.sender
        surv, drop = self._split(w)
        asked = self._asked[w]
        seeds = msg.seed_shares
        if len(set(seeds.owners)) != len(seeds) or set(seeds.owners) != surv:
            raise ProtocolError(f"client {w} must return one seed share per survivor asked for")
        if len(seeds.values) != shamir.SHARE_SIZE * len(seeds):
            raise ProtocolError(f"shares must be {shamir.SHARE_SIZE} bytes")
        peers = [r.peer for r in msg.round_seeds]
        if len(set(peers)) != len(peers) or set(peers) != drop:
            raise ProtocolError(f"client {w} must return one round seed per dropped neighbour")
        if any(len(r.seed) != _SEED_SIZE for r in msg.round_seeds):
            raise ProtocolError(f"round seeds must be {_SEED_SIZE} bytes")
        pairs = [(p.owner, p.dropped) for p in msg.partials]
        if len(set(pairs)) != len(pairs) or set(pairs) != asked:
            raise ProtocolError(f"client {w} must return one partial per escrow asked for")
        if any(len(p.value) != threshold.POINT_SIZE for p in msg.partials):
            raise ProtocolError(f"partials must be {threshold.POINT_SIZE} bytes")
        self._seed_shares.add_from(w + 1, seeds.owners, seeds.values)
        for r in msg.round_seeds:
            self._round_seeds[(w, r.peer)] = r.seed
        for p in msg.partials:
            self._partials.setdefault((p.owner, p.dropped), {})[w + 1] = p.value
        self._answered.add(w)
        self._waiting.discard(w)

    _STAGE_OF = _STAGE_OF
    _FINISHED, _ABORTED, _DEADLINE = ServerStage.FINISHED, ServerStage.ABORTED, Event.DEADLINE
    _HANDLERS: ClassVar[dict[object, Callable[[EnrolledServer, Message], None]]] = {
        Kind.UPLOAD: _on_upload,
        Kind.CONSISTENCY_RESPONSE: _on_consistency,
        Kind.UNMASK_RESPONSE: _on_unmask_response,
    }

    # -- stage closers -----------------------------------------------------------------------
    def _check_recoverable(self, holders: frozenset[int]) -> None:
        """Every survivor's self mask has t live holders (itself counts)."""
        t = self.config.threshold
        for u in self._uploaded:
            have = sum(v in holders for v in self._graph.of(u)) + (u in holders)
            if have < t:
                raise DropoutError(f"client {u}'s self mask needs t={t} live share holders; "
                                   f"{have} remain")

    def _close_uploads(self) -> list[Message]:
        up = frozenset(self._uploaded)
        if len(up) < max(self.config.min_clients, 1):
            raise DropoutError(f"only {len(up)} clients uploaded; min_clients="
                               f"{self.config.min_clients} and threshold t={self.config.threshold}")
        self._check_recoverable(up)
        if not self.config.active:
            return self._unmask_requests(up, ())
        self._survivor_list = tuple(sorted(up))
        self._waiting = set(up)
        return [ConsistencyRequest(**header(self.config, SERVER, u), survivors=self._survivor_list)
                for u in self._survivor_list]

    def _unmask_requests(self, recipients: frozenset[int],
                         sigs: tuple[Signed, ...]) -> list[Message]:
        up = self._uploaded
        self._waiting = set(recipients)
        out: list[Message] = []
        asks = self._escrow_asks(recipients)
        g = self._graph
        for w in sorted(recipients):
            nbrs = g.of(w)
            surv, drop = self._split(w)
            escrow = asks.get(w, [])
            self._asked[w] = frozenset((e.owner, e.dropped) for e in escrow)
            shares = tuple(SealedShare(v, ct) for v, ct in zip(nbrs, self._inbox.records(w))
                           if v in up)
            out.append(UnmaskRequest(**header(self.config, SERVER, w),
                                     survivors=tuple(sorted(surv)), dropped=tuple(sorted(drop)),
                                     shares=shares, escrow=tuple(escrow), signatures=sigs))
        self._inbox = PairBox(NeighbourLists(0, {}), SEALED_SIZE)
        # Only escrows of a survivor with a dropped client can ever be opened: keep those.
        self._escrow_kept = {(u, v): self._escrow.get(u, v) for u in sorted(up)
                             for v in g.of(u) if v not in up}
        self._escrow = PairBox(NeighbourLists(0, {}), ESCROW_SIZE)
        return out

    def _split(self, w: int) -> tuple[frozenset[int], frozenset[int]]:
        """What w is asked to unmask: (its surviving neighbours and itself, its dropped
        neighbours); recomputed, not stored (fixed once the uploads are in)."""
        up, nbrs = self._uploaded, self._graph.of(w)
        return (frozenset(v for v in nbrs if v in up) | {w},
                frozenset(v for v in nbrs if v not in up))

    def _escrow_asks(self, recipients: frozenset[int]) -> dict[int, list[EscrowRequest]]:
        """Which holders are asked to help open each escrow a survivor made with a dropped
        client (it is opened only if that survivor vanishes before it answers).

        Each pair asks t holders plus half of the rest (at least one spare), starting at a
        different holder for each pair so the work spreads evenly; a partial costs a
        holder one scalar multiplication.
        """
        t, up = self.config.threshold, self._uploaded
        out: dict[int, list[EscrowRequest]] = {}
        for u in sorted(up):
            holders = [v for v in self._graph.of(u) if v in recipients]
            if not holders:
                continue
            ask = min(len(holders), t + max(1, (len(holders) - t + 1) // 2))
            for v in (v for v in self._graph.of(u) if v not in up):
                start = (u * 7919 + v) % len(holders)
                req = EscrowRequest(u, v)
                for i in range(ask):
                    out.setdefault(holders[(start + i) % len(holders)], []).append(req)
        return out

    def _pair_seed(self, u: int, v: int) -> bytes:
        """Survivor u's round seed with dropped v: from u, or from t partials of u's escrow."""
        seed = self._round_seeds.get((u, v))
        if seed is not None:
            return seed
        t = self.config.threshold
        partials = self._partials.get((u, v), {})
        if len(partials) < t:
            raise DropoutError(f"client {u} did not answer and only {len(partials)} holders "
                               f"opened its escrow with dropped client {v}; t={t}")
        xs = sorted(partials)

        def opened(subset: tuple[int, ...]) -> bytes | None:
            try:
                k = threshold.combined_key({x: partials[x] for x in subset}, t)
                return aead.open_(escrow_key(self.config, k, u, v), self._escrow_kept[(u, v)],
                                  escrow_ad(self.config, u, v))
            except ProtocolError:
                return None

        seed = opened(tuple(xs[:t]))
        if seed is not None:
            return seed
        # A forged partial: with more than t, find t that open the escrow (the AEAD tag is
        # the check), then name the holders whose partials do not fit with them.
        for tries, subset in enumerate(combinations(xs, t)):
            if tries >= MAX_TRIES:
                break
            seed = opened(subset)
            if seed is not None:
                bad = tuple(x - 1 for x in xs if x not in subset and opened(
                    (*subset[1:], x)) is None)
                self.suspects[u] = tuple(sorted({*self.suspects.get(u, ()), *bad}))
                return seed
        raise ForgedShareError(
            f"the escrow of client {u} with {v} does not open from the {len(xs)} partials "
            f"of clients {[x - 1 for x in xs]}: one of them is forged",
            owner=u, suspects=tuple(x - 1 for x in xs))

    def _close_unmask(self) -> list[Message]:
        cfg, t = self.config, self.config.threshold
        up = self._uploaded
        terms: list[tuple[bytes, int]] = []
        for u in sorted(up):
            shares = self._seed_shares.shares(u)
            if len(shares) < t:
                raise DropoutError(f"only {len(shares)} shares of client {u}'s self-mask seed "
                                   f"arrived; t={t}")
            seed, bad = rebuild(shares, t, partial(self._is_seed_of, u), owner=u,
                                what=f"client {u}'s self-mask seed")
            if bad:
                self.suspects[u] = bad
            terms.append((self_mask_key(cfg, u, seed), -1))
        for v in sorted(set(self.cohort) - up):
            for u in (u for u in self._graph.of(v) if u in up):
                terms.append((self._pair_seed(u, v), -mask_sign(u, v)))
        add_masks(self._acc, terms)
        self._result = finalize(cfg, self._acc, tuple(sorted(up)), self._rng)
        self._release()
        return []

    _CLOSERS: ClassVar[dict[Any, Callable[[EnrolledServer], list[Message]]]] = {
        ServerStage.COLLECT_UPLOADS: _close_uploads,
        ServerStage.COLLECT_SIGNATURES: MaskingServer._close_signatures,
        ServerStage.COLLECT_UNMASK: _close_unmask,
    }

    def _is_seed_of(self, u: int, seed: bytes) -> bool:
        return seed_commitment(self.config, u, seed) == self._commitments[u]

    def _release(self) -> None:
        """Drop everything the finished (or aborted) round no longer needs."""
        empty = NeighbourLists(0, {})
        self._inbox, self._escrow = PairBox(empty, SEALED_SIZE), PairBox(empty, ESCROW_SIZE)
        self._escrow_kept = {}
        self._seed_shares.clear()
        self._round_seeds.clear()
        self._partials.clear()
        self._acc = np.zeros(0, self.config.encoding.dtype)
