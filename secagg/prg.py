"""The mask PRG: ChaCha20 keystreams expanded straight into a running sum.

A mask is the ChaCha20 keystream (RFC 8439, from ``cryptography``) of a 256-bit key under
the all-zero nonce, read as little-endian unsigned words of the ring (uint32 or uint64).
Every key is derived by HKDF for one purpose, round and pair (see :mod:`secagg.kex`), so a
(key, nonce) pair never repeats.

:func:`add_masks` adds and subtracts many keystreams into one accumulator. It walks the
accumulator in chunks of :data:`CHUNK_BYTES` and, for each chunk, every key in turn, so the
chunk stays in cache and each keystream is produced into one reused buffer: the cost is the
keystream itself plus an in-cache add.

.. warning:: keys are secret; a mask is only as good as its key's freshness.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from secagg.errors import ConfigError

__all__ = ["CHUNK_BYTES", "KEY_SIZE", "add_masks", "keystream", "RING_DTYPES"]

KEY_SIZE = 32
CHUNK_BYTES = 1 << 17  # 128 KiB: measured fastest here (keystream + add ~1.1x keystream alone)
_NONCE = bytes(16)  # 4-byte block counter 0 + 12-byte nonce 0; keys are single-use
RING_DTYPES = (np.dtype(np.uint32), np.dtype(np.uint64))


def _encryptor(key: bytes):  # type: ignore[no-untyped-def]
    if len(key) != KEY_SIZE:
        raise ConfigError(f"mask key must be {KEY_SIZE} bytes, got {len(key)}")
    return Cipher(algorithms.ChaCha20(key, _NONCE), mode=None).encryptor()


def keystream(key: bytes, count: int, dtype: np.dtype | type = np.uint32) -> np.ndarray:
    """The first ``count`` ring words of ``key``'s mask (for tests and GPU cross-checks)."""
    dt = np.dtype(dtype)
    if dt not in RING_DTYPES:
        raise ConfigError(f"ring dtype must be uint32 or uint64, got {dt}")
    raw = _encryptor(key).update(bytes(count * dt.itemsize))
    return np.frombuffer(raw, dtype=dt.newbyteorder("<")).astype(dt)


def add_masks(acc: np.ndarray, terms: Sequence[tuple[bytes, int]]) -> np.ndarray:
    """Add ``sign * keystream(key)`` for each ``(key, sign)`` into ``acc``, in place, mod 2^b.

    Args:
        acc: a C-contiguous 1-D uint32 or uint64 array (the running sum).
        terms: ``(key, sign)`` pairs; ``key`` is 32 bytes and ``sign`` is +1 or -1.

    Returns:
        ``acc``, for chaining.

    Raises:
        ConfigError: wrong dtype, layout, key size or sign.
    """
    if acc.dtype not in RING_DTYPES or acc.ndim != 1 or not acc.flags.c_contiguous:
        raise ConfigError(
            f"accumulator must be a contiguous 1-D uint32/uint64 array, got {acc.dtype} "
            f"with shape {acc.shape}"
        )
    if acc.dtype.byteorder == ">":
        raise ConfigError("accumulator must be little-endian or native")
    for _, sign in terms:
        if sign not in (1, -1):
            raise ConfigError(f"mask sign must be +1 or -1, got {sign}")
    encs = [(_encryptor(key), sign) for key, sign in terms]  # checks every key's size
    if not encs or acc.size == 0:
        return acc
    item = acc.dtype.itemsize
    words = CHUNK_BYTES // item
    zeros = np.zeros(CHUNK_BYTES, np.uint8)
    buf = np.empty(CHUNK_BYTES, np.uint8)
    ring_buf = buf.view(acc.dtype)
    for start in range(0, acc.size, words):
        part = acc[start : start + words]
        m = part.size
        zin = zeros[: m * item]
        bout = buf[: m * item]
        rb = ring_buf[:m]
        for enc, sign in encs:
            enc.update_into(zin, bout)
            if sign > 0:
                np.add(part, rb, out=part)
            else:
                np.subtract(part, rb, out=part)
    return acc
