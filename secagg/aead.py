"""Authenticated encryption of shares: XChaCha20-Poly1305 (PyNaCl bindings).

The associated data binds sender, receiver, round and protocol version, so a ciphertext
cannot be replayed to another party or into another round. Nonces are 24 random bytes from
the caller's CSPRNG (XChaCha's nonce is long enough for random nonces).
"""

from __future__ import annotations

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

__all__ = ["KEY_SIZE", "NONCE_SIZE", "TAG_SIZE", "associated_data", "open_", "seal"]

KEY_SIZE: int = crypto_aead_xchacha20poly1305_ietf_KEYBYTES
NONCE_SIZE: int = crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
TAG_SIZE: int = crypto_aead_xchacha20poly1305_ietf_ABYTES


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
