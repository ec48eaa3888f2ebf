"""Constructive hypothesis strategies: primitives, encodings, and whole protocol rounds.

Every strategy here *builds* a valid input instead of filtering random ones (python-ecdsa's
rule): an encoding is drawn inside the headroom that :func:`secagg.encoding.headroom`
reports, Shamir x-coordinates are drawn distinct, a sparse graph's degree from the even
values below ``n - 1`` and its threshold from ``1..k+1``, and a dropout schedule assigns each
client either no dropout or a stage that exists *in the protocol's own transition table*
(:meth:`protocols.base.ProtocolSpec.client_stages`), never a hard-coded list. Tests that need
an invalid input derive it from a valid one.

The round-level strategies work for any registered protocol:

- :func:`round_configs` -- ``(spec, config)`` with n, dim, the encoding, and (where the
  protocol takes them) graph parameters and the active variant;
- :func:`inputs_and_weights` -- one update and one weight per client;
- :func:`dropout_schedules_for` -- ``{client: stage index}`` over the protocol's stages;
- :func:`network_schedules` -- lists of :class:`protocols.harness.NetOp` (deliver any frame,
  duplicate, drop, delay past the deadline, close the stage).

Sizes are kept small so that a ``ci`` hypothesis profile fits its budget; a ``nightly``
profile should only draw more examples, not bigger ones.

Example::

    from hypothesis import given
    from protocols.testing import strategies as pst
    import protocols

    @given(data=st.data())
    def test_round(data):
        spec, config = data.draw(pst.round_configs(protocols.get("secagg+")))
        drop_at = data.draw(pst.dropout_schedules_for(spec, config))
        router = protocols.Router(spec, config, Csprng.from_seed(1), drop_at=drop_at)
        router.check_result(router.run())
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from protocols.base import ProtocolSpec, RoundConfig
from protocols.harness import NetOp, Op
from secagg import prg
from secagg.encoding import EncodingConfig, headroom
from secagg.errors import ConfigError
from secagg.rng import Csprng
from secagg.shamir import PRIME

__all__ = [
    "RING_DTYPES",
    "dropout_schedules",
    "dropout_schedules_for",
    "graph_parameters",
    "inputs_and_weights",
    "network_schedules",
    "round_configs",
    "sparse_degrees",
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
    width: Literal[32, 64] = 32 if np.dtype(dtype) == np.float32 else 64
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


# -- protocol rounds ---------------------------------------------------------------------
def sparse_degrees(n: int) -> list[int]:
    """The degrees of a sparse (Harary) graph on ``n`` clients: even, 2 <= k < n - 1."""
    return list(range(2, n - 1, 2))


@st.composite
def graph_parameters(draw: st.DrawFn, n: int, sparse: bool,
                     min_threshold: int = 2) -> tuple[int, int]:
    """``(degree, threshold)`` valid for ``n`` clients: the complete graph unless ``sparse``
    (and a sparse degree exists), with any threshold in ``min_threshold..degree+1`` (a
    threshold of 1 makes every share the secret itself; secagg refuses it)."""
    degrees = sparse_degrees(n)
    k = draw(st.sampled_from(degrees), label="degree") if sparse and degrees else n - 1
    return k, draw(st.integers(min(min_threshold, k + 1), k + 1), label="threshold")


def dropout_schedules(n: int, stages: int | Sequence[Any]) -> st.SearchStrategy[dict[int, int]]:
    """client -> index of the first stage whose message it never gets, for some clients
    (``stages``: how many there are, or the stages themselves)."""
    count = stages if isinstance(stages, int) else len(stages)
    slot = st.none() | st.integers(0, count - 1)
    return st.lists(slot, min_size=n, max_size=n).map(
        lambda slots: {u: s for u, s in enumerate(slots) if s is not None})


def dropout_schedules_for(spec: ProtocolSpec, config: RoundConfig
                          ) -> st.SearchStrategy[dict[int, int]]:
    """A dropout schedule over ``spec``'s own client stages under ``config``."""
    return dropout_schedules(config.n_clients, spec.client_stages(config))


@st.composite
def round_encodings(draw: st.DrawFn, n: int, max_weight: float = 1.0) -> EncodingConfig:
    """An encoding for ``n`` clients inside its headroom (32-bit ring, modest precision so
    that homomorphic schemes' scales fit as well)."""
    clip = draw(st.sampled_from((0.5, 1.0, 2.0)), label="clip")
    fit = headroom(n, clip, 0, 32, max_weight, 0).max_frac_bits
    frac_bits = draw(st.integers(min(8, fit), min(fit, 18)), label="frac_bits")
    return EncodingConfig(clip=clip, frac_bits=frac_bits, bits=32, max_clients=n,
                          max_weight=max_weight)


@st.composite
def round_configs(draw: st.DrawFn, /, spec: ProtocolSpec, *, min_n: int = 3, max_n: int = 6,
                  max_dim: int = 6, encodings: bool = True,
                  **fixed: Any) -> tuple[ProtocolSpec, RoundConfig]:
    """``(spec, config)``: a valid round of ``spec``, built from what the spec declares.

    Draws n in ``min_n..max_n``, dim in ``1..max_dim``, an encoding inside the headroom
    (unless ``encodings=False``), graph parameters if the protocol takes ``threshold`` and
    ``degree`` (sparse ones if its default config is not the complete graph), and the active
    variant if it takes ``active``. ``fixed`` keywords go to ``make_config`` as they are.
    """
    n = draw(st.integers(max(min_n, spec.min_cohort), max_n), label="n")
    dim = draw(st.integers(1, max_dim), label="dim")
    kw: dict[str, Any] = dict(fixed)
    if encodings and "encoding" not in kw:
        kw["encoding"] = draw(round_encodings(n), label="encoding")
    if {"threshold", "degree"} <= spec.keywords and "degree" not in kw:
        default = spec.graph_params(spec.make_config(n, dim))
        sparse = default.degree is not None and default.degree < n - 1
        if not sparse and sparse_degrees(n):  # a sparse protocol at small n
            sparse = spec.graph_params(spec.make_config(64, 1)).degree != 63
        degree, threshold = draw(graph_parameters(n, sparse), label="graph")
        kw.update(degree=degree, threshold=threshold)
    if "active" in spec.keywords and "active" not in kw:
        kw["active"] = draw(st.booleans(), label="active")
    if kw.get("active") and "threshold" in kw and "degree" in kw:
        # An active variant may need a larger threshold than the passive one (e.g. secagg's
        # t > (m + c)/2): draw from the thresholds the protocol itself accepts.
        accepted = [t for t in range(kw["threshold"], kw["degree"] + 2)
                    if _accepts(spec, n, dim, {**kw, "threshold": t})]
        if accepted:
            kw["threshold"] = draw(st.sampled_from(accepted), label="active threshold")
    return spec, spec.make_config(n, dim, **kw)


def _accepts(spec: ProtocolSpec, n: int, dim: int, kw: dict[str, Any]) -> bool:
    try:
        spec.make_config(n, dim, **kw)
    except ConfigError:
        return False
    return True


@st.composite
def inputs_and_weights(draw: st.DrawFn, n: int, dim: int, *, max_abs: float = 2.0,
                       max_weight: float = 1.0) -> tuple[list[np.ndarray], list[float]]:
    """One float64 update per client (entries in ``[-max_abs, max_abs]``, so some exceed the
    clip and get clipped) and one weight per client in ``(0, max_weight]``, exact in 8
    fraction bits so a weight sum is exact in any encoding of 8 or more fraction bits."""
    elements = st.floats(min_value=-max_abs, max_value=max_abs, width=64)
    xs = [draw(hnp.arrays(np.float64, dim, elements=elements), label=f"input {u}")
          for u in range(n)]
    steps = max(1, int(max_weight * 256))
    ws = [draw(st.integers(1, steps), label=f"weight {u}") / 256 for u in range(n)]
    return xs, ws


def network_schedules(max_ops: int = 40, *, ops: Sequence[Op] = tuple(Op)
                      ) -> st.SearchStrategy[list[NetOp]]:
    """Adversarial network operations (:class:`protocols.harness.NetOp`): deliver any frame
    (reordering), duplicate, drop, delay one past the stage's deadline, or close the stage.
    Apply them with :meth:`protocols.harness.Router.apply`."""
    op = st.builds(NetOp, st.sampled_from(list(ops)), st.integers(0, 64))
    return st.lists(op, max_size=max_ops)
