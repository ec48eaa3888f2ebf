"""The hardware floor of a masking client, measured in the same process run as the cells.

A SecAgg client with k neighbours must produce k + 1 ChaCha20 keystreams (its self mask and
one pairwise mask per neighbour) as long as its masked vector, and add each into it. Nothing
it does can be cheaper than that, so a cell's ``x_floor`` is its client time divided by
:func:`client_floor` for the same (k + 1, vector length).

The floor uses the same primitive, API and chunking as :func:`secagg.prg.add_masks`:
``cryptography``'s ChaCha20 encryptor, ``update_into`` on a chunk of zeros into one reused
buffer of :data:`secagg.prg.CHUNK_BYTES`, chunks outside and keys inside (so the chunk of the
accumulator stays in cache), then an in-place ``numpy`` add. It is measured, never assumed.

The server has a floor of the same kind: it must expand one keystream per survivor (the
self masks) and one per (dropped client, surviving neighbour) pair, each as long as the
vector, and add each into its running sum. :class:`ServerStreams` counts, during a round,
how many keystreams the masking server asked :func:`secagg.prg.add_masks` for (and how long
they were), so :func:`client_floor` can time exactly that much keystream afterwards, outside
the round.

Throughputs are in bytes per second of keystream (or of uint32 operands for the add).
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from secagg.prg import CHUNK_BYTES

__all__ = ["FloorTiming", "ServerStreams", "Throughput", "add_throughput", "client_floor",
           "keystream_throughput", "machine_floor"]

_NONCE = bytes(16)


@dataclass(frozen=True)
class FloorTiming:
    """The floor for one client: ``streams`` keystreams of ``nbytes`` each (+ the adds)."""

    streams: int
    nbytes: int
    seconds: float  # keystreams + adds (the floor)
    keystream_seconds: float  # keystreams alone
    repeats: int

    def to_json(self) -> dict[str, Any]:
        return {"streams": self.streams, "nbytes": self.nbytes, "seconds": self.seconds,
                "keystream_seconds": self.keystream_seconds, "repeats": self.repeats}


@dataclass(frozen=True)
class Throughput:
    """Median bytes per second over ``repeats`` runs of ``nbytes``."""

    what: str
    nbytes: int
    bytes_per_second: float
    repeats: int

    @property
    def gb_per_second(self) -> float:
        return self.bytes_per_second / 1e9

    def to_json(self) -> dict[str, Any]:
        return {"what": self.what, "nbytes": self.nbytes,
                "bytes_per_second": self.bytes_per_second,
                "gb_per_second": self.gb_per_second, "repeats": self.repeats}


def _keystreams(streams: int, nbytes: int, add: bool) -> float:
    """Seconds to produce ``streams`` keystreams of ``nbytes`` (and add them, uint32)."""
    if streams < 1 or nbytes < 1:
        raise ValueError(f"need streams >= 1 and nbytes >= 1, got {streams} and {nbytes}")
    keys = [os.urandom(32) for _ in range(streams)]
    words = -(-nbytes // 4)
    acc = np.zeros(words, np.uint32) if add else None
    zeros = np.zeros(CHUNK_BYTES, np.uint8)
    buf = np.empty(CHUNK_BYTES, np.uint8)
    ring = buf.view(np.uint32)
    t0 = time.perf_counter()
    encs = [Cipher(algorithms.ChaCha20(k, _NONCE), mode=None).encryptor() for k in keys]
    for start in range(0, nbytes, CHUNK_BYTES):
        m = min(CHUNK_BYTES, nbytes - start)
        zin, out = zeros[:m], buf[:m]
        if acc is None:
            for enc in encs:
                # numpy arrays are writable buffers; the stubs only name bytes-like types.
                enc.update_into(zin, out)  # type: ignore[arg-type]
        else:
            part = acc[start // 4: (start + m) // 4]
            rb = ring[: part.size]
            for enc in encs:
                # numpy arrays are writable buffers; the stubs only name bytes-like types.
                enc.update_into(zin, out)  # type: ignore[arg-type]
                np.add(part, rb, out=part)
    return time.perf_counter() - t0


def _median(fn: Callable[[], float], repeats: int) -> float:
    return statistics.median(fn() for _ in range(max(1, repeats)))


def client_floor(streams: int, nbytes: int, repeats: int = 3) -> FloorTiming:
    """The floor of one client: median seconds over ``repeats`` (keystreams+adds, and alone).

    Args:
        streams: keystreams the client must produce (k + 1).
        nbytes: bytes per keystream (the masked vector: (dim + 1) * 4 for a uint32 ring).

    Raises:
        ValueError: ``streams`` or ``nbytes`` below 1.
    """
    with_add = _median(lambda: _keystreams(streams, nbytes, True), repeats)
    alone = _median(lambda: _keystreams(streams, nbytes, False), repeats)
    return FloorTiming(streams, nbytes, with_add, alone, max(1, repeats))


def keystream_throughput(nbytes: int = 64 << 20, repeats: int = 5) -> Throughput:
    """ChaCha20 keystream bytes per second (one key, chunked as the PRG does)."""
    s = _median(lambda: _keystreams(1, nbytes, False), repeats)
    return Throughput("chacha20_keystream", nbytes, nbytes / s, max(1, repeats))


def add_throughput(nbytes: int = 64 << 20, repeats: int = 5) -> Throughput:
    """In-place uint32 add bytes per second, chunk by chunk as the PRG does (cache-resident)."""
    words = nbytes // 4
    acc = np.zeros(words, np.uint32)
    src = np.ones(CHUNK_BYTES // 4, np.uint32)
    step = src.size

    def once() -> float:
        t0 = time.perf_counter()
        for start in range(0, words, step):
            part = acc[start: start + step]
            np.add(part, src[: part.size], out=part)
        return time.perf_counter() - t0

    s = _median(once, repeats)
    return Throughput("uint32_add", words * 4, words * 4 / s, max(1, repeats))


def machine_floor(nbytes: int = 64 << 20, repeats: int = 5) -> dict[str, Any]:
    """Keystream, add, and keystream+add throughput of this machine, right now."""
    ks = keystream_throughput(nbytes, repeats)
    ad = add_throughput(nbytes, repeats)
    both = _median(lambda: _keystreams(1, nbytes, True), repeats)
    return {
        "keystream": ks.to_json(), "add": ad.to_json(),
        "keystream_plus_add": {"what": "chacha20_keystream+uint32_add", "nbytes": nbytes,
                               "bytes_per_second": nbytes / both,
                               "gb_per_second": nbytes / both / 1e9, "repeats": repeats},
        "chunk_bytes": CHUNK_BYTES,
    }


class ServerStreams:
    """Counts the keystreams the SecAgg server expands in a ``with`` block.

    It wraps the server module's reference to :func:`secagg.prg.add_masks` (the only place
    the server expands masks) and restores it on exit; nothing else changes. ``streams`` is
    the total number of ``(key, sign)`` terms, ``nbytes`` the bytes of each keystream (the
    accumulator's size), ``calls`` how often the server expanded masks.
    """

    def __init__(self) -> None:
        self.streams = 0
        self.nbytes = 0
        self.calls = 0
        self._module: Any = None
        self._orig: Any = None

    def __enter__(self) -> ServerStreams:
        import protocols.secagg.server as server_module

        self._module = server_module
        self._orig = server_module.add_masks  # type: ignore[attr-defined]
        orig = self._orig

        def counted(acc: np.ndarray, terms: Sequence[tuple[bytes, int]]) -> np.ndarray:
            self.calls += 1
            self.streams += len(terms)
            self.nbytes = max(self.nbytes, acc.nbytes)
            return orig(acc, terms)  # type: ignore[no-any-return]

        server_module.add_masks = counted  # type: ignore[attr-defined]
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._module is not None:
            self._module.add_masks = self._orig
