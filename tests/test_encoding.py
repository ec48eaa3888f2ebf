"""secagg.encoding: clip -> weight -> stochastic fixed point -> Z_2^b, and the headroom check.

Properties:
- a sum of n encoded updates decodes to the float sum within n * 2^-f per coordinate (and the
  weight coordinate to the total weight), in both rings;
- clipping bounds the norm and leaves vectors already inside unchanged up to rounding;
- stochastic rounding is unbiased and lands on a neighbouring grid point;
- ``EncodingConfig`` refuses any configuration whose worst-case sum could wrap, and the worst
  case of one just inside the limit still decodes exactly.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st
from strategies import csprngs, encoding_configs, updates, weights

from secagg.encoding import EncodingConfig, clip_l2, headroom
from secagg.errors import ConfigError
from secagg.rng import Csprng

FLOAT_SLACK = 1e-14  # relative float64 error allowed on top of the fixed-point bound


def _ring_sum(encoded: list[np.ndarray], dtype: np.dtype) -> np.ndarray:
    acc = np.zeros_like(encoded[0], dtype=dtype)
    for e in encoded:
        acc += e  # wraps mod 2^b, as the secure sum does
    return acc


def _clipped(x: np.ndarray, clip: float) -> np.ndarray:
    """Reference clipping, written independently of secagg.encoding."""
    x = np.asarray(x, dtype=np.float64)
    norm = math.sqrt(math.fsum(float(v) * float(v) for v in x))
    return x * (clip / norm) if norm > clip else x


# -- round trip ---------------------------------------------------------------------------
@given(data=st.data(), cfg=encoding_configs(), rng=csprngs)
def test_sum_round_trips_within_n_ulps(data: st.DataObject, cfg: EncodingConfig,
                                       rng: Csprng) -> None:
    n = data.draw(st.integers(1, min(cfg.max_clients, 6)), label="clients")
    dim = data.draw(st.integers(0, 16), label="dim")
    xs = [data.draw(updates(dim, max_abs=1e3), label=f"x{i}") for i in range(n)]
    ws = [data.draw(weights(cfg.max_weight), label=f"w{i}") for i in range(n)]
    enc = [cfg.encode(x, rng, weight=w) for x, w in zip(xs, ws)]
    for e in enc:
        assert e.dtype == cfg.dtype and e.shape == (dim + 1,)
    total, total_weight = cfg.decode(cfg.centre(_ring_sum(enc, cfg.dtype)))
    terms = [w * _clipped(x, cfg.clip) for x, w in zip(xs, ws)]
    want = np.sum(terms, axis=0) if dim else np.zeros(0)
    scale = np.sum(np.abs(terms), axis=0) if dim else np.zeros(0)
    ulp = 2.0**-cfg.frac_bits
    err = np.abs(total - want)
    note(f"max error {err.max() if dim else 0} vs n*2^-f = {n * ulp}")
    assert (err <= n * ulp + FLOAT_SLACK * scale).all()
    assert abs(total_weight - sum(ws)) <= n * ulp + FLOAT_SLACK * sum(ws)


@given(cfg=encoding_configs(), x=updates(st.integers(1, 16)), rng=csprngs,
       data=st.data())
def test_each_coordinate_is_off_by_less_than_one_step(cfg: EncodingConfig, x: np.ndarray,
                                                      rng: Csprng, data: st.DataObject) -> None:
    w = data.draw(weights(cfg.max_weight))
    vals, weight = cfg.decode(cfg.centre(cfg.encode(x, rng, weight=w)))
    want = w * _clipped(x, cfg.clip)
    step = 2.0**-cfg.frac_bits
    assert (np.abs(vals - want) < step + FLOAT_SLACK * np.abs(want)).all()
    assert abs(weight - w) < step


@given(cfg=encoding_configs(magnitude_bits=20, min_weight_cap=1.0), dim=st.integers(0, 12),
       data=st.data(), rng=csprngs)
def test_values_on_the_grid_encode_exactly(cfg: EncodingConfig, dim: int, data: st.DataObject,
                                           rng: Csprng) -> None:
    """Stochastic rounding never moves a value that is already a multiple of 2^-f."""
    bound = int(cfg.clip / math.sqrt(max(dim, 1)) * cfg.scale)
    ints = data.draw(st.lists(st.integers(-bound, bound), min_size=dim, max_size=dim))
    x = np.array(ints, dtype=np.float64) / cfg.scale
    centred = cfg.centre(cfg.encode(x, rng))
    assert centred[:-1].tolist() == ints
    assert centred[-1] == cfg.scale  # weight 1


@given(cfg=encoding_configs(min_weight_cap=1.0), n=st.integers(1, 40), dim=st.integers(0, 8),
       rng=csprngs)
def test_unweighted_weight_coordinate_counts_contributors(cfg: EncodingConfig, n: int, dim: int,
                                                          rng: Csprng) -> None:
    n = min(n, cfg.max_clients)
    enc = [cfg.encode(np.zeros(dim), rng) for _ in range(n)]
    _, count = cfg.decode(cfg.centre(_ring_sum(enc, cfg.dtype)))
    assert count == n


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_accepts_float32_float64_and_integer_updates(dtype: type) -> None:
    cfg = EncodingConfig(clip=100.0, frac_bits=10)
    x = np.array([1, -2, 3], dtype=dtype)
    vals, w = cfg.decode(cfg.centre(cfg.encode(x, Csprng.from_seed(0))))
    assert np.allclose(vals, [1, -2, 3], atol=2**-10) and w == 1.0


# -- clipping -----------------------------------------------------------------------------
@given(cfg=encoding_configs(), x=updates(st.integers(1, 24), max_abs=1e6), rng=csprngs,
       data=st.data())
def test_decoded_norm_is_at_most_the_weighted_clip(cfg: EncodingConfig, x: np.ndarray,
                                                   rng: Csprng, data: st.DataObject) -> None:
    w = data.draw(weights(cfg.max_weight))
    vals, _ = cfg.decode(cfg.centre(cfg.encode(x, rng, weight=w)))
    tol = math.sqrt(x.size) * 2.0**-cfg.frac_bits
    assert np.linalg.norm(vals) <= w * cfg.clip * (1 + 1e-12) + tol


@given(cfg=encoding_configs(min_weight_cap=1.0), x=updates(st.integers(1, 24)),
       shrink=st.floats(0.0, 1.0), rng=csprngs)
def test_vectors_inside_the_clip_are_unchanged_up_to_rounding(
        cfg: EncodingConfig, x: np.ndarray, shrink: float, rng: Csprng) -> None:
    norm = float(np.linalg.norm(x))
    inside = x * (shrink * cfg.clip / norm) if norm > 0 else x
    assert np.linalg.norm(inside) <= cfg.clip * (1 + 1e-12)
    vals, _ = cfg.decode(cfg.centre(cfg.encode(inside, rng)))
    assert (np.abs(vals - inside) < 2.0**-cfg.frac_bits + FLOAT_SLACK * np.abs(inside)).all()


@given(x=updates(st.integers(0, 24), max_abs=1e6), clip=st.floats(0.01, 1e3))
def test_clip_l2_scales_down_and_keeps_direction(x: np.ndarray, clip: float) -> None:
    out, norm = clip_l2(x, clip)
    assert out is not x and out.dtype == np.float64
    assert math.isclose(norm, float(np.linalg.norm(x)), rel_tol=1e-12, abs_tol=1e-300)
    assert np.linalg.norm(out) <= clip * (1 + 1e-12)
    if norm <= clip:
        assert np.array_equal(out, x)
    else:
        assert np.allclose(out * (norm / clip), x, rtol=1e-12, atol=1e-12 * norm)


def test_clip_l2_rejects_bad_input() -> None:
    for bad in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(ConfigError):
            clip_l2(np.ones(3), bad)
    with pytest.raises(ConfigError):
        clip_l2(np.array([1.0, math.nan]), 1.0)


# -- stochastic rounding ------------------------------------------------------------------
@pytest.mark.parametrize("value", [0.3, -0.3, 0.03125 + 0.01, -1.7])
def test_stochastic_rounding_is_unbiased(value: float) -> None:
    """10 000 independent roundings of one value (f = 4, so the grid step is 1/16).

    Deterministic rounding would be off by up to 1/16; the mean of unbiased rounding has a
    standard deviation below (1/16) / (2 * 100) = 3.1e-4. The bound is 8 of those.
    """
    cfg = EncodingConfig(clip=1e6, frac_bits=4, max_clients=10)
    n = 10_000
    vals, _ = cfg.decode(cfg.centre(cfg.encode(np.full(n, value), Csprng.from_seed("sr"))))
    step = 1 / 16
    assert set(np.unique(vals)) <= {math.floor(value / step) * step,
                                    math.floor(value / step) * step + step}
    assert abs(vals.mean() - value) < 8 * step / (2 * math.sqrt(n))


def test_l2_sensitivity_bounds_every_encoding() -> None:
    g = Csprng.from_seed("sens")
    for cfg in (EncodingConfig(clip=1.0, frac_bits=8), EncodingConfig(clip=3.0, frac_bits=12,
                                                                      max_weight=2.0)):
        for dim in (1, 10, 100):
            for _ in range(20):
                x = (g.random(dim) - 0.5) * 10 ** (g.randbelow(5) - 2)
                w = cfg.max_weight * (1 - g.random(1)[0]) if g.randbelow(2) else cfg.max_weight
                e = cfg.centre(cfg.encode(x, g, weight=w)).astype(np.float64)
                assert np.linalg.norm(e) <= cfg.l2_sensitivity(dim)


# -- headroom -----------------------------------------------------------------------------
@st.composite
def _edge_configs(draw: st.DrawFn) -> tuple[int, float, int, int, float, int]:
    """``(n, clip, f, bits, w, noise)`` with n the most clients that fit.

    C and w are integers, so the worst-case magnitude M = w*C*2^f is an exact integer, and
    M < 2^21, where float64 holds M + u exactly for every 32-bit rounding offset u (larger
    magnitudes are covered by the regression tests below).
    """
    bits = draw(st.sampled_from((32, 64)))
    clip = float(draw(st.integers(1, 64)))
    w = float(draw(st.integers(1, 4)))
    f = draw(st.integers(0, 20 - int(w * clip).bit_length()))
    noise = draw(st.just(0) | st.integers(0, 1000))
    m = int(w * clip) * 2**f
    n = (2 ** (bits - 1) - 1 - noise) // m
    return n, clip, f, bits, w, noise


@given(params=_edge_configs())
def test_config_just_inside_fits_and_its_worst_case_sum_decodes_exactly(params: tuple) -> None:
    n, clip, f, bits, w, noise = params
    note(f"n={n} clip={clip} f={f} bits={bits} w={w} noise={noise}")
    assert headroom(n, clip, f, bits, w, noise).fits
    assert headroom(n, clip, f, bits, w, noise).max_clients == n
    cfg = EncodingConfig(clip=clip, frac_bits=f, bits=bits, max_clients=n, max_weight=w,
                         noise_bound=noise)
    m = int(w * clip) * 2**f
    g = Csprng.from_seed(n)
    for sign in (1, -1):
        one = cfg.encode(np.array([sign * clip]), g, weight=w)
        assert cfg.centre(one)[0] == sign * m  # the worst case of one client is exactly M
        # n identical clients plus the worst noise, summed in the ring (wraps are free)
        ring = one * cfg.dtype.type(n)
        noise_vec = np.array([noise, 0], cfg.dtype)
        ring = ring + noise_vec if sign > 0 else ring - noise_vec
        centred = cfg.centre(ring)
        assert int(centred[0]) == sign * (n * m + noise)
        assert int(centred[1]) == n * int(w * 2**f)
        vals, weight = cfg.decode(centred)
        assert vals[0] == pytest.approx(sign * (n * w * clip + noise / 2**f), rel=1e-15)
        assert weight == pytest.approx(n * w, rel=1e-15)


@given(params=_edge_configs())
def test_config_just_outside_is_refused_and_would_wrap(params: tuple) -> None:
    n, clip, f, bits, w, noise = params
    assert not headroom(n + 1, clip, f, bits, w, noise).fits
    with pytest.raises(ConfigError) as info:
        EncodingConfig(clip=clip, frac_bits=f, bits=bits, max_clients=n + 1, max_weight=w,
                       noise_bound=noise)
    msg = str(info.value)
    assert f"bits={bits}" in msg and "needs" in msg and "use " in msg
    assert f"max_clients<={n}" in msg
    # ... and the refusal was needed: n + 1 worst-case clients plus the noise do wrap
    inside = EncodingConfig(clip=clip, frac_bits=f, bits=bits, max_clients=n, max_weight=w,
                            noise_bound=noise)
    one = inside.encode(np.array([clip]), Csprng.from_seed(0), weight=w)
    ring = one * inside.dtype.type(n + 1) + np.array([noise, 0], inside.dtype)
    assert int(inside.centre(ring)[0]) != (n + 1) * int(w * clip) * 2**f + noise


def test_refusal_names_the_numbers_and_the_advice() -> None:
    with pytest.raises(ConfigError) as info:
        EncodingConfig(clip=1.0, frac_bits=16, bits=32, max_clients=100_000)
    msg = str(info.value)
    assert "100000" in msg and "frac_bits 16" in msg and "bits=32" in msg
    assert re.search(r"needs \d+ bits", msg)
    assert "use bits=64" in msg and "frac_bits<=14" in msg and "max_clients<=32767" in msg
    assert isinstance(info.value, ValueError)


@given(bits=st.sampled_from((32, 64)), n=st.integers(1, 10**7), clip=st.floats(0.01, 1e4),
       f=st.integers(0, 62), w=st.floats(0.1, 100.0), noise=st.integers(0, 2**20))
def test_headroom_suggestions_fit_and_are_tight(bits: int, n: int, clip: float, f: int, w: float,
                                                noise: int) -> None:
    h = headroom(n, clip, f, bits, w, noise)
    limit = 2 ** (bits - 1) - 1
    assert h.fits == (n * math.ceil(w * max(clip, 1.0) * 2.0**f) + noise <= limit)
    if 0 <= h.max_frac_bits <= 62:
        assert headroom(n, clip, h.max_frac_bits, bits, w, noise).fits
        if h.max_frac_bits < 62:
            assert not headroom(n, clip, h.max_frac_bits + 1, bits, w, noise).fits
    if h.max_clients >= 1:
        assert headroom(h.max_clients, clip, f, bits, w, noise).fits
    assert not headroom(h.max_clients + 1, clip, f, bits, w, noise).fits
    if not h.fits and bits == 32:
        assert "bits=64" in h.advice()


@pytest.mark.parametrize(("n", "clip", "f", "bits", "want"), [
    (1, float(2**31 - 1), 0, 32, 32),   # top = 2^31 - 1 fits 32 bits exactly
    (1000, 1.0, 16, 32, 27),            # top = 65 536 000 < 2^26
    (32768, 1.0, 16, 32, 33),           # top = 2^31: one bit too many for 32
])
def test_required_bits_is_the_smallest_width_that_holds_the_sum(n: int, clip: float, f: int,
                                                                 bits: int, want: int) -> None:
    h = headroom(n, clip, f, bits)
    assert h.required_bits == want
    assert h.fits == (h.required_bits <= bits)


@pytest.mark.parametrize(("n", "clip", "f", "bits", "w", "noise"), [
    (1, 1000.0, 26, 32, 3.7, 2**20),
    (1000, 3.0, 33, 64, 0.5, 0),
])
def test_max_clip_fits(n: int, clip: float, f: int, bits: int, w: float, noise: int) -> None:
    h = headroom(n, clip, f, bits, w, noise)
    assert h.max_clip >= 1.0
    assert headroom(n, h.max_clip, f, bits, w, noise).fits


def test_advised_clip_is_accepted() -> None:
    with pytest.raises(ConfigError) as info:
        EncodingConfig(clip=40.0, frac_bits=16, bits=32, max_clients=1000)
    advised = float(re.search(r"clip<=([0-9.e+]+)", str(info.value)).group(1))
    EncodingConfig(clip=advised, frac_bits=16, bits=32, max_clients=1000)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_clipped_worst_case_stays_within_max_magnitude() -> None:
    clip = float(2**63 - 1024)  # M = 2^63 - 1024 <= 2^63 - 1: one client fits
    cfg = EncodingConfig(clip=clip, frac_bits=0, bits=64, max_clients=1)
    assert headroom(1, clip, 0, 64).fits
    centred = cfg.centre(cfg.encode(np.array([3 * clip]), Csprng.from_seed(0)))
    assert 0 < int(centred[0]) <= 2**63 - 1024


def test_unclipped_worst_case_stays_within_max_magnitude() -> None:
    cfg = EncodingConfig(clip=3.0, frac_bits=51, bits=64, max_clients=1)
    m = 3 * 2**51  # in [2^52, 2^53): ulp 1, so y + u rounds to y + 1 whenever u > 1/2
    g = Csprng.from_seed(0)
    got = {int(cfg.centre(cfg.encode(np.array([3.0]), g))[0]) for _ in range(64)}
    assert max(got) <= m


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_huge_finite_update_is_clipped_not_refused() -> None:
    cfg = EncodingConfig(clip=1.0, frac_bits=16)
    vals, _ = cfg.decode(cfg.centre(cfg.encode(np.array([1e200, 0.0]), Csprng.from_seed(0))))
    assert vals[0] == pytest.approx(1.0, abs=2**-16)


# -- configuration and input errors ----------------------------------------------------------
@pytest.mark.parametrize("kwargs", [
    {"clip": -1.0}, {"clip": 0.0}, {"clip": math.nan}, {"clip": math.inf},
    {"frac_bits": -1}, {"frac_bits": 63}, {"frac_bits": 1.5},
    {"bits": 16}, {"bits": 8}, {"bits": 128}, {"bits": 33},
    {"max_clients": 0}, {"max_clients": -5}, {"max_clients": 2.0},
    {"max_weight": 0.0}, {"max_weight": -1.0}, {"max_weight": math.nan},
    {"noise_bound": -1},
], ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items()))
def test_bad_settings_raise_config_error(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        EncodingConfig(**kwargs)
    args = {"n": 10, "clip": 1.0, "frac_bits": 8, "bits": 32, "max_weight": 1.0,
            "noise_bound": 0}
    args.update({{"max_clients": "n"}.get(k, k): v for k, v in kwargs.items()})
    with pytest.raises(ConfigError):
        headroom(**args)


@pytest.mark.parametrize("x", [
    np.array([1.0, math.nan]), np.array([math.inf]), np.array([-math.inf, 0.0]),
    np.array([1.0, math.nan], dtype=np.float32),
], ids=["nan", "inf", "-inf", "nan32"])
def test_non_finite_updates_raise_config_error(x: np.ndarray) -> None:
    with pytest.raises(ConfigError):
        EncodingConfig().encode(x, Csprng.from_seed(0))


def test_bad_updates_and_weights_raise_config_error() -> None:
    cfg = EncodingConfig(max_weight=2.0)
    g = Csprng.from_seed(0)
    with pytest.raises(ConfigError):
        cfg.encode(np.zeros((2, 2)), g)
    with pytest.raises(ConfigError):
        cfg.encode(np.array(["a", "b"]), g)
    for w in (0.0, -1.0, 2.5, math.nan, math.inf):
        with pytest.raises(ConfigError, match="weight"):
            cfg.encode(np.zeros(3), g, weight=w)
    cfg.encode(np.zeros(3), g, weight=2.0)  # the cap itself is allowed


def test_centre_rejects_the_wrong_ring() -> None:
    with pytest.raises(ConfigError):
        EncodingConfig(bits=32).centre(np.zeros(3, np.uint64))
    with pytest.raises(ConfigError):
        EncodingConfig(bits=64, frac_bits=16).centre(np.zeros(3, np.int64))


# -- the fast rounding path is the written formula, bit for bit ---------------------------
def _reference_encode(cfg: EncodingConfig, x: np.ndarray, rng: Csprng, weight: float) -> np.ndarray:
    """The rounding as the docstring writes it, in Python integers, one coordinate at a time,
    on the same CSPRNG stream: floor(y + u) = (floor(2^32 y) + bits) >> 32, clamped to +-M,
    with 2^32 y formed by one multiply in the update's float type."""
    from secagg.encoding import _l2_norm, _max_coord

    arr = np.asarray(x)
    norm = _l2_norm(arr)
    factor = weight * cfg.scale * (cfg.clip / norm if norm > cfg.clip else 1.0)
    top = _max_coord(cfg.clip, cfg.frac_bits, cfg.max_weight)
    ydt = np.float32 if arr.dtype == np.float32 else np.float64
    big_y = np.multiply(arr, factor * 2.0**32, dtype=ydt)
    bits = rng.fill(np.empty(arr.size, np.uint32))
    vals = [max(-top, min(top, (math.floor(float(v)) + int(b)) >> 32))
            for v, b in zip(big_y, bits)]
    out = np.empty(arr.size + 1, cfg.dtype)
    signed = out.view(np.int32 if cfg.bits == 32 else np.int64)
    signed[:-1] = vals
    weight_bits = int(rng.fill(np.empty(1, np.uint32))[0])
    signed[-1] = min((math.floor(weight * cfg.scale * 2.0**32) + weight_bits) >> 32, top)
    return out


@pytest.mark.parametrize("case", range(12))
def test_encoding_equals_the_reference_formula_bit_for_bit(case: int) -> None:
    g = np.random.default_rng(case)  # test data only
    bits = (32, 64)[case % 2]
    cfg = EncodingConfig(clip=(1.0, 0.5, 3.0)[case % 3], frac_bits=(16, 24, 0, 40)[case % 4]
                         if bits == 64 else (16, 8, 0, 20)[case % 4], bits=bits, max_clients=4,
                         max_weight=(1.0, 2.0)[case % 2])
    d = (0, 1, 7, 70_000)[case % 4]
    dtype = (np.float32, np.float64, np.int64)[case % 3]
    x = g.standard_normal(d) * 10.0 ** float(g.integers(-3, 3))
    if case % 5 == 0 and d:  # one coordinate carries the whole clip: the clamp path
        x = np.zeros(d)
        x[d // 2] = -cfg.clip
    x = (np.round(x) if dtype is np.int64 else x).astype(dtype)
    w = cfg.max_weight * (1.0, 0.37, 1e-12)[case % 3]
    got = cfg.encode(x, Csprng.from_seed(case), w)
    want = _reference_encode(cfg, x, Csprng.from_seed(case), w)
    assert got.dtype == want.dtype and np.array_equal(got, want)


class _ConstantBits:
    """A stand-in generator whose every rounding draw is the same 32 bits."""

    def __init__(self, word: int) -> None:
        self.word = word

    def fill(self, out: np.ndarray) -> np.ndarray:
        out.view(np.uint32)[...] = self.word
        return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rounding_at_the_extreme_draws_is_floor_and_nearly_ceil(dtype: type) -> None:
    """u = 0 gives floor(y) and u = 1 - 2^-32 gives floor(y + 1 - 2^-32), exactly: a tiny
    negative y rounds to -1 or 0 (where a float frac(y) = 1 + y would round to 1 and always
    move it up), a tiny positive one (frac below 2^-32) never rounds up, grid points stay."""
    cfg = EncodingConfig(clip=1.0, frac_bits=16, max_clients=4)
    step = 2.0**-16
    x = np.array([-1e-30, 1e-30, 3 * step, -3 * step, 0.5 * step, -0.5 * step], dtype)
    low = cfg.encode(x, _ConstantBits(0)).view(np.int32)  # type: ignore[arg-type]
    high = cfg.encode(x, _ConstantBits(2**32 - 1)).view(np.int32)  # type: ignore[arg-type]
    assert low[:-1].tolist() == [-1, 0, 3, -3, 0, -1]
    assert high[:-1].tolist() == [0, 0, 3, -3, 1, 0]
    assert low[-1] == high[-1] == 2**16  # the weight 1.0 sits on the grid


def test_wide_rounding_is_exact_where_int64_cannot_hold_the_scaled_value() -> None:
    """The float64 quotient-and-remainder path (64-bit rings near their range) gives
    floor(Y / 2^32 + bits / 2^32) exactly, at remainders next to 2^32 - bits and at
    magnitudes past 2^53, where a float64 sum would round."""
    from secagg.encoding import _round_wide

    g = np.random.default_rng(2)  # test data only
    bits = g.integers(0, 2**32, 3000, dtype=np.uint64).astype(np.uint32)
    bits[:4] = (0, 1, 2**32 - 1, 2**31)
    q = g.integers(-(2**40), 2**40, bits.size)
    rem = (2**32 - bits.astype(np.int64)) + g.integers(-2, 2, bits.size)  # the carry's edge
    big = [float(int(a) * 2**32 + int(r)) + f for a, r, f in
           zip(q, rem, g.uniform(0, 1, bits.size))]
    big[:3] = (2.0**70 + 2.0**20, -(2.0**66), 2.0**63 - 2.0**11)
    top = 2**61
    got = _round_wide(np.array(big), bits, top)
    want = [max(-top, min(top, (math.floor(v) + int(b)) >> 32)) for v, b in zip(big, bits)]
    assert got.tolist() == [float(w) for w in want]


def test_wide_rounding_clamps_to_a_bound_float64_cannot_write() -> None:
    """M = 2^62 - 1 rounds up to 2^62 in float64; the clamp uses the float just below."""
    from secagg.encoding import _round_wide

    top = 2**62 - 1
    got = _round_wide(np.array([2.0**96, -(2.0**96)]), np.zeros(2, np.uint32), top)
    assert all(abs(int(v)) <= top for v in got) and int(got[0]) > 2**61


def test_float32_updates_round_bit_for_bit_at_the_awkward_values() -> None:
    """Tiny negatives (where frac(y) = 1 + y would round in floats), grid points, halves and
    values next to them, in float32, against the written formula."""
    g = np.random.default_rng(11)  # test data only
    cfg = EncodingConfig(clip=1.0, frac_bits=16, max_clients=4)
    step = np.float32(2.0**-16)
    base = np.concatenate([
        -np.abs(g.standard_normal(2000)).astype(np.float32) * np.float32(1e-30),
        np.arange(-500, 500, dtype=np.float32) * step,  # on the grid
        (np.arange(-500, 500, dtype=np.float32) + np.float32(0.5)) * step,
        g.standard_normal(3000).astype(np.float32) * np.float32(1e-3),
    ]).astype(np.float32)
    x = np.concatenate([base, np.nextafter(base, np.float32(1)), np.nextafter(base, np.float32(-1))])
    x *= np.float32(0.5 / float(np.linalg.norm(x.astype(np.float64))))  # inside the clip
    assert x.dtype == np.float32
    for seed in range(3):
        got = cfg.encode(x, Csprng.from_seed(seed))
        want = _reference_encode(cfg, x, Csprng.from_seed(seed), 1.0)
        assert np.array_equal(got, want)


# -- the fast "no clipping" decision ---------------------------------------------------------
@settings(max_examples=200, deadline=None)
@given(st.integers(1, 70_000), st.floats(0.98, 1.02), st.floats(1e-3, 1e3), st.integers(0, 2**32))
def test_fast_norm_check_never_skips_a_clip_the_exact_norm_would_apply(d, ratio, clip, seed):
    from secagg.encoding import _l2_norm, _surely_within

    x = Csprng.from_seed(seed).random(d).astype(np.float32) - np.float32(0.5)
    x *= np.float32(clip * ratio / max(float(np.linalg.norm(x.astype(np.float64))), 1e-30))
    if _surely_within(x, clip):
        assert _l2_norm(x) <= clip
    # well inside the clip the fast path is taken (so the check above is exercised)
    assert _surely_within(x * np.float32(0.9), clip)


def test_fast_norm_check_refuses_what_it_cannot_decide():
    from secagg.encoding import _surely_within

    assert not _surely_within(np.array([1.0, np.nan], np.float32), 10.0)
    assert not _surely_within(np.array([3e38, 3e38], np.float32), 1e300)  # squares overflow
    assert not _surely_within(np.ones(4, np.float64) * 0.1, 1.0)  # float64: the exact path
    assert not _surely_within(np.ones(100, np.float32) * np.float32(0.1), 1.0)  # norm 1.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_encoding_does_not_depend_on_its_chunk_size(monkeypatch: pytest.MonkeyPatch,
                                                    dtype: type) -> None:
    """The rounding bits are drawn in order across chunks, so the chunk size (a speed knob)
    never changes the integers: several chunks, a ragged last one, and clipping."""
    import secagg.encoding as encoding

    enc = EncodingConfig(max_clients=10)
    base = Csprng.from_seed("chunks").random(5_003).astype(dtype) - dtype(0.5)
    outs = []
    for chunk in (1 << 8, 1 << 10, 1 << 16):
        monkeypatch.setattr(encoding, "_ENC_CHUNK", chunk)
        outs.append([enc.encode(x, Csprng.from_seed("bits")) for x in (base * 0.01, base * 10)])
    for other in outs[1:]:
        for a, b in zip(outs[0], other, strict=True):
            np.testing.assert_array_equal(a, b)
