"""The SecAgg / SecAgg+ client (Bonawitz et al. 2017, fig. 4, semi-honest rounds 0-4).

Theory of operation: before anything else the client checks the round config against its
own :class:`~protocols.policy.ClientPolicy` (a weaker config raises PolicyError). It makes
two fresh X25519 key pairs (c for encrypting shares, s for agreeing pairwise mask keys), a
self-mask seed b and a fresh nonce, and advertises the public keys, a SHA-256 commitment to
b, and the nonce (signed, in the active variant). The key broadcast carries the roster of
every advertisement the server included; the client checks its own entry, (active) every
entry's signature, recomputes the transcript hash and, from it, the graph, and refuses a
broadcast whose neighbours are not exactly its neighbours in that graph. It Shamir-shares b
and s^SK to its neighbours and itself, sealed pairwise (AES-256-GCM-SIV under this round's
pair key, :func:`secagg.aead.seal_deterministic`). It then
uploads

    y = encode(x) + PRG(b) + sum_{v in masked_with, v > u} PRG(s_uv) - sum_{v < u} PRG(s_uv)

mod 2^b, where masked_with are the neighbours whose shares the server forwarded. When asked
to unmask it returns shares of b_v for the neighbours the server says survived, and of
s_v^SK for those it says dropped, after checking the request:

- no neighbour is listed both as survivor and as dropped (the invariant that protects
  every input: never both kinds of share for one neighbour in a round);
- the lists are exactly the neighbours it masked with, and include itself;
- at least t survive (and, for the complete graph, where the list is global, at least the
  release floor ``max(2, min_clients)``; the active variant checks the floor on the survivor
  list it signs).

Any violation raises :class:`ProtocolError` and the client aborts for good. It answers at
most one key request, one consistency request and one unmask request per (session, round),
remembered in the :class:`~protocols.policy.AnsweredRequests` store its driver gives it (so
across processes, with a persistent store); the consistency signature covers the
transcript hash, so a signature of one run never verifies in another.

.. warning:: the client holds secret keys and shares until it answers the unmask request,
   then drops them.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left
from collections.abc import Callable
from functools import partial
from typing import ClassVar

import numpy as np

from protocols.base import SERVER, Message, check_header, header
from protocols.policy import AnsweredRequests, ClientPolicy, MemoryAnsweredRequests
from protocols.secagg._keys import (
    COMMITMENT_SIZE,
    DIGEST_SIZE,
    NONCE_SIZE,
    PLAINTEXT_SIZE,
    SEALED_SIZE,
    advert_digest,
    advert_message,
    graph_seed,
    mask_sign,
    pair_mask_key,
    seed_commitment,
    self_mask_key,
    share_ad,
    share_key,
    survivors_message,
    transcript,
)
from protocols.secagg._roles import (
    IdSet,
    MaskingClient,
    check_enough_survivors,
    check_signed_split,
    check_survivor_list,
    check_unmask_split,
)
from protocols.secagg._state import ClientState, Kind, tables
from protocols.secagg.config import SecAggConfig
from protocols.secagg.graph import derived_neighbours
from protocols.secagg.messages import (
    AdvertiseKeys,
    ConsistencyRequest,
    ConsistencyResponse,
    KeyBroadcast,
    KeyRequest,
    MaskedInput,
    Roster,
    SealedShares,
    Share,
    ShareForward,
    ShareKeys,
    Shares,
    UnmaskRequest,
    UnmaskResponse,
)
from secagg import aead, shamir, sign
from secagg.errors import ConfigError, ProtocolError, UsageError
from secagg.kex import PUBLIC_KEY_SIZE, KeyPair, label
from secagg.prg import add_masks
from secagg.rng import Csprng

__all__ = ["SecAggClient"]


def _signed_by(verify_key: bytes, message: bytes, signature: bytes) -> bool:
    """Whether ``signature`` verifies. Not cached: a deployed client checks all n roster
    signatures, so a simulated one does too (a cache shared by the clients of one process
    made every client but the first look n verifications cheaper than it is)."""
    try:
        sign.verify(verify_key, message, signature)
    except ProtocolError:
        return False
    return True


class SecAggClient(MaskingClient):
    """One client's role in one SecAgg / SecAgg+ round.

    Args:
        signing_key: the client's long-term Ed25519 seed; required by the active variant,
            and must match the client's entry in ``config.registry``.
        policy: the weakest config this client accepts (default: :class:`ClientPolicy()`,
            which adds nothing to the config's own validation). Build it from the client's
            own settings, never from what the server sends.
        answered: the client's memory of answered requests (default: in memory, for the
            life of this object; pass a persistent one, e.g.
            :class:`fl.flower.replay.FileAnsweredRequests`, where a core is rebuilt per message).
        protocol: the protocol name the policy checks (default: ``"secagg"`` for the
            complete graph, ``"secagg+"`` otherwise; the registered specs pass theirs).

    Raises:
        PolicyError: the config is weaker than ``policy`` (names the setting).
        UsageError / ConfigError: a client id outside the cohort, a missing or wrong key.
    """

    def __init__(self, config: SecAggConfig, client_id: int, rng: Csprng,
                 signing_key: bytes | None = None, *, policy: ClientPolicy | None = None,
                 answered: AnsweredRequests | None = None, protocol: str | None = None) -> None:
        self.protocol = protocol or ("secagg" if config.complete else "secagg+")
        self.policy = policy if policy is not None else ClientPolicy()
        self.policy.check(self.protocol, config)
        self._answered: AnsweredRequests = (answered if answered is not None
                                            else MemoryAnsweredRequests())
        if not 0 <= client_id < config.n_clients:
            raise UsageError(f"client_id must be in 0..{config.n_clients - 1}, got {client_id}")
        if config.active:
            if config.registry is None or signing_key is None:
                raise UsageError("the active variant needs config.registry and the client's "
                                 "signing_key (see protocols.secagg.enroll)")
            if config.registry.verify_key(client_id) != sign.verify_key(signing_key):
                raise ConfigError(f"signing_key does not match client {client_id}'s registry entry")
        self._signing_key = signing_key
        self._table = tables(config.active)[0]
        self._signed: frozenset[int] | None = None
        self.config = config
        self.client_id = client_id
        self._rng = rng
        self.state = ClientState.IDLE
        self.encoded: np.ndarray | None = None
        self._c: KeyPair | None = None
        self._s: KeyPair | None = None
        self._seed: bytes | None = None
        self._peers: frozenset[int] = frozenset()  # this round's neighbours
        self._own_shares: tuple[bytes, bytes] | None = None
        self._held: dict[int, tuple[bytes, bytes]] = {}
        self._share_keys: dict[int, bytes] = {}
        self._mask_keys: dict[int, bytes] = {}
        self._masked_with: frozenset[int] = frozenset()
        self._nonce: bytes = b""
        self._digest: bytes = b""
        self._transcript: bytes = b""
        self._roster: IdSet = IdSet()

    # -- handlers: each validates everything before it changes anything -------------------
    def _claim(self, kind: str, answer: bytes) -> None:
        """Refuse to answer ``kind`` twice (differently) in one (session, round)."""
        cfg = self.config
        if not self._answered.claim(cfg.session, cfg.round_id,
                                    f"{self.protocol}/{kind}/client={self.client_id}", answer):
            raise ProtocolError(f"client {self.client_id} already answered a {kind} request of "
                                f"this session and round {cfg.round_id} differently: a replay")

    def _on_key_request(self, msg: Message) -> list[Message]:
        check_header(msg, KeyRequest, self.config, sender=SERVER, recipient=self.client_id)
        cfg, me = self.config, self.client_id
        self._c = KeyPair.generate(self._rng)
        self._s = KeyPair.generate(self._rng)
        self._seed = self._rng.bytes(32)
        self._nonce = self._rng.bytes(NONCE_SIZE)
        commitment = seed_commitment(cfg, me, self._seed)
        self._digest = advert_digest(cfg, me, self._c.public, self._s.public, commitment,
                                     self._nonce)
        self._claim("key", self._digest)
        signature = b""
        if self._signing_key is not None:
            signature = sign.sign(self._signing_key, advert_message(self._digest))
        return [AdvertiseKeys(**header(cfg, me, SERVER), c_pk=self._c.public, s_pk=self._s.public,
                              signature=signature, commitment=commitment, nonce=self._nonce)]

    def _check_roster(self, roster: Roster) -> tuple[frozenset[int], list[int]]:
        """The roster names this client's own advertisement, (active) only signed ones, and
        enough clients; returns this client's neighbours in the graph it fixes, and the
        roster's client ids (sorted)."""
        cfg, me = self.config, self.client_id
        # A roster has n entries and every client reads it: its columns are checked in C
        # (set, sorted, slices), never with a Python object per entry.
        ids = list(roster.clients)
        if ids != sorted(set(ids)):
            raise ProtocolError("key broadcast roster must be sorted by client and without repeats")
        if ids and not (0 <= ids[0] and ids[-1] < cfg.n_clients):  # sorted: the ends suffice
            raise ProtocolError(f"key broadcast roster names a client outside 0..{cfg.n_clients - 1}")
        roster.check(DIGEST_SIZE, sign.SIGNATURE_SIZE if cfg.active else 0)
        at = bisect_left(ids, me)
        if not (at < len(ids) and ids[at] == me and roster.digest(at) == self._digest):
            raise ProtocolError("key broadcast roster does not carry this client's own "
                                "advertisement unchanged")
        need = max(cfg.threshold, cfg.release_floor)
        if len(ids) < need:
            raise ProtocolError(f"the roster has {len(ids)} clients; this round needs at least "
                                f"{need} (threshold t={cfg.threshold}, release floor "
                                f"{cfg.release_floor})")
        if cfg.active:
            registry = cfg.registry
            if registry is None:
                raise UsageError("the active variant needs config.registry")
            for i, u in enumerate(ids):
                if u not in registry.keys:
                    raise ProtocolError(f"roster names client {u}, who is not enrolled")
                if not _signed_by(registry.keys[u], advert_message(roster.digest(i)),
                                  roster.signature(i)):
                    raise ProtocolError(f"client {u}'s roster entry is not signed by "
                                        "its enrolled key")
        self._transcript = transcript(cfg, roster.clients, roster.digests)
        self._roster = IdSet.of(ids)
        return derived_neighbours(ids, cfg.degree, graph_seed(self._transcript), me), ids

    def _on_key_broadcast(self, msg: Message) -> list[Message]:
        m = check_header(msg, KeyBroadcast, self.config, sender=SERVER, recipient=self.client_id)
        if self._c is None or self._s is None or self._seed is None:
            raise UsageError("no keys: the key request was not handled")
        me, cfg = self.client_id, self.config
        ids = [k.client for k in m.keys]
        if len(set(ids)) != len(ids):
            raise ProtocolError("key broadcast lists a client twice")
        mine = [k for k in m.keys if k.client == me]
        if len(mine) != 1 or mine[0].c_pk != self._c.public or mine[0].s_pk != self._s.public:
            raise ProtocolError("key broadcast does not carry this client's own keys unchanged")
        peers = {k.client: k for k in m.keys if k.client != me}
        for v, k in peers.items():
            if not 0 <= v < cfg.n_clients:
                raise ProtocolError(f"key broadcast names client {v}, outside 0..{cfg.n_clients - 1}")
            if len(k.c_pk) != PUBLIC_KEY_SIZE or len(k.s_pk) != PUBLIC_KEY_SIZE:
                raise ProtocolError(f"client {v}'s public keys are not {PUBLIC_KEY_SIZE} bytes")
            if len(k.commitment) != COMMITMENT_SIZE or len(k.nonce) != NONCE_SIZE:
                raise ProtocolError(f"client {v}'s advertisement needs a {COMMITMENT_SIZE}-byte "
                                    f"commitment and a {NONCE_SIZE}-byte nonce")
        drawn, ids = self._check_roster(m.roster)
        if set(peers) != drawn:
            raise ProtocolError(
                f"key broadcast lists neighbours {sorted(peers)}, but the graph drawn from the "
                f"roster gives {sorted(drawn)}: the server may not choose the graph")
        for v, k in peers.items():
            digest = m.roster.digest(bisect_left(ids, v))  # v is in the roster: drawn from it
            if advert_digest(cfg, v, k.c_pk, k.s_pk, k.commitment, k.nonce) != digest:
                raise ProtocolError(f"client {v}'s keys differ from its advertisement in the roster")
        all_keys = [k.c_pk for k in m.keys] + [k.s_pk for k in m.keys]
        if len(set(all_keys)) != len(all_keys):
            raise ProtocolError("key broadcast repeats a public key")
        if len(peers) > cfg.degree:
            raise ProtocolError(f"key broadcast lists {len(peers)} neighbours; degree is {cfg.degree}")
        if len(peers) + 1 < cfg.threshold:
            raise ProtocolError(
                f"only {len(peers)} neighbours: t={cfg.threshold} needs at least {cfg.threshold - 1}"
            )
        holders = sorted([*peers, me])
        xs = [h + 1 for h in holders]
        seed_sh = shamir.split_bytes(self._seed, xs, cfg.threshold, self._rng)
        key_sh = shamir.split_bytes(self._s.secret, xs, cfg.threshold, self._rng)
        recipients: list[int] = []
        sealed: list[bytes] = []
        own = (b"", b"")
        share_keys: dict[int, bytes] = {}
        mask_keys: dict[int, bytes] = {}
        for h, bs, ks in zip(holders, seed_sh, key_sh):
            if h == me:
                own = (bs, ks)
                continue
            key = share_key(cfg, self._c.secret, peers[h].c_pk, me, h)
            share_keys[h] = key
            # Agree the mask key now, so a bad key is refused before anything is sent.
            mask_keys[h] = pair_mask_key(cfg, self._s.secret, peers[h].s_pk, me, h)
            recipients.append(h)
            sealed.append(aead.seal_deterministic(key, bs + ks, share_ad(cfg, me, h)))
        self._peers, self._own_shares = frozenset(peers), own
        self._share_keys, self._mask_keys = share_keys, mask_keys
        shares = SealedShares(tuple(recipients), b"".join(sealed))
        return [ShareKeys(**header(cfg, me, SERVER), shares=shares)]

    def _on_share_forward(self, msg: Message) -> list[Message]:
        m = check_header(msg, ShareForward, self.config, sender=SERVER, recipient=self.client_id)
        if self.encoded is None:
            raise UsageError("set_input() must be called before the masked input is requested")
        seed = self._seed
        if seed is None:
            raise UsageError("no keys: the key request was not handled")
        me, cfg = self.client_id, self.config
        senders, blob = m.shares.peers, m.shares.sealed
        if len(set(senders)) != len(senders):
            raise ProtocolError("share forward carries two ciphertexts from one client")
        unknown = set(senders) - set(self._peers)
        if unknown:
            raise ProtocolError(f"share forward carries shares from non-neighbours {sorted(unknown)}")
        if len(senders) + 1 < cfg.threshold:
            raise ProtocolError(f"only {len(senders)} neighbours shared: t={cfg.threshold} "
                                f"needs at least {cfg.threshold - 1}")
        if len(blob) != len(senders) * SEALED_SIZE:
            raise ProtocolError(f"share forward must carry one {SEALED_SIZE}-byte ciphertext per "
                                f"sender, got {len(blob)} bytes for {len(senders)}")
        held: dict[int, tuple[bytes, bytes]] = {}
        for i, v in enumerate(senders):
            ct = blob[i * SEALED_SIZE:(i + 1) * SEALED_SIZE]
            pt = aead.open_deterministic(self._share_keys[v], ct, share_ad(cfg, v, me))
            if len(pt) != PLAINTEXT_SIZE:
                raise ProtocolError(f"shares from client {v} are {len(pt)} bytes, not {PLAINTEXT_SIZE}")
            held[v] = (pt[:shamir.SHARE_SIZE], pt[shamir.SHARE_SIZE:])
        terms = [(self_mask_key(cfg, me, seed), 1)]
        for v in sorted(held):
            terms.append((self._mask_keys[v], mask_sign(me, v)))
        y = add_masks(self.encoded, terms)  # in place: the plain encoding is not kept
        self.encoded = None
        self._held, self._masked_with = held, frozenset(held)
        return [MaskedInput(**header(cfg, me, SERVER), masked=y)]

    def _on_unmask_request(self, msg: Message) -> list[Message]:
        m = check_header(msg, UnmaskRequest, self.config, sender=SERVER, recipient=self.client_id)
        me = self.client_id
        surv, drop = check_unmask_split(me, m.survivors, m.dropped, self._masked_with)
        if self.config.active:
            check_signed_split(self.config, me, self._masked_with, surv, drop, self._signed,
                               m.signatures, self._verify_key(),
                               partial(survivors_message, self.config, self._transcript))
        check_enough_survivors(self.config, surv)
        own = self._own_shares
        if own is None:
            raise UsageError("no shares: the key broadcast was not handled")
        seed_shares = [Share(v, self._held[v][0]) for v in sorted(surv - {me})]
        seed_shares.append(Share(me, own[0]))
        key_shares = [Share(v, self._held[v][1]) for v in sorted(drop)]
        response = UnmaskResponse(**header(self.config, me, SERVER),
                                  seed_shares=Shares.of(seed_shares), key_shares=Shares.of(key_shares))
        answer = hashlib.sha256(b"secagg/v1/unmask-answer")
        for kind, shares in ((b"seed", seed_shares), (b"key", key_shares)):
            for sh in shares:
                answer.update(label(kind, str(sh.owner).encode(), sh.value))
        self._claim("unmask", answer.digest())
        self._forget()
        return [response]

    def _on_consistency_request(self, msg: Message) -> list[Message]:
        """Active variant: sign the survivor list once, after checking it."""
        m = check_header(msg, ConsistencyRequest, self.config, sender=SERVER,
                         recipient=self.client_id)
        me, cfg = self.client_id, self.config
        surv = m.survivors
        check_survivor_list(cfg, me, surv, self._roster, self._masked_with)
        if self._signing_key is None:
            raise UsageError("the active variant needs the client's signing key")
        message = survivors_message(cfg, self._transcript, surv)
        self._claim("consistency", hashlib.sha256(message).digest())
        self._signed = frozenset(surv)
        signature = sign.sign(self._signing_key, message)
        return [ConsistencyResponse(**header(cfg, me, SERVER), signature=signature)]

    def _verify_key(self) -> Callable[[int], bytes] | None:
        registry = self.config.registry
        return None if registry is None else registry.verify_key

    _ABORTED = ClientState.ABORTED
    _INPUT_STATES = (ClientState.IDLE, ClientState.ADVERTISED, ClientState.SHARED)
    _HANDLERS: ClassVar[dict[object, Callable[[SecAggClient, Message], list[Message]]]] = {
        Kind.KEY_REQUEST: _on_key_request,
        Kind.KEY_BROADCAST: _on_key_broadcast,
        Kind.SHARE_FORWARD: _on_share_forward,
        Kind.CONSISTENCY_REQUEST: _on_consistency_request,
        Kind.UNMASK_REQUEST: _on_unmask_request,
    }

    def _forget(self) -> None:
        self._c = self._s = None
        self._seed = None
        self._own_shares = None
        self._held = {}
        self._share_keys = {}
        self._mask_keys = {}
