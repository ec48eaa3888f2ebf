"""Authenticated encryption of shares, in two framings.

- :func:`seal` / :func:`open_`: XChaCha20-Poly1305 (PyNaCl bindings) with a 24-byte random
  nonce from the caller's CSPRNG, sent in front of the ciphertext. For keys that seal many
  messages (long-term or escrow keys).
- :func:`seal_deterministic` / :func:`open_deterministic`: AES-256-GCM-SIV (RFC 8452, from
  ``cryptography``) under a fixed all-zero nonce, so no nonce travels (24 bytes less per
  ciphertext). For keys the caller derives for one round and one pair. GCM-SIV is
  nonce-misuse resistant: its synthetic IV is a PRF of key, associated data and plaintext,
  so sealing twice under one key and nonce reveals only whether the two (associated data,
  plaintext) pairs were equal (deterministic authenticated encryption, Rogaway-Shrimpton
  2006; RFC 8452 sec. 9). Both directions of a pair, and a resent message built from fresh
  randomness, are therefore safe under one key.

In both, the associated data binds sender, receiver, round and protocol version, so a
ciphertext cannot be replayed to another party or into another round.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCMSIV
from nacl.bindings import (
    crypto_aead_xchacha20poly1305_ietf_ABYTES,
    crypto_aead_xchacha20poly1305_ietf_decrypt,
    crypto_aead_xchacha20poly1305_ietf_encrypt,
    crypto_aead_xchacha20poly1305_ietf_KEYBYTES,
    crypto_aead_xchacha20poly1305_ietf_NPUBBYTES,
)
from nacl.exceptions import CryptoError as NaclCryptoError

from secagg.errors import ConfigError, ProtocolError
from secagg.kex import label
from secagg.rng import Csprng

__all__ = ["KEY_SIZE", "NONCE_SIZE", "TAG_SIZE", "associated_data", "open_", "open_deterministic",
           "seal", "seal_deterministic"]

KEY_SIZE: int = crypto_aead_xchacha20poly1305_ietf_KEYBYTES
NONCE_SIZE: int = crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
TAG_SIZE: int = crypto_aead_xchacha20poly1305_ietf_ABYTES
_SIV_NONCE = bytes(12)  # fixed: the deterministic framing sends no nonce (module docstring).
# Both framings use 256-bit keys and 16-byte tags (KEY_SIZE and TAG_SIZE hold for both).


def associated_data(protocol: str, version: int, session: bytes, round_id: int, sender: int,
                    receiver: int) -> bytes:
    """The associated data that binds a ciphertext to its context (length-prefixed fields)."""
    return label(b"secagg-aead", protocol.encode(), str(version).encode(), session,
                 str(round_id).encode(), str(sender).encode(), str(receiver).encode())


def seal(key: bytes, plaintext: bytes, ad: bytes, rng: Csprng) -> bytes:
    """Encrypt and authenticate; returns ``nonce || ciphertext || tag``."""
    if len(key) != KEY_SIZE:
        raise ConfigError(f"AEAD key must be {KEY_SIZE} bytes, got {len(key)}")
    nonce = rng.bytes(NONCE_SIZE)
    ct: bytes = crypto_aead_xchacha20poly1305_ietf_encrypt(plaintext, ad, nonce, key)
    return nonce + ct


def open_(key: bytes, sealed: bytes, ad: bytes) -> bytes:
    """Check and decrypt ``nonce || ciphertext || tag``.

    Raises:
        ProtocolError: too short, forged, or bound to other associated data.
    """
    if len(key) != KEY_SIZE:
        raise ConfigError(f"AEAD key must be {KEY_SIZE} bytes, got {len(key)}")
    if len(sealed) < NONCE_SIZE + TAG_SIZE:
        raise ProtocolError(
            f"sealed message is {len(sealed)} bytes, shorter than nonce+tag ({NONCE_SIZE + TAG_SIZE})"
        )
    try:
        pt: bytes = crypto_aead_xchacha20poly1305_ietf_decrypt(
            sealed[NONCE_SIZE:], ad, sealed[:NONCE_SIZE], key
        )
    except NaclCryptoError as exc:
        raise ProtocolError("share ciphertext failed authentication (forged or misrouted)") from exc
    return pt


def seal_deterministic(key: bytes, plaintext: bytes, ad: bytes) -> bytes:
    """Encrypt and authenticate with AES-256-GCM-SIV under the fixed nonce; returns
    ``ciphertext || tag`` (len(plaintext) + TAG_SIZE bytes). For a key derived for one round
    and pair only (module docstring)."""
    if len(key) != KEY_SIZE:
        raise ConfigError(f"AEAD key must be {KEY_SIZE} bytes, got {len(key)}")
    return AESGCMSIV(key).encrypt(_SIV_NONCE, plaintext, ad)


def open_deterministic(key: bytes, sealed: bytes, ad: bytes) -> bytes:
    """Check and decrypt what :func:`seal_deterministic` sealed.

    Raises:
        ProtocolError: too short, forged, or bound to other associated data.
    """
    if len(key) != KEY_SIZE:
        raise ConfigError(f"AEAD key must be {KEY_SIZE} bytes, got {len(key)}")
    if len(sealed) < TAG_SIZE:
        raise ProtocolError(f"sealed message is {len(sealed)} bytes, shorter than the "
                            f"{TAG_SIZE}-byte tag")
    try:
        return AESGCMSIV(key).decrypt(_SIV_NONCE, sealed, ad)
    except InvalidTag as exc:
        raise ProtocolError("share ciphertext failed authentication (forged or misrouted)") from exc
