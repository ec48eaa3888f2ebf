"""X25519 key agreement (PyNaCl) and HKDF-SHA256 key derivation with purpose labels.

Every derived key is bound by its HKDF ``info`` to a purpose, a round, and an ordered pair of
parties, so no two uses ever share a key. Key pairs are fresh for every round.

.. warning:: private keys and agreed secrets are secret material; never log or persist them.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from nacl.bindings import crypto_scalarmult, crypto_scalarmult_base

from secagg.errors import ConfigError, ProtocolError
from secagg.rng import Csprng

__all__ = ["KeyPair", "PUBLIC_KEY_SIZE", "SECRET_KEY_SIZE", "agree", "derive_key", "hkdf",
           "label"]

PUBLIC_KEY_SIZE = 32
SECRET_KEY_SIZE = 32
_LABEL_PREFIX = b"secagg/v1/"


@dataclass(frozen=True, slots=True, repr=False)
class KeyPair:
    """An X25519 key pair. ``repr`` never shows the secret key."""

    secret: bytes
    public: bytes

    @classmethod
    def generate(cls, rng: Csprng) -> KeyPair:
        """A fresh key pair whose secret comes from ``rng``."""
        return cls.from_secret(rng.bytes(SECRET_KEY_SIZE))

    @classmethod
    def from_secret(cls, secret: bytes) -> KeyPair:
        """Rebuild a pair from its 32-byte secret (e.g. one reconstructed from shares)."""
        if len(secret) != SECRET_KEY_SIZE:
            raise ConfigError(f"X25519 secret key must be {SECRET_KEY_SIZE} bytes, got {len(secret)}")
        return cls(bytes(secret), crypto_scalarmult_base(bytes(secret)))

    def __repr__(self) -> str:
        return f"KeyPair(public={self.public.hex()[:16]}...)"


def agree(secret: bytes, peer_public: bytes) -> bytes:
    """The raw X25519 shared secret of ``secret`` and ``peer_public`` (RFC 7748).

    Raises:
        ProtocolError: a public key of the wrong size, or one that yields the all-zero
            secret (a low-order point: a forged key).
    """
    if len(peer_public) != PUBLIC_KEY_SIZE:
        raise ProtocolError(f"X25519 public key must be {PUBLIC_KEY_SIZE} bytes, got {len(peer_public)}")
    if len(secret) != SECRET_KEY_SIZE:
        raise ConfigError(f"X25519 secret key must be {SECRET_KEY_SIZE} bytes, got {len(secret)}")
    try:
        shared: bytes = crypto_scalarmult(secret, peer_public)
    except Exception as exc:  # nacl raises RuntimeError on the all-zero output
        raise ProtocolError("X25519 agreement failed: low-order public key") from exc
    if shared == bytes(32):
        raise ProtocolError("X25519 agreement gave the all-zero secret: low-order public key")
    return shared


def hkdf(ikm: bytes, info: bytes, length: int = 32, salt: bytes | None = None) -> bytes:
    """HKDF-SHA256 (RFC 5869)."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def derive_key(
    shared: bytes, purpose: str, session: bytes, round_id: int, a: int, b: int,
    ordered: bool = False,
) -> bytes:
    """A 32-byte key for one purpose, session, round and pair of parties.

    Args:
        shared: input keying material (an X25519 secret or a seed).
        purpose: what the key is for, e.g. ``"mask"`` or ``"share-enc"``.
        session: the session identifier (binds keys to one deployment/run).
        round_id: the round number.
        a, b: the two parties. Unless ``ordered``, the pair is sorted so both ends agree.
    """
    lo, hi = (a, b) if ordered else (min(a, b), max(a, b))
    info = label(_LABEL_PREFIX + purpose.encode(), session, str(round_id).encode(),
                 str(lo).encode(), str(hi).encode())
    return hkdf(shared, info)


def label(*fields: bytes) -> bytes:
    """An unambiguous encoding of several byte fields (each prefixed by its 2-byte length),
    so that no two different field lists give the same label."""
    out = bytearray()
    for f in fields:
        if len(f) >= 1 << 16:
            raise ConfigError(f"label field of {len(f)} bytes is too long (max 65535)")
        out += len(f).to_bytes(2, "big") + f
    return bytes(out)
