"""Key schedule and graph of the enrolled mode: every derived key is labelled with purpose,
session, round and pair, so one pair's seeds differ in every round and every session."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping
from types import MappingProxyType

from protocols.base import PROTOCOL_VERSION
from protocols.secagg.config import SecAggConfig
from protocols.secagg.graph import Ring
from secagg import aead, shamir, threshold
from secagg.errors import ConfigError
from secagg.kex import derive_key, hkdf, label
from secagg.rng import Csprng

__all__ = ["ESCROW_SIZE", "PLAINTEXT_SIZE", "PROTOCOL_NAME", "SEALED_SIZE", "escrow_ad",
           "escrow_key", "escrow_point", "round_degree", "round_graph", "round_neighbourhoods",
           "round_seed", "self_mask_key", "share_ad", "share_key", "survivors_message"]

PROTOCOL_NAME = "secagg-enrolled"
#: a holder's plaintext: its share of the self-mask seed b_u, then of the escrow scalar z_u
PLAINTEXT_SIZE = shamir.SHARE_SIZE + threshold.SCALAR_SIZE
SEALED_SIZE = aead.NONCE_SIZE + PLAINTEXT_SIZE + aead.TAG_SIZE
#: an escrowed round seed: nonce, 32-byte seed, tag
ESCROW_SIZE = aead.NONCE_SIZE + 32 + aead.TAG_SIZE


def round_seed(config: SecAggConfig, dh: bytes, u: int, v: int) -> bytes:
    """The pairwise round seed of u and v (also the PRG key of their mask), from their
    long-term X25519 agreement ``dh``."""
    return derive_key(dh, "enrolled/pair-mask", config.session, config.round_id, u, v)


def share_key(config: SecAggConfig, dh: bytes, u: int, v: int) -> bytes:
    """AEAD key of the shares u and v seal to each other in this round."""
    return derive_key(dh, "enrolled/share-enc", config.session, config.round_id, u, v)


def self_mask_key(config: SecAggConfig, u: int, seed: bytes) -> bytes:
    """PRG key of client u's self mask, from its fresh seed b_u."""
    return derive_key(seed, "enrolled/self-mask", config.session, config.round_id, u, u)


def escrow_point(config: SecAggConfig, owner: int, peer: int) -> bytes:
    """``H(label)`` of the escrow of owner's round seed with peer: a public function of
    session, round, owner and peer, which the owner and every holder compute themselves
    (the server never supplies it, so it cannot aim a holder's partial at another escrow)."""
    # Not cached: in a simulation the owner and its holders share a process, and a cache
    # would hide from the measurement what each of them computes in a deployment.
    return threshold.hash_point(label(b"secagg/v1/enrolled-escrow-point", config.session,
                                      str(config.round_id).encode(), str(owner).encode(),
                                      str(peer).encode()))


def escrow_key(config: SecAggConfig, k: bytes, owner: int, peer: int) -> bytes:
    """AEAD key of the escrow of owner's round seed with peer, from its threshold key
    ``k = z_owner * escrow_point(owner, peer)``."""
    return derive_key(k, "enrolled/escrow", config.session, config.round_id, owner, peer,
                      ordered=True)


def share_ad(config: SecAggConfig, sender: int, receiver: int) -> bytes:
    """Associated data of a sealed share: protocol, version, session, round, sender, receiver."""
    return aead.associated_data(PROTOCOL_NAME, PROTOCOL_VERSION, config.session,
                                config.round_id, sender, receiver)


def escrow_ad(config: SecAggConfig, owner: int, peer: int) -> bytes:
    """Associated data of an escrowed seed: protocol, version, session, round, owner, peer."""
    return label(b"secagg/v1/enrolled-escrow",
                 aead.associated_data(PROTOCOL_NAME, PROTOCOL_VERSION, config.session,
                                      config.round_id, owner, peer))


def survivors_message(config: SecAggConfig, survivors: tuple[int, ...]) -> bytes:
    """What a client signs in the consistency exchange (active variant)."""
    return label(b"secagg/v1/enrolled-survivors", config.session,
                 str(config.round_id).encode(), ",".join(map(str, survivors)).encode())


def round_degree(config: SecAggConfig, cohort_size: int) -> int:
    """Neighbours per client in a round of ``cohort_size``: the config's degree, or the
    complete graph when the config is complete or the cohort is too small for it."""
    m = cohort_size
    if config.complete or config.degree >= m - 1:
        return m - 1
    return config.degree


def round_graph(config: SecAggConfig, cohort: tuple[int, ...]) -> Mapping[int, frozenset[int]]:
    """Each cohort member's neighbours in this round (the server's view; a client reads
    only what it needs with :func:`round_neighbourhoods`).

    The graph is a function of public values only: the session, the round and the cohort
    (a Harary graph under a relabelling drawn from HKDF of them), so every client computes
    it and the server cannot pick it except by picking the cohort.
    """
    ring = _ring(config, cohort)
    return MappingProxyType({cohort[i]: frozenset(cohort[j] for j in ring.of(i))
                             for i in range(len(cohort))})


def round_neighbourhoods(config: SecAggConfig, cohort: tuple[int, ...],
                         me: int) -> dict[int, frozenset[int]]:
    """``round_graph(config, cohort)`` restricted to ``me`` and its neighbours: what a client
    checks (its own neighbours, and theirs for the escrows it helps open), in O(cohort + k^2)
    rather than the whole graph's O(cohort * k). ``me`` must be in the sorted ``cohort``."""
    ring = _ring(config, cohort)
    at = bisect_left(cohort, me)
    if at == len(cohort) or cohort[at] != me:
        raise ConfigError(f"client {me} is not in the cohort")
    local = ring.of(at)
    return {cohort[i]: frozenset(cohort[j] for j in ring.of(i)) for i in (at, *local)}


def _ring(config: SecAggConfig, cohort: tuple[int, ...]) -> Ring:
    k = round_degree(config, len(cohort))
    info = label(b"secagg/v1/enrolled-graph", config.session, str(config.round_id).encode(),
                 ",".join(map(str, cohort)).encode(), str(k).encode())
    return Ring(len(cohort), k, Csprng(hkdf(b"\x00" * 32, info)))
