"""The SecAgg / SecAgg+ server (Bonawitz et al. 2017, fig. 4; Bell et al. 2020, sec. 3).

Theory of operation: the server relays keys and sealed shares, accumulates masked inputs
into one running sum as they arrive (it never holds a per-client vector), and finally
removes the masks. With U2 the clients that shared, U3 those whose masked input arrived:

    sum_{u in U3} y_u = sum x_u + sum_{u in U3} PRG(b_u)
                        + sum_{u in U3, v in U2 \\ U3, v ~ u} +-PRG(s_uv)

(pairs inside U3 cancel). It rebuilds b_u for every survivor and s_v^SK for every client
that dropped after sharing, from t shares each, checks every rebuilt value against its
owner's commitment (the seed commitment in the advertisement; the public key s_v^PK) and
subtracts those masks. A forged share never gives a silently wrong sum: with more than t
shares the server finds a t-subset that rebuilds the commitment (and records the holders
whose shares did not fit in :attr:`SecAggServer.suspects`); with exactly t it aborts with
:class:`ForgedShareError` naming the suspects (:mod:`._recover`). The decoded sum is then
range-checked before release (:func:`protocols.base.check_release`).

The graph is not the server's to choose: once the advertisements are in, the server fixes
the roster (every advertisement it includes, by digest), and the transcript hash of the
roster and the config keys the graph's relabelling (:func:`.graph.derived_neighbourhoods`);
every client recomputes it.

Dropouts are recovered at every stage: a client whose live neighbourhood falls below t
before it masks is excluded (its input is lost, the round goes on); after masking, the round
needs t live share holders of every secret it must rebuild, or it aborts with
:class:`DropoutError`. A message the server refuses (late, duplicate, malformed) raises
:class:`ProtocolError` and changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, ClassVar

import numpy as np

from protocols.base import (
    SERVER,
    AggregateResult,
    Message,
    finalize,
    header,
)
from protocols.secagg._keys import (
    COMMITMENT_SIZE,
    NONCE_SIZE,
    SEALED_SIZE,
    advert_digest,
    advert_message,
    graph_seed,
    mask_sign,
    pair_mask_key,
    seed_commitment,
    self_mask_key,
    survivors_message,
    transcript,
)
from protocols.secagg._recover import rebuild
from protocols.secagg._roles import MaskingServer
from protocols.secagg._state import ACTIVE_SERVER_TRANSITIONS, Event, Kind, ServerStage, tables
from protocols.secagg.config import SecAggConfig
from protocols.secagg.graph import NeighbourLists, PairBox, derived_neighbourhoods, prune
from protocols.secagg.messages import (
    AdvertiseKeys,
    ConsistencyRequest,
    ConsistencyResponse,
    KeyBroadcast,
    KeyRequest,
    MaskedInput,
    PublicKeys,
    Roster,
    SealedShares,
    ShareForward,
    ShareKeys,
    Signed,
    UnmaskRequest,
    UnmaskResponse,
)
from secagg import shamir, sign
from secagg.errors import DropoutError, ProtocolError, UsageError
from secagg.kex import PUBLIC_KEY_SIZE, KeyPair
from secagg.prg import add_masks
from secagg.rng import Csprng

__all__ = ["SecAggServer"]

_STAGE_OF: dict[object, ServerStage] = {
    kind: stage for (stage, kind) in ACTIVE_SERVER_TRANSITIONS if isinstance(kind, Kind)
}


_RECORD_SIZE = PUBLIC_KEY_SIZE + COMMITMENT_SIZE  # s_pk || seed commitment, per client


class SecAggServer(MaskingServer):
    """The server's role in one SecAgg / SecAgg+ round.

    Attributes:
        suspects: owner -> the clients whose shares of that owner's secret did not rebuild
            its commitment (found, and left out, when more than t shares arrived).
    """

    def __init__(self, config: SecAggConfig, rng: Csprng) -> None:
        if config.active and config.registry is None:
            raise UsageError("the active variant needs config.registry (see protocols.secagg.enroll)")
        self._table = tables(config.active)[1]
        self._signatures: dict[int, bytes] = {}
        self._survivor_list: tuple[int, ...] = ()
        self.config = config
        self._rng = rng
        self.stage = ServerStage.COLLECT_KEYS
        self._started = False
        self._graph: dict[int, frozenset[int]] = {}
        self._transcript = b""
        self._waiting: set[int] = set()
        self._keys: dict[int, PublicKeys] = {}
        self._digests: dict[int, bytes] = {}
        self.suspects: dict[int, tuple[int, ...]] = {}
        # Per-pair state is held compactly, since it is what grows with n x k: neighbour
        # lists in one flat int32 array (4 bytes a pair, not a hash set's ~40), and the sealed
        # shares in one buffer of fixed-size ciphertexts, the share from v to u in the slot
        # of the pair (u, v) (SEALED_SIZE bytes a pair, no per-share object and no sender id:
        # a client's shares arrive all at once, so its slots are filled exactly when it is
        # in _shared). Once the graph is fixed, a client's advertisement shrinks to what the
        # unmasking checks: s_pk and the seed commitment, _RECORD_SIZE bytes in _committed.
        self._sent_nb = NeighbourLists(0, {})
        self._inbox = PairBox(self._sent_nb, SEALED_SIZE)
        self._shared: set[int] = set()
        self._forwarded = NeighbourLists(0, {})
        self._committed = bytearray()
        self._acc = np.zeros(config.dim + 1, config.encoding.dtype)
        self._masked: set[int] = set()
        # Shares to rebuild each secret from (about 41 bytes a share). Every rebuilt secret is
        # checked against its commitment; the shares kept beyond t let the server find up to
        # keep - t forged ones and rebuild from the others (all of them in the active variant,
        # t + 2 in the passive one, to keep memory near t shares per secret).
        keep = config.degree + 1 if config.active else min(config.degree + 1,
                                                             config.threshold + 2)
        self._seed_shares = shamir.ShareBook(config.threshold, keep)
        self._key_shares = shamir.ShareBook(config.threshold, keep)
        self._lagrange = shamir.LagrangeCache()
        self._result: AggregateResult | None = None
        self.dropped_at: dict[ServerStage, tuple[int, ...]] = {}

    # -- ServerCore ----------------------------------------------------------------------
    def start(self) -> list[Message]:
        """Ask every client of the cohort for its keys."""
        if self._started:
            raise UsageError("the round has already started")
        self._started = True
        self._waiting = set(range(self.config.n_clients))
        return [KeyRequest(**header(self.config, SERVER, u)) for u in range(self.config.n_clients)]

    # -- message handlers: validate, then commit ------------------------------------------
    def _on_advertise(self, msg: Message) -> None:
        self._expect(msg, AdvertiseKeys)
        if not isinstance(msg, AdvertiseKeys):
            raise ProtocolError("expected AdvertiseKeys")
        if len(msg.c_pk) != PUBLIC_KEY_SIZE or len(msg.s_pk) != PUBLIC_KEY_SIZE:
            raise ProtocolError(f"public keys must be {PUBLIC_KEY_SIZE} bytes")
        if len(msg.commitment) != COMMITMENT_SIZE or len(msg.nonce) != NONCE_SIZE:
            raise ProtocolError(f"an advertisement needs a {COMMITMENT_SIZE}-byte seed "
                                f"commitment and a {NONCE_SIZE}-byte nonce")
        digest = advert_digest(self.config, msg.sender, msg.c_pk, msg.s_pk, msg.commitment,
                               msg.nonce)
        if self.config.registry is not None and self.config.active:
            sign.verify(self.config.registry.verify_key(msg.sender), advert_message(digest),
                        msg.signature)
        self._keys[msg.sender] = PublicKeys(msg.sender, msg.c_pk, msg.s_pk, msg.signature,
                                            msg.commitment, msg.nonce)
        self._digests[msg.sender] = digest
        self._waiting.discard(msg.sender)

    def _on_share_keys(self, msg: Message) -> None:
        self._expect(msg, ShareKeys)
        if not isinstance(msg, ShareKeys):
            raise ProtocolError("expected ShareKeys")
        u = msg.sender
        order = self._sent_nb.order(u, msg.shares.peers, "sealed share")
        self._inbox.put(u, msg.shares.sealed, order=order, mirrored=True,  # symmetric graph
                        what="sealed share")
        self._shared.add(u)
        self._waiting.discard(u)

    def _on_masked_input(self, msg: Message) -> None:
        self._expect(msg, MaskedInput)
        if not isinstance(msg, MaskedInput):
            raise ProtocolError("expected MaskedInput")
        y = msg.masked
        if y.dtype != self._acc.dtype or y.shape != self._acc.shape:
            raise ProtocolError(f"masked input must be {self._acc.size} values of "
                                f"{self._acc.dtype}, got {y.size} of {y.dtype}")
        np.add(self._acc, y, out=self._acc)
        self._masked.add(msg.sender)
        self._waiting.discard(msg.sender)

    def _on_consistency(self, msg: Message) -> None:
        registry = self.config.registry
        if registry is None:
            raise ProtocolError("expected no ConsistencyResponse: the round is not active")
        self._on_consistency_response(msg, ConsistencyResponse, registry.verify_key)

    def _survivors_message(self, survivors: tuple[int, ...]) -> bytes:
        return survivors_message(self.config, self._transcript, survivors)

    def _on_unmask_response(self, msg: Message) -> None:
        self._expect(msg, UnmaskResponse)
        if not isinstance(msg, UnmaskResponse):
            raise ProtocolError("expected UnmaskResponse")
        u = msg.sender
        surv, drop = self._split(u)
        seeds, keys = msg.seed_shares, msg.key_shares
        if len(set(seeds.owners)) != len(seeds) or set(seeds.owners) != surv:
            raise ProtocolError(f"client {u} must return one seed share per survivor it was asked for")
        if len(set(keys.owners)) != len(keys) or set(keys.owners) != drop:
            raise ProtocolError(f"client {u} must return one key share per dropped neighbour")
        for shares in (seeds, keys):
            if len(shares.values) != shamir.SHARE_SIZE * len(shares):
                raise ProtocolError(f"shares must be {shamir.SHARE_SIZE} bytes")
        self._seed_shares.add_from(u + 1, seeds.owners, seeds.values)
        self._key_shares.add_from(u + 1, keys.owners, keys.values)
        self._waiting.discard(u)

    _STAGE_OF = _STAGE_OF
    _FINISHED, _ABORTED, _DEADLINE = ServerStage.FINISHED, ServerStage.ABORTED, Event.DEADLINE
    _HANDLERS: ClassVar[dict[object, Callable[[SecAggServer, Message], None]]] = {
        Kind.ADVERTISE_KEYS: _on_advertise,
        Kind.SHARE_KEYS: _on_share_keys,
        Kind.MASKED_INPUT: _on_masked_input,
        Kind.CONSISTENCY_RESPONSE: _on_consistency,
        Kind.UNMASK_RESPONSE: _on_unmask_response,
    }

    # -- stage closers ---------------------------------------------------------------------
    def _need(self, alive: int, what: str) -> None:
        if alive < self.config.release_floor:
            raise DropoutError(f"only {alive} clients {what}; a release needs "
                               f"{self.config.release_floor} (min_clients="
                               f"{self.config.min_clients}, never below 2) and threshold "
                               f"t={self.config.threshold}")

    def _close_keys(self) -> list[Message]:
        cfg, t = self.config, self.config.threshold
        u1 = sorted(self._keys)
        if len(u1) < t:
            raise DropoutError(f"only {len(u1)} of {cfg.n_clients} clients advertised keys; "
                               f"threshold t={t} needs {t}")
        self._need(len(u1), f"of {cfg.n_clients} advertised keys")
        roster = Roster(tuple(u1), b"".join(self._digests[u] for u in u1),
                        b"".join(self._keys[u].signature for u in u1))
        self._transcript = transcript(cfg, roster.clients, roster.digests)
        self._digests = {}  # the roster and the transcript carry them from here
        self._graph = derived_neighbourhoods(u1, cfg.degree, graph_seed(self._transcript))
        live = prune({u: set(self._graph[u]) for u in u1}, t)
        self._need(len(live), f"of {cfg.n_clients} advertised keys with t-1 live neighbours")
        self._sent_nb = NeighbourLists(cfg.n_clients, live)
        self._inbox = PairBox(self._sent_nb, SEALED_SIZE)
        self._graph = {}  # no longer needed: the live neighbourhoods replace it
        self._waiting = set(live)
        out: list[Message] = []
        for u, vs in sorted(live.items()):
            keys = tuple(self._keys[v] for v in sorted(vs | {u}))
            out.append(KeyBroadcast(**header(cfg, SERVER, u), keys=keys, roster=roster))
        size = _RECORD_SIZE
        committed = self._committed = bytearray(size * cfg.n_clients)
        for u in live:
            k = self._keys[u]
            committed[size * u:size * (u + 1)] = k.s_pk + k.commitment
        self._keys = {}  # the broadcasts carry them from here
        return out

    def _s_pk(self, u: int) -> bytes:
        at = _RECORD_SIZE * u
        return bytes(self._committed[at:at + PUBLIC_KEY_SIZE])

    def _commitment(self, u: int) -> bytes:
        at = _RECORD_SIZE * u + PUBLIC_KEY_SIZE
        return bytes(self._committed[at:at + COMMITMENT_SIZE])

    def _close_shares(self) -> list[Message]:
        t = self.config.threshold
        sent = self._sent_nb
        live = prune({u: set(sent.of(u)) & self._shared for u in self._shared}, t)
        self._need(len(live), "shared their keys with enough live neighbours")
        self._forwarded = NeighbourLists(self.config.n_clients, live)
        self._waiting = set(live)
        out: list[Message] = []
        for u in sorted(live):
            keep, nb = live[u], sent.of(u)
            if len(keep) == len(nb):  # every neighbour shared (keep is a subset of nb)
                shares = SealedShares(tuple(nb), self._inbox.blob(u))
            else:
                at = [i for i, v in enumerate(nb) if v in keep]
                shares = SealedShares(tuple(nb[i] for i in at), self._inbox.blob(u, at))
            out.append(ShareForward(**header(self.config, SERVER, u), shares=shares))
        self._inbox = PairBox(NeighbourLists(0, {}), SEALED_SIZE)
        self._sent_nb = NeighbourLists(0, {})  # late ShareKeys are refused before they need it
        return out

    def _close_masked(self) -> list[Message]:
        u3 = frozenset(self._masked)
        self._need(len(u3), "sent masked inputs")
        self._check_recoverable(u3)
        if not self.config.active:
            return self._unmask_requests(u3, ())
        need = self.config.signature_threshold
        if len(u3) < need:  # every client would refuse to sign: do not ask
            raise DropoutError(f"only {len(u3)} clients sent masked inputs; the consistency "
                               f"round needs {need} signatures (signature_threshold)")
        self._survivor_list = tuple(sorted(u3))
        self._waiting = set(u3)
        return [ConsistencyRequest(**header(self.config, SERVER, u), survivors=self._survivor_list)
                for u in self._survivor_list]

    def _check_recoverable(self, holders: frozenset[int]) -> None:
        """Every secret the server must rebuild still has t live share holders."""
        t = self.config.threshold
        u3 = self._masked
        for u in u3:
            have = sum(v in holders for v in self._forwarded.of(u)) + (u in holders)
            if have < t:
                raise DropoutError(f"client {u}'s self mask needs t={t} live share holders; "
                                   f"{have} remain")
        for v in set(self._forwarded.owners) - u3:
            have = sum(w in holders for w in self._forwarded.of(v))
            if have < t:
                raise DropoutError(f"dropped client {v}'s masks need t={t} live share holders; "
                                   f"{have} remain")

    def _unmask_requests(self, recipients: frozenset[int], sigs: tuple[Signed, ...]) -> list[Message]:
        self._waiting = set(recipients)
        out: list[Message] = []
        for u in sorted(recipients):
            surv, drop = self._split(u)
            out.append(UnmaskRequest(**header(self.config, SERVER, u), survivors=tuple(sorted(surv)),
                                     dropped=tuple(sorted(drop)), signatures=sigs))
        return out

    def _split(self, u: int) -> tuple[frozenset[int], frozenset[int]]:
        """What u is asked to unmask: (its surviving neighbours and itself, its dropped
        neighbours). Recomputed, not stored (it is fixed once the masked inputs are in)."""
        u3 = self._masked
        nb = self._forwarded.of(u)
        return (frozenset(v for v in nb if v in u3) | {u},
                frozenset(v for v in nb if v not in u3))

    def _close_unmask(self) -> list[Message]:
        cfg, t = self.config, self.config.threshold
        u3 = self._masked
        terms: list[tuple[bytes, int]] = []
        survivors = sorted(u3)
        dropped = sorted(set(self._forwarded.owners) - u3)
        for owners, book, what in ((survivors, self._seed_shares, "client {}'s seed"),
                                   (dropped, self._key_shares, "dropped client {}'s key")):
            for u in owners:
                if book.count(u) < t:
                    raise DropoutError(f"only {book.count(u)} shares of {what.format(u)} "
                                       f"arrived; t={t}")
        seeds = self._rebuild_all(self._seed_shares, survivors, self._is_seed_of,
                                  "client {}'s self-mask seed")
        for u, seed in zip(survivors, seeds):
            terms.append((self_mask_key(cfg, u, seed), -1))
        keys = self._rebuild_all(self._key_shares, dropped, self._is_key_of,
                                 "dropped client {}'s mask key")
        for v, secret in zip(dropped, keys):  # each checked against s_v^PK already
            for u in (u for u in self._forwarded.of(v) if u in u3):
                key = pair_mask_key(cfg, secret, self._s_pk(u), u, v)
                terms.append((key, -mask_sign(u, v)))
        add_masks(self._acc, terms)
        self._result = finalize(cfg, self._acc, tuple(sorted(u3)), self._rng)
        self._release()
        return []

    def _rebuild_all(self, book: shamir.ShareBook, owners: list[int],
                     valid: Callable[[int, bytes], bool], what: str) -> list[bytes]:
        """Every owner's committed secret: all from exactly t shares in one batch (the honest
        case), each checked against its commitment; an owner whose secret does not check is
        rebuilt by :func:`rebuild` from the shares kept (finding the forged ones, or raising
        :class:`ForgedShareError` naming the suspects)."""
        try:
            fast: list[bytes | None] = list(book.reconstruct(owners, cache=self._lagrange))
        except ProtocolError:  # a share outside the field: sort it out owner by owner
            fast = [None] * len(owners)
        out = []
        for u, secret in zip(owners, fast):
            if secret is None or not valid(u, secret):
                secret, bad = rebuild(book.shares(u), self.config.threshold,
                                      partial(valid, u), owner=u, what=what.format(u))
                if bad:
                    self.suspects[u] = bad
            out.append(secret)
        return out

    def _is_seed_of(self, u: int, seed: bytes) -> bool:
        return seed_commitment(self.config, u, seed) == self._commitment(u)

    def _is_key_of(self, v: int, secret: bytes) -> bool:
        return KeyPair.from_secret(secret).public == self._s_pk(v)

    _CLOSERS: ClassVar[dict[Any, Callable[[SecAggServer], list[Message]]]] = {
        ServerStage.COLLECT_KEYS: _close_keys,
        ServerStage.COLLECT_SHARES: _close_shares,
        ServerStage.COLLECT_MASKED: _close_masked,
        ServerStage.COLLECT_SIGNATURES: MaskingServer._close_signatures,
        ServerStage.COLLECT_UNMASK: _close_unmask,
    }

    def _release(self) -> None:
        """Drop everything the finished (or aborted) round no longer needs."""
        self._sent_nb = self._forwarded = NeighbourLists(0, {})
        self._inbox = PairBox(self._sent_nb, SEALED_SIZE)
        self._seed_shares.clear()
        self._key_shares.clear()
        self._lagrange = shamir.LagrangeCache()
        self._keys, self._digests, self._committed = {}, {}, bytearray()
        self._acc = np.zeros(0, self.config.encoding.dtype)
