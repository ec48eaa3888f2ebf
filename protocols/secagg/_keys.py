"""Key schedule of SecAgg: every derived key is labelled with purpose, session, round, pair.

Commitments and the transcript (SHA-256 over :func:`secagg.kex.label` encodings, so no two
different field lists hash alike):

- ``seed_commitment``: client u's commitment to its self-mask seed b_u, in its advertisement;
  the server checks every rebuilt seed against it (the mask key s_u^SK is committed by its
  public key s_u^PK).
- ``advert_digest``: everything one advertisement says (keys, commitment, the client's fresh
  nonce); the active variant signs it.
- ``transcript``: the round config and every advertisement the server included (the roster).
  The SecAgg+ graph is drawn from it and the consistency signatures cover it, so a signature
  of one run never verifies in another, and the graph is fixed once the roster is.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from protocols.base import PROTOCOL_VERSION
from protocols.secagg.config import SecAggConfig
from secagg import aead, shamir
from secagg.kex import agree, derive_key, label

__all__ = ["COMMITMENT_SIZE", "DIGEST_SIZE", "NONCE_SIZE", "PLAINTEXT_SIZE", "SEALED_SIZE",
           "advert_digest", "advert_message", "config_fingerprint", "graph_seed", "mask_sign",
           "pair_mask_key", "seed_commitment", "self_mask_key", "share_ad", "share_key",
           "survivors_message", "transcript"]

PROTOCOL_NAME = "secagg"
PLAINTEXT_SIZE = 2 * shamir.SHARE_SIZE  # share of the self-mask seed b_u, then of the mask key s_u^SK
SEALED_SIZE = PLAINTEXT_SIZE + aead.TAG_SIZE  # aead.seal_deterministic: no nonce on the wire
COMMITMENT_SIZE = 32
DIGEST_SIZE = 32
NONCE_SIZE = 16


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def seed_commitment(config: SecAggConfig, u: int, seed: bytes) -> bytes:
    """Client u's commitment to its self-mask seed b_u (hiding: b_u is 32 random bytes)."""
    return _sha256(label(b"secagg/v1/seed-commitment", config.session,
                         str(config.round_id).encode(), str(u).encode(), seed))


def advert_digest(config: SecAggConfig, u: int, c_pk: bytes, s_pk: bytes, commitment: bytes,
                  nonce: bytes) -> bytes:
    """The digest of client u's advertisement for this session and round."""
    return _sha256(label(b"secagg/v1/advertisement", config.session,
                         str(config.round_id).encode(), str(u).encode(), c_pk, s_pk,
                         commitment, nonce))


def config_fingerprint(config: SecAggConfig) -> bytes:
    """What every party of the round must agree on, hashed: a client told other parameters
    than its peers computes another transcript, and its signatures verify nowhere else."""
    enc = config.encoding
    fields = (config.n_clients, config.dim, config.degree, config.threshold,
              config.signature_threshold, int(config.active), config.release_floor, enc.bits,
              enc.frac_bits, enc.max_clients, enc.noise_bound, repr(float(enc.clip)),
              repr(float(enc.max_weight)),
              config.registry.fingerprint() if config.registry is not None else "")
    return _sha256(label(b"secagg/v1/config", config.session, str(config.round_id).encode(),
                         *(str(f).encode() for f in fields)))


def transcript(config: SecAggConfig, roster: Iterable[tuple[int, bytes]]) -> bytes:
    """The hash of the config and of every (client, advertisement digest) the server included,
    in order of client id."""
    h = hashlib.sha256(label(b"secagg/v1/transcript", config_fingerprint(config)))
    # The bytes of label(str(u).encode(), digest) for every entry, written out in one list
    # (a roster has n entries and every client hashes it: a call per entry cost more than
    # the hashing at n in the thousands).
    parts: list[bytes] = []
    prefix = _LENGTH_PREFIX
    for u, digest in roster:
        name = str(u).encode()
        if len(digest) >= len(prefix):
            parts.append(label(name, digest))  # long fields: label's own checks
            continue
        parts += (prefix[len(name)], name, prefix[len(digest)], digest)
    h.update(b"".join(parts))
    return h.digest()


#: the 2-byte length prefixes :func:`secagg.kex.label` writes, for fields under 256 bytes
_LENGTH_PREFIX = tuple(i.to_bytes(2, "big") for i in range(256))


def graph_seed(transcript_hash: bytes) -> bytes:
    """The key of the CSPRNG that relabels the SecAgg+ graph."""
    return _sha256(label(b"secagg/v1/graph", transcript_hash))


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
    """AEAD key for the shares exchanged between u and v, in this round only (both
    directions; :func:`secagg.aead.seal_deterministic` keeps them apart by associated data)."""
    return derive_key(agree(secret, peer_public), "share-enc", config.session, config.round_id, u, v)


def share_ad(config: SecAggConfig, sender: int, receiver: int) -> bytes:
    """Associated data binding a sealed share to protocol, version, session, round and pair."""
    return aead.associated_data(PROTOCOL_NAME, PROTOCOL_VERSION, config.session,
                                config.round_id, sender, receiver)


def advert_message(digest: bytes) -> bytes:
    """What a client signs when it advertises (active variant): its advertisement's digest
    (which names the session, round, client, keys, commitment and nonce)."""
    return label(b"secagg/v1/advertise", digest)


def survivors_message(config: SecAggConfig, transcript_hash: bytes,
                      survivors: tuple[int, ...]) -> bytes:
    """What a client signs in the consistency round: the run's transcript and the sorted
    survivor list."""
    return label(b"secagg/v1/survivors", config.session, str(config.round_id).encode(),
                 transcript_hash, ",".join(map(str, survivors)).encode())
