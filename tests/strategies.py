"""Constructive hypothesis strategies shared by the tests.

Every strategy here *builds* a valid input instead of filtering random ones (python-ecdsa's
rule): an encoding configuration is drawn inside the headroom that :func:`secagg.encoding.headroom`
reports, Shamir x-coordinates are drawn distinct, a pair of different values is drawn as a
value plus a non-zero offset. Tests that need an invalid input derive it from a valid one.

Sizes are kept small so that the ``ci`` hypothesis profile fits its budget; the ``nightly``
profile only draws more examples, not bigger ones.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from secagg import prg
from secagg.encoding import EncodingConfig, headroom
from secagg.rng import Csprng
from secagg.shamir import PRIME

__all__ = [
    "RING_DTYPES",
    "WIRE_DTYPES",
    "byte_mutations",
    "csprngs",
    "encoding_configs",
    "field_elements",
    "keys32",
    "mask_lengths",
    "mask_terms",
    "party_ids",
    "purposes",
    "ring_dtypes",
    "round_ids",
    "seeds",
    "sessions",
    "shamir_setups",
    "updates",
    "weights",
    "wire_arrays",
]

# -- randomness and keys ---------------------------------------------------------------
seeds = st.integers(min_value=0, max_value=2**64 - 1)
csprngs = st.builds(Csprng.from_seed, seeds)
keys32 = st.binary(min_size=32, max_size=32)

# -- labels (HKDF info, AEAD associated data) --------------------------------------------
# Purposes are code constants in practice: short identifiers, never containing "|".
purposes = st.from_regex(r"[a-z][a-z0-9\-+]{0,15}", fullmatch=True)
sessions = st.binary(max_size=24)
round_ids = st.integers(min_value=0, max_value=2**31 - 1)
party_ids = st.integers(min_value=0, max_value=2**31 - 1)

# -- PRG masks --------------------------------------------------------------------------
RING_DTYPES = (np.dtype(np.uint32), np.dtype(np.uint64))
ring_dtypes = st.sampled_from(RING_DTYPES)


def mask_lengths(dtype: np.dtype) -> st.SearchStrategy[int]:
    """Accumulator lengths, small ones and ones within 3 words of a chunk boundary."""
    words = prg.CHUNK_BYTES // np.dtype(dtype).itemsize
    near_boundary = st.builds(lambda k, d: k * words + d, st.integers(1, 2), st.integers(-3, 3))
    return st.one_of(st.integers(1, 300), near_boundary)


def mask_terms(min_size: int = 1, max_size: int = 4) -> st.SearchStrategy[list[tuple[bytes, int]]]:
    """``(key, sign)`` pairs for :func:`secagg.prg.add_masks`."""
    return st.lists(st.tuples(keys32, st.sampled_from((1, -1))), min_size=min_size,
                    max_size=max_size)


# -- encoding ---------------------------------------------------------------------------
def weights(max_weight: float) -> st.SearchStrategy[float]:
    """A client weight in (0, max_weight]."""
    return st.just(max_weight) | st.floats(min_value=0.0, max_value=max_weight,
                                           exclude_min=True)


@st.composite
def encoding_configs(draw: st.DrawFn, bits: int | None = None, max_clients: int = 64,
                     magnitude_bits: int = 50, min_weight_cap: float = 0.5) -> EncodingConfig:
    """A valid :class:`EncodingConfig`, drawn inside the headroom it must respect.

    ``frac_bits`` is drawn up to the largest value :func:`headroom` reports as fitting, and
    capped so that one client's largest encoded magnitude stays below ``2**magnitude_bits``
    (float64 then represents every encoded integer exactly, so a round trip is only off by
    the stochastic rounding). ``max_weight`` is at least ``min_weight_cap``; pass 1.0 when
    the test encodes with the default weight 1.
    """
    b = draw(st.sampled_from((32, 64))) if bits is None else bits
    n = draw(st.integers(1, max_clients))
    clip = draw(st.floats(min_value=0.05, max_value=100.0))
    max_weight = draw(st.just(max(1.0, min_weight_cap))
                      | st.floats(min_value=min_weight_cap, max_value=8.0))
    noise = draw(st.just(0) | st.integers(0, 2**16))
    fit = headroom(n, clip, 0, b, max_weight, noise).max_frac_bits
    cap = magnitude_bits - math.ceil(math.log2(max_weight * max(clip, 1.0))) - 1
    frac_bits = draw(st.integers(0, max(0, min(fit, cap, 62))))
    return EncodingConfig(clip=clip, frac_bits=frac_bits, bits=b, max_clients=n,
                          max_weight=max_weight, noise_bound=noise)


def updates(dim: int | st.SearchStrategy[int] | None = None, max_abs: float = 1e3,
            dtype: Any = np.float64) -> st.SearchStrategy[np.ndarray]:
    """1-D finite float updates with entries in [-max_abs, max_abs] (dim: default 0..32)."""
    width = 32 if np.dtype(dtype) == np.float32 else 64
    elements = st.floats(min_value=-max_abs, max_value=max_abs, width=width)
    return hnp.arrays(dtype, st.integers(0, 32) if dim is None else dim, elements=elements)


# -- Shamir -----------------------------------------------------------------------------
field_elements = st.integers(min_value=0, max_value=PRIME - 1)


@st.composite
def shamir_setups(draw: st.DrawFn, max_n: int = 10, min_t: int = 1) -> tuple[list[int], int, int]:
    """``(xs, t, secret)``: distinct non-zero x-coordinates, a threshold in min_t..n, a secret."""
    n = draw(st.integers(max(1, min_t), max_n))
    t = draw(st.integers(min_t, n))
    coord = st.integers(1, 3 * max_n) | st.integers(1, PRIME - 1)
    xs = draw(st.lists(coord, min_size=n, max_size=n, unique=True))
    secret = draw(field_elements | st.integers(0, 2**256 - 1))
    return xs, t, secret


# -- wire -------------------------------------------------------------------------------
WIRE_DTYPES = tuple(np.dtype(d) for d in ("<u1", "<u4", "<u8", "<i4", "<i8", "<f4", "<f8"))


def wire_arrays(dtype: Any = None, max_len: int = 12) -> st.SearchStrategy[np.ndarray]:
    """1-D arrays of a dtype the wire codec carries (any values, NaNs included)."""
    dts = st.sampled_from(WIRE_DTYPES) if dtype is None else st.just(np.dtype(dtype))
    return dts.flatmap(lambda dt: hnp.arrays(dt, st.integers(0, max_len)))


def byte_mutations(max_mutations: int = 4) -> st.SearchStrategy[list[tuple[str, int, int]]]:
    """Edits to apply to a frame: ``("flip", pos, bit)``, ``("set", pos, byte)``,
    ``("insert", pos, byte)``, ``("delete", pos, 0)``. Positions are taken modulo the frame
    length when applied, so every edit is valid for any frame."""
    pos = st.integers(0, 2**16)
    edit = st.one_of(
        st.tuples(st.just("flip"), pos, st.integers(0, 7)),
        st.tuples(st.just("set"), pos, st.integers(0, 255)),
        st.tuples(st.just("insert"), pos, st.integers(0, 255)),
        st.tuples(st.just("delete"), pos, st.just(0)),
    )
    return st.lists(edit, min_size=1, max_size=max_mutations)
