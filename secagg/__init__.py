"""secagg: the hazmat layer of secure aggregation. Bytes, ints and numpy arrays in and out.

Modules: :mod:`secagg.errors` (one error root), :mod:`secagg.rng` (ChaCha20 CSPRNG),
:mod:`secagg.encoding` (clipping, fixed point, headroom), :mod:`secagg.prg` (mask PRG),
:mod:`secagg.kex` (X25519 + HKDF), :mod:`secagg.aead` (XChaCha20-Poly1305, AES-256-GCM-SIV),
:mod:`secagg.shamir` (secret sharing), :mod:`secagg.threshold` (threshold ElGamal
decryption of escrowed seeds), :mod:`secagg.wire` (the codec), :mod:`secagg.dp`
(differential privacy: samplers, mechanisms, accounting).

.. warning:: this layer handles secret material directly; prefer the typed roles in
   :mod:`protocols` unless you are building a protocol.
"""

from __future__ import annotations

from secagg.encoding import EncodingConfig, Headroom, clip_l2, headroom
from secagg.errors import (
    AlreadyFinalized,
    BudgetExceededError,
    ConfigError,
    DecodeError,
    DropoutError,
    LateMessageError,
    ProtocolError,
    SecAggError,
    UsageError,
)
from secagg.rng import Csprng

__version__ = "0.1.0"

__all__ = [
    "AlreadyFinalized", "BudgetExceededError", "ConfigError", "Csprng", "DecodeError",
    "DropoutError", "EncodingConfig", "Headroom", "LateMessageError", "ProtocolError",
    "SecAggError", "UsageError", "clip_l2", "headroom",
]
