"""Key schedule of SecAgg: every derived key is labelled with purpose, session, round, pair."""

from __future__ import annotations

from protocols.base import PROTOCOL_VERSION
from protocols.secagg.config import SecAggConfig
from secagg import aead
from secagg.kex import agree, derive_key, label

__all__ = ["PLAINTEXT_SIZE", "SEALED_SIZE", "advert_message", "mask_sign", "pair_mask_key",
           "self_mask_key", "share_ad", "share_key", "survivors_message"]

PROTOCOL_NAME = "secagg"
PLAINTEXT_SIZE = 2 * 66  # share of the self-mask seed b_u, then of the mask key s_u^SK
SEALED_SIZE = aead.NONCE_SIZE + PLAINTEXT_SIZE + aead.TAG_SIZE


def self_mask_key(config: SecAggConfig, u: int, seed: bytes) -> bytes:
    """PRG key of client u's self mask, from its seed b_u."""
    return derive_key(seed, "self-mask", config.session, config.round_id, u, u)


def pair_mask_key(config: SecAggConfig, secret: bytes, peer_public: bytes, u: int, v: int) -> bytes:
    """PRG key of the pairwise mask between u and v (both ends derive the same key)."""
    return derive_key(agree(secret, peer_public), "pair-mask", config.session, config.round_id, u, v)


def mask_sign(u: int, v: int) -> int:
    """Client u adds the pairwise mask with v when u < v and subtracts it otherwise."""
    return 1 if u < v else -1


def share_key(config: SecAggConfig, secret: bytes, peer_public: bytes, u: int, v: int) -> bytes:
    """AEAD key for the shares exchanged between u and v."""
    return derive_key(agree(secret, peer_public), "share-enc", config.session, config.round_id, u, v)


def share_ad(config: SecAggConfig, sender: int, receiver: int) -> bytes:
    """Associated data binding a sealed share to protocol, version, session, round and pair."""
    return aead.associated_data(PROTOCOL_NAME, PROTOCOL_VERSION, config.session,
                                config.round_id, sender, receiver)


def advert_message(config: SecAggConfig, u: int, c_pk: bytes, s_pk: bytes) -> bytes:
    """What client u signs when it advertises its round keys (active variant)."""
    return label(b"secagg/v1/advertise", config.session, str(config.round_id).encode(),
                 str(u).encode(), c_pk, s_pk)


def survivors_message(config: SecAggConfig, survivors: tuple[int, ...]) -> bytes:
    """What a client signs in the consistency round: the sorted survivor list."""
    return label(b"secagg/v1/survivors", config.session, str(config.round_id).encode(),
                 ",".join(map(str, survivors)).encode())
