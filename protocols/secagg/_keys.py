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

import array
import hashlib
import sys
from collections.abc import Sequence

from protocols.base import PROTOCOL_VERSION
from protocols.secagg.config import SecAggConfig
from secagg import aead, shamir
from secagg.errors import ProtocolError
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


def transcript(config: SecAggConfig, clients: Sequence[int], digests: bytes) -> bytes:
    """The hash of the config and of every advertisement the server included: the roster's
    clients (in its order) and their digests, ``DIGEST_SIZE`` bytes each, back to back.

    SHA-256 over ``label(tag, config fingerprint)``, the count n as u64, the n client ids as
    i64 and the n digests, all little-endian and of fixed size, so no two rosters hash the
    same bytes. Columns, not a label per entry: every client hashes the n entries.

    Raises:
        ProtocolError: digests that are not ``DIGEST_SIZE`` bytes for each client, or an id
            that does not fit 64 bits.
    """
    n = len(clients)
    if len(digests) != n * DIGEST_SIZE:
        raise ProtocolError(f"a transcript needs {DIGEST_SIZE} bytes of digest for each of "
                            f"{n} clients, got {len(digests)}")
    try:
        ids = array.array("q", clients)
    except (OverflowError, TypeError):
        raise ProtocolError("roster client ids must be integers that fit 64 bits") from None
    if sys.byteorder != "little":  # pragma: no cover - big-endian hosts
        ids.byteswap()
    h = hashlib.sha256(label(b"secagg/v1/transcript-columns", config_fingerprint(config)))
    h.update(n.to_bytes(8, "little"))
    h.update(ids)
    h.update(digests)
    return h.digest()


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
