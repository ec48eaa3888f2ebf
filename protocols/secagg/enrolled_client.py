"""The client of the enrolled mode of SecAgg / SecAgg+: two exchanges per round.

Theory of operation (Bonawitz et al. 2017 and Bell et al. 2020, with the key setup replaced
by long-term keys as in Ma et al. 2023, "Flamingo"): every client of the registry holds a
long-term X25519 key. For a round (session, r) whose cohort the server names, client u

1. derives the graph from (session, r, cohort) and, for each neighbour v, the round seed
   s_uv = HKDF(DH(u, v), "pair-mask", session, r, pair) (the DH result is cached across
   rounds); draws a fresh self-mask seed b_u and a fresh escrow scalar z_u; Shamir-shares
   both to its neighbours and itself, sealed with per-round keys from the long-term
   agreement (fresh nonces; associated data binds sender, receiver, session and round);
   escrows each s_uv under the key z_u * H(session, r, u, v), which t holders of z_u can
   rebuild for that one label and no other (:mod:`secagg.threshold`); and uploads

       y = encode(x) + PRG(b_u) + sum_{v ~ u, v > u} PRG(s_uv) - sum_{v ~ u, v < u} PRG(s_uv)

   with the sealed shares and the escrows, all in one message.
2. When asked to unmask, returns for each neighbour the server names as survivor its share
   of b_v, and for each neighbour named as dropped its own seed s_uv; and, for escrows of a
   surviving neighbour with a dropped client, its partial decryption. A survivor that
   vanishes before it answers is recovered through those partials, so dropouts are
   recovered at both exchanges while t holders answer.

The invariant: within a round a client never both releases a share of b_v and helps reveal a
round seed involving v (its own, or through a partial). It answers each exchange at most once
per (session, round), remembered by an :class:`~protocols.secagg.enrolled_store.AnswerStore`
(file-backed to outlive the process). Any violation raises :class:`ProtocolError` and
aborts for good.

.. warning:: the client holds its round's secrets (b_u, z_u shares, round seeds) until it
   answers the unmask request, then drops them; its long-term secret lives in the Identity.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import ClassVar

import numpy as np

from protocols.base import SERVER, Message, check_header, header
from protocols.policy import ClientPolicy
from protocols.secagg._enrolled_keys import (
    PLAINTEXT_SIZE,
    escrow_ad,
    escrow_key,
    escrow_point,
    round_neighbourhoods,
    round_seed,
    self_mask_key,
    share_ad,
    share_key,
    survivors_message,
)
from protocols.secagg._enrolled_state import ClientState, Kind, tables
from protocols.secagg._keys import mask_sign, seed_commitment
from protocols.secagg._roles import (
    IdSet,
    MaskingClient,
    check_enough_survivors,
    check_signed_split,
    check_survivor_list,
    check_unmask_split,
)
from protocols.secagg.config import SecAggConfig
from protocols.secagg.enrolled_keys import EnrolledRegistry, Identity
from protocols.secagg.enrolled_messages import (
    ConsistencyRequest,
    ConsistencyResponse,
    Escrow,
    Partial,
    RoundSeed,
    SealedShare,
    Share,
    Shares,
    UnmaskRequest,
    UnmaskResponse,
    Upload,
    UploadRequest,
)
from protocols.secagg.enrolled_store import AnswerStore
from secagg import aead, shamir, threshold
from secagg.errors import ConfigError, ProtocolError, UsageError
from secagg.prg import add_masks
from secagg.rng import Csprng

__all__ = ["EnrolledClient", "enrolled_registry"]


def enrolled_registry(config: SecAggConfig) -> EnrolledRegistry:
    """The config's registry, which the enrolled mode needs to hold X25519 keys."""
    reg = config.registry
    if not isinstance(reg, EnrolledRegistry):
        raise UsageError("the enrolled mode needs config.registry to be an EnrolledRegistry "
                         "(write one with 'secagg enroll', load it with "
                         "EnrolledRegistry.load)")
    return reg


class EnrolledClient(MaskingClient):
    """One enrolled client's role in one round.

    Args:
        identity: the client's long-term keys (``secagg enroll`` writes them); must match
            its entry in ``config.registry``.
        store: where answered rounds are remembered (default: ``identity.answers``).
        policy: the weakest config this client accepts (default: :class:`ClientPolicy()`),
            as for the per-round client; built from the client's own settings.
        protocol: the protocol name the policy checks (default from the graph).

    Raises:
        PolicyError: the config is weaker than ``policy`` (names the setting).
        UsageError / ConfigError: a client id outside the cohort, a missing or wrong identity.
    """

    def __init__(self, config: SecAggConfig, client_id: int, rng: Csprng,
                 identity: Identity | None = None, store: AnswerStore | None = None, *,
                 policy: ClientPolicy | None = None, protocol: str | None = None) -> None:
        self.protocol = protocol or ("secagg" if config.complete else "secagg+")
        self.policy = policy if policy is not None else ClientPolicy()
        self.policy.check(self.protocol, config)
        if not 0 <= client_id < config.n_clients:
            raise UsageError(f"client_id must be in 0..{config.n_clients - 1}, got {client_id}")
        if identity is None:
            raise UsageError("an enrolled client needs its identity (Identity.load of the key "
                             "file 'secagg enroll' wrote)")
        if identity.client_id != client_id:
            raise ConfigError(f"identity is client {identity.client_id}'s, not {client_id}'s")
        registry = enrolled_registry(config)
        identity.check_against(registry)
        self.config, self.client_id, self._rng = config, client_id, rng
        self._identity, self._registry = identity, registry
        self._store = store if store is not None else identity.answers
        self._table = tables(config.active)[0]
        self.state = ClientState.IDLE
        self.encoded: np.ndarray | None = None
        self._graph: Mapping[int, frozenset[int]] = {}  # its own and its neighbours' lists
        self._cohort = IdSet()  # the round's cohort, as a bitmap
        self._own: tuple[bytes, int] | None = None      # own shares of (b_u, z_u)
        self._seeds: dict[int, bytes] = {}               # round seeds with neighbours
        self._share_keys: dict[int, bytes] = {}
        self._signed: frozenset[int] | None = None

    @property
    def identity(self) -> Identity:
        """The identity this client was given (the caller's own object: long-term secrets)."""
        return self._identity

    def _claim(self, kind: str) -> None:
        if not self._store.claim(self.config.session, self.config.round_id, self.client_id,
                                 kind):
            raise ProtocolError(f"client {self.client_id} already answered a {kind} request "
                                f"of round {self.config.round_id} in this session (replay)")

    # -- exchange 1: upload --------------------------------------------------------------
    def _on_upload_request(self, msg: Message) -> list[Message]:
        m = check_header(msg, UploadRequest, self.config, sender=SERVER, recipient=self.client_id)
        cfg, me, t = self.config, self.client_id, self.config.threshold
        cohort = m.cohort
        if list(cohort) != sorted(set(cohort)):
            raise ProtocolError("the cohort must be sorted and without repeats")
        if any(not 0 <= v < cfg.n_clients for v in cohort):
            raise ProtocolError(f"the cohort names clients outside 0..{cfg.n_clients - 1}")
        if me not in cohort:
            raise ProtocolError("the cohort does not include this client")
        missing = [v for v in cohort if v not in self._registry.kex_keys]
        if missing:
            raise ProtocolError(f"the cohort names clients {missing[:5]} who are not enrolled")
        if len(cohort) < max(t, cfg.min_clients, 2):
            raise ProtocolError(f"a cohort of {len(cohort)} is below t={t}, "
                                f"min_clients={cfg.min_clients} or 2")
        if self.encoded is None:
            raise UsageError("set_input() must be called before the upload is requested")
        graph = round_neighbourhoods(cfg, cohort, me)
        nbrs = graph[me]
        if len(nbrs) + 1 < t:
            raise ProtocolError(f"only {len(nbrs)} neighbours: t={t} needs {t - 1}")
        self._claim("upload")
        b, z = self._rng.bytes(32), threshold.random_owner_scalar(self._rng)
        holders = sorted(nbrs | {me})
        xs = [h + 1 for h in holders]
        b_sh = shamir.split_bytes(b, xs, t, self._rng)
        z_sh = threshold.split(z % threshold.L, xs, t, self._rng)
        # K = u(z * H(me, h)) for each neighbour h: the key of this client's escrow with h
        keys = dict(zip(sorted(nbrs), threshold.owner_keys(
            z, [escrow_point(cfg, me, h) for h in sorted(nbrs)])))
        sealed, escrow = [], []
        for h, bs, zs in zip(holders, b_sh, z_sh):
            if h == me:
                self._own = (bs, zs)
                continue
            dh = self._identity.agree(self._registry.kex_key(h))
            seed = round_seed(cfg, dh, me, h)
            key = share_key(cfg, dh, me, h)
            self._seeds[h], self._share_keys[h] = seed, key
            pt = bs + threshold.encode_scalar(zs)
            sealed.append(SealedShare(h, aead.seal(key, pt, share_ad(cfg, me, h), self._rng)))
            escrow.append(Escrow(h, aead.seal(escrow_key(cfg, keys[h], me, h), seed,
                                              escrow_ad(cfg, me, h), self._rng)))
        terms = [(self_mask_key(cfg, me, b), 1)]
        terms += [(self._seeds[v], mask_sign(me, v)) for v in sorted(nbrs)]
        y = add_masks(self.encoded, terms)  # in place: the plain encoding is not kept
        self.encoded = None
        self._graph, self._cohort = graph, IdSet.of(cohort)
        return [Upload(**header(cfg, me, SERVER), masked=y, shares=tuple(sealed),
                       escrow=tuple(escrow), commitment=seed_commitment(cfg, me, b))]

    # -- active variant: sign the survivor list once ---------------------------------------
    def _on_consistency_request(self, msg: Message) -> list[Message]:
        m = check_header(msg, ConsistencyRequest, self.config, sender=SERVER,
                         recipient=self.client_id)
        cfg, me = self.config, self.client_id
        surv = m.survivors
        check_survivor_list(cfg, me, surv, self._cohort, self._graph[me])
        self._signed = frozenset(surv)
        signature = self._identity.sign(survivors_message(cfg, surv))
        return [ConsistencyResponse(**header(cfg, me, SERVER), signature=signature)]

    # -- exchange 2: unmask ----------------------------------------------------------------
    def _on_unmask_request(self, msg: Message) -> list[Message]:
        m = check_header(msg, UnmaskRequest, self.config, sender=SERVER, recipient=self.client_id)
        cfg, me = self.config, self.client_id
        own = self._own
        if own is None:
            raise UsageError("no shares: the upload request was not handled")
        nbrs = self._graph[me]
        surv, drop = check_unmask_split(me, m.survivors, m.dropped, nbrs)
        if cfg.active:
            check_signed_split(cfg, me, nbrs, surv, drop, self._signed, m.signatures,
                               self._registry.verify_key, partial(survivors_message, cfg))
        check_enough_survivors(cfg, surv)
        # The survivors' shares for this client: exactly one from each, authentic.
        senders = [sh.peer for sh in m.shares]
        if len(set(senders)) != len(senders) or set(senders) != surv - {me}:
            raise ProtocolError("unmask request must carry one sealed share from each "
                                "surviving neighbour")
        held: dict[int, tuple[bytes, int]] = {me: own}
        for sh in m.shares:
            v = sh.peer
            pt = aead.open_(self._share_keys[v], sh.ciphertext, share_ad(cfg, v, me))
            if len(pt) != PLAINTEXT_SIZE:
                raise ProtocolError(f"shares from client {v} are {len(pt)} bytes, "
                                    f"not {PLAINTEXT_SIZE}")
            held[v] = (pt[:shamir.SHARE_SIZE], threshold.decode_scalar(pt[shamir.SHARE_SIZE:]))
        # Escrows to help open: a surviving neighbour's seed with a client it neighbours,
        # which must be dropped as far as this client can tell (never one it unmasks).
        pairs = [(e.owner, e.dropped) for e in m.escrow]
        if len(set(pairs)) != len(pairs):
            raise ProtocolError("unmask request asks twice for one escrow")
        for e in m.escrow:
            if e.owner not in surv or e.owner == me:
                raise ProtocolError(f"escrow of client {e.owner}, who is not a surviving "
                                    "neighbour of this client")
            if e.dropped not in self._graph.get(e.owner, frozenset()):
                raise ProtocolError(f"client {e.dropped} is not a neighbour of {e.owner}")
            if e.dropped in surv or (cfg.active and e.dropped in (self._signed or ())):
                raise ProtocolError(f"asked to open a round seed of {e.dropped}, a survivor "
                                    "whose self-mask share this client releases")
        # The point is this client's own H(owner, dropped), never one the server names, so
        # the partial helps open that one escrow and no other.
        partials = tuple(Partial(e.owner, e.dropped,
                                 threshold.partial(held[e.owner][1],
                                                   escrow_point(cfg, e.owner, e.dropped)))
                         for e in m.escrow)
        self._claim("unmask")
        seed_shares = Shares.of(Share(v, held[v][0]) for v in sorted(surv))
        round_seeds = tuple(RoundSeed(v, self._seeds[v]) for v in sorted(drop))
        self._forget()
        return [UnmaskResponse(**header(cfg, me, SERVER), seed_shares=seed_shares,
                               round_seeds=round_seeds, partials=partials)]

    _ABORTED = ClientState.ABORTED
    _INPUT_STATES = (ClientState.IDLE,)
    _HANDLERS: ClassVar[dict[object, Callable[[EnrolledClient, Message], list[Message]]]] = {
        Kind.UPLOAD_REQUEST: _on_upload_request,
        Kind.CONSISTENCY_REQUEST: _on_consistency_request,
        Kind.UNMASK_REQUEST: _on_unmask_request,
    }

    def _forget(self) -> None:
        self._own = None
        self._seeds = {}
        self._share_keys = {}
