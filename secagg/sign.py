"""Ed25519 signatures (PyNaCl), for the active-adversary variant of SecAgg.

Long-term signing keys identify clients across rounds; a registry of their verify keys is
the root of trust against a server that would substitute keys or equivocate.

.. warning:: a signing key is a long-term secret: store it like one.
"""

from __future__ import annotations

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from secagg.errors import ConfigError, ProtocolError
from secagg.rng import Csprng

__all__ = ["SEED_SIZE", "SIGNATURE_SIZE", "VERIFY_KEY_SIZE", "generate", "sign", "verify",
           "verify_key"]

SEED_SIZE = 32
VERIFY_KEY_SIZE = 32
SIGNATURE_SIZE = 64


def generate(rng: Csprng) -> bytes:
    """A fresh 32-byte Ed25519 signing seed from ``rng``."""
    return rng.bytes(SEED_SIZE)


def _key(seed: bytes) -> SigningKey:
    if len(seed) != SEED_SIZE:
        raise ConfigError(f"Ed25519 signing seed must be {SEED_SIZE} bytes, got {len(seed)}")
    return SigningKey(bytes(seed))


def verify_key(seed: bytes) -> bytes:
    """The 32-byte verify key of a signing seed."""
    return bytes(_key(seed).verify_key)


def sign(seed: bytes, message: bytes) -> bytes:
    """The 64-byte signature of ``message``."""
    return bytes(_key(seed).sign(message).signature)


def verify(vk: bytes, message: bytes, signature: bytes) -> None:
    """Check a signature.

    Raises:
        ProtocolError: a malformed key or signature, or one that does not verify.
    """
    if len(vk) != VERIFY_KEY_SIZE or len(signature) != SIGNATURE_SIZE:
        raise ProtocolError(f"verify key must be {VERIFY_KEY_SIZE} bytes and signature "
                            f"{SIGNATURE_SIZE}; got {len(vk)} and {len(signature)}")
    try:
        VerifyKey(bytes(vk)).verify(message, signature)
    except (BadSignatureError, ValueError) as exc:
        raise ProtocolError("signature does not verify") from exc
