"""The optional GPU mask path: ChaCha20 keystreams and the masked add in torch.

Bit-identical to :mod:`secagg.prg`: the mask of a 32-byte key is the RFC 8439 keystream under
the all-zero 96-bit nonce, block counter 0, 1, 2, ..., read as little-endian ring words
(uint32, or uint64 from consecutive pairs of uint32). Only 32-bit adds, xors and shifts are
used, so the same code runs on CPU torch (where the tests check it against RFC 8439's vectors
and against :func:`secagg.prg.keystream`) and on CUDA.

Layout: the state of ``N`` blocks is one ``(16, N)`` int32 tensor, so a column round is one
quarter round over rows 0-3/4-7/8-11/12-15 at once and a diagonal round the same over rows
gathered by a fixed rotation: 24 element-wise ops per double round for all blocks. Signed
int32 stands in for uint32 (two's complement wraps the same way); the logical right shift is
an arithmetic shift masked to the low bits. With ``compile=True`` the block function goes
through ``torch.compile`` (inductor fuses it into one kernel on CUDA).

Benchmark on a GPU (not part of CI)::

    python -m bench.gpu_chacha --dim 1000000000 --streams 21 --device cuda --compile

.. warning:: keys are secret; this module never copies them anywhere but the device.
"""

from __future__ import annotations

import argparse
import json
import struct
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["BLOCK_WORDS", "add_masks", "benchmark", "chacha20_blocks", "keystream",
           "keystream_words", "matches_cpu"]

BLOCK_WORDS = 16
_CONSTANTS = (0x61707865, 0x3320646E, 0x79622D32, 0x6B206574)
_DIAG_B = (5, 6, 7, 4)
_DIAG_C = (10, 11, 8, 9)
_DIAG_D = (15, 12, 13, 14)
_MAX_BLOCKS = 1 << 32  # the 32-bit block counter of RFC 8439


def _i32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >= 1 << 31 else v


def _rotl(x: torch.Tensor, n: int) -> torch.Tensor:
    return torch.bitwise_or(torch.bitwise_left_shift(x, n),
                            torch.bitwise_and(torch.bitwise_right_shift(x, 32 - n), (1 << n) - 1))


def _qr(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor,
        d: torch.Tensor) -> tuple[torch.Tensor, ...]:
    a = a + b
    d = _rotl(d ^ a, 16)
    c = c + d
    b = _rotl(b ^ c, 12)
    a = a + b
    d = _rotl(d ^ a, 8)
    c = c + d
    b = _rotl(b ^ c, 7)
    return a, b, c, d


def _rounds(state: torch.Tensor) -> torch.Tensor:
    """20 ChaCha rounds plus the feed-forward on a (16, N) int32 state."""
    dev = state.device
    ib = torch.tensor(_DIAG_B, device=dev) - 4
    ic = torch.tensor(_DIAG_C, device=dev) - 8
    id_ = torch.tensor(_DIAG_D, device=dev) - 12
    inv_b, inv_c, inv_d = (torch.argsort(i) for i in (ib, ic, id_))
    a, b, c, d = state[0:4], state[4:8], state[8:12], state[12:16]
    for _ in range(10):
        a, b, c, d = _qr(a, b, c, d)  # column round
        a, b2, c2, d2 = _qr(a, b[ib], c[ic], d[id_])  # diagonal round
        b, c, d = b2[inv_b], c2[inv_c], d2[inv_d]
    return torch.cat((a, b, c, d)) + state


_compiled: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {}


def chacha20_blocks(key: bytes, first_block: int, nblocks: int, *, nonce: bytes = bytes(12),
                    device: str | torch.device = "cpu", compile: bool = False) -> torch.Tensor:
    """Keystream blocks ``first_block .. first_block+nblocks-1`` of ``key`` under ``nonce``
    (RFC 8439's 96-bit nonce; the masks use the all-zero one).

    Returns:
        An int32 tensor of ``nblocks * 16`` words (little-endian keystream order).

    Raises:
        ValueError: a key that is not 32 bytes, a nonce that is not 12, or blocks beyond
            the 32-bit counter.
    """
    if len(key) != 32:
        raise ValueError(f"key must be 32 bytes, got {len(key)}")
    if len(nonce) != 12:
        raise ValueError(f"nonce must be 12 bytes, got {len(nonce)}")
    if first_block < 0 or nblocks < 0 or first_block + nblocks > _MAX_BLOCKS:
        raise ValueError(f"blocks {first_block}..{first_block + nblocks} exceed the 32-bit "
                         f"counter (at most {_MAX_BLOCKS})")
    words = [_i32(w) for w in (*_CONSTANTS, *struct.unpack("<8I", key))]
    state = torch.empty((16, nblocks), dtype=torch.int32, device=device)
    state[:12] = torch.tensor(words, dtype=torch.int32, device=device)[:, None]
    ctr = torch.arange(first_block, first_block + nblocks, dtype=torch.int64, device=device)
    state[12] = torch.where(ctr >= 1 << 31, ctr - (1 << 32), ctr).to(torch.int32)
    state[13:] = torch.tensor([_i32(w) for w in struct.unpack("<3I", nonce)],
                              dtype=torch.int32, device=device)[:, None]
    fn: Callable[[torch.Tensor], torch.Tensor] = _rounds
    if compile:
        fn = _compiled.setdefault("rounds", torch.compile(_rounds, dynamic=True))
    return fn(state).t().reshape(-1)


def keystream_words(key: bytes, count: int, *, device: str | torch.device = "cpu",
                    compile: bool = False) -> torch.Tensor:
    """The first ``count`` 32-bit words of ``key``'s mask, as int32 (bit pattern of uint32)."""
    nblocks = -(-count // BLOCK_WORDS)
    return chacha20_blocks(key, 0, nblocks, device=device, compile=compile)[:count]


def keystream(key: bytes, count: int, dtype: np.dtype | type = np.uint32) -> np.ndarray:
    """Same contract as :func:`secagg.prg.keystream`, computed with torch on the CPU."""
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.uint32), np.dtype(np.uint64)):
        raise ValueError(f"ring dtype must be uint32 or uint64, got {dt}")
    per = dt.itemsize // 4
    w = keystream_words(key, count * per).cpu().numpy().view(np.uint32)
    return w.view("<u8").astype(dt) if per == 2 else w.astype(dt)


def add_masks(acc: torch.Tensor, terms: Sequence[tuple[bytes, int]], *,
              chunk_words: int = 1 << 24, compile: bool = False) -> torch.Tensor:
    """Add ``sign * mask(key)`` for each ``(key, sign)`` into ``acc`` in place, mod 2^b.

    ``acc`` is int32 (a uint32 ring) or int64 (a uint64 ring), on any device; it is the same
    sum :func:`secagg.prg.add_masks` computes on the bit patterns.

    Raises:
        ValueError: wrong dtype or shape, a sign other than +-1, or a bad key.
    """
    if acc.dtype not in (torch.int32, torch.int64) or acc.dim() != 1:
        raise ValueError(f"accumulator must be a 1-D int32/int64 tensor, got {acc.dtype} "
                         f"with shape {tuple(acc.shape)}")
    for _, sign in terms:
        if sign not in (1, -1):
            raise ValueError(f"mask sign must be +1 or -1, got {sign}")
    per = 2 if acc.dtype == torch.int64 else 1
    step = max(BLOCK_WORDS, chunk_words - chunk_words % BLOCK_WORDS)  # ring words per chunk
    for start in range(0, acc.numel(), step):
        part = acc[start:start + step]
        first = start * per // BLOCK_WORDS
        nblocks = -(-part.numel() * per // BLOCK_WORDS)
        for key, sign in terms:
            w = chacha20_blocks(key, first, nblocks, device=acc.device, compile=compile)
            w = w[: part.numel() * per]
            if per == 2:
                lo = w[0::2].to(torch.int64) & 0xFFFFFFFF
                w = lo | (w[1::2].to(torch.int64) << 32)
            if sign > 0:
                part += w
            else:
                part -= w
    return acc


def matches_cpu(*, device: str | torch.device = "cpu", compile: bool = False) -> bool:
    """Whether this path, on ``device``, reproduces :mod:`secagg.prg` bit for bit: the
    keystream of two keys across a chunk boundary, and a masked sum in both rings."""
    import os

    from secagg import prg

    ok = True
    for key in (bytes(32), os.urandom(32)):
        words = keystream_words(key, 5000, device=device, compile=compile).cpu().numpy()
        ok &= bool(np.array_equal(words.view(np.uint32), prg.keystream(key, 5000)))
    terms = [(os.urandom(32), 1), (os.urandom(32), -1), (os.urandom(32), 1)]
    for np_dt, t_dt in ((np.uint32, torch.int32), (np.uint64, torch.int64)):
        want = prg.add_masks(np.arange(3001, dtype=np_dt), terms)
        acc = torch.arange(3001, dtype=t_dt, device=device)
        got = add_masks(acc, terms, chunk_words=1024, compile=compile).cpu().numpy()
        ok &= bool(np.array_equal(got.view(np_dt), want))
    return ok


def benchmark(dim: int, streams: int, *, device: str = "cuda", compile: bool = True,
              repeats: int = 3, chunk_words: int = 1 << 26) -> dict[str, Any]:
    """Time ``streams`` masks of ``dim`` uint32 words added into one accumulator on ``device``.

    Returns seconds (median of ``repeats``), keystream+add throughput in GB/s of keystream,
    and ``bit_identical_to_cpu`` (:func:`matches_cpu` on the same device and settings).
    """
    import os

    acc = torch.zeros(dim, dtype=torch.int32, device=device)
    terms = [(os.urandom(32), 1 if i % 2 else -1) for i in range(streams)]
    sync: Callable[[], None] = torch.cuda.synchronize if str(device).startswith("cuda") else (lambda: None)
    add_masks(acc[: min(dim, chunk_words)], terms[:1], chunk_words=chunk_words,
              compile=compile)  # warm-up (and compilation)
    sync()
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        add_masks(acc, terms, chunk_words=chunk_words, compile=compile)
        sync()
        times.append(time.perf_counter() - t0)
    s = float(np.median(times))
    return {"device": str(device), "name": (torch.cuda.get_device_name()
                                             if str(device).startswith("cuda") else "cpu"),
            "bit_identical_to_cpu": matches_cpu(device=device, compile=compile),
            "dim": dim, "streams": streams, "compile": compile, "seconds": s,
            "keystream_bytes": dim * 4 * streams,
            "gb_per_second": dim * 4 * streams / s / 1e9, "repeats": len(times),
            "torch": torch.__version__}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.gpu_chacha",
                                description="time keystream+add of the torch mask path")
    p.add_argument("--dim", type=int, default=1_000_000_000)
    p.add_argument("--streams", type=int, default=21, help="k + 1 keystreams (default 21)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--compile", action="store_true", help="fuse with torch.compile")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    print(json.dumps(benchmark(args.dim, args.streams, device=args.device,
                               compile=args.compile, repeats=args.repeats)))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
