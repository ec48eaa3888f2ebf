"""secagg.rng.Csprng: determinism under a seed, independence, ranges, and rough uniformity.

Statistical checks use fixed seeds and loose bounds: they are deterministic regression tests
that a grossly biased generator would fail, not hypothesis tests with a false-alarm rate.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from hypothesis import given
from hypothesis import strategies as st
from strategies import csprngs, keys32, seeds

from secagg.errors import ConfigError
from secagg.rng import Csprng


def _draws(g: Csprng) -> tuple:
    """A mix of every kind of draw, to compare two generators."""
    return (g.bytes(5), g.bytes(70_000), g.uint32(9).tolist(), g.uint64(3).tolist(),
            g.randbelow(1000), g.randbits(77), g.permutation(20), g.random(4).tolist(),
            g.bytes(33))


def _chi_square(counts: Counter, buckets: int, total: int) -> float:
    expected = total / buckets
    return sum((counts.get(b, 0) - expected) ** 2 / expected for b in range(buckets))


# -- determinism and independence ---------------------------------------------------------
@given(seed=seeds | st.binary(max_size=40) | st.text(max_size=20))
def test_from_seed_is_deterministic(seed: int | bytes | str) -> None:
    assert _draws(Csprng.from_seed(seed)) == _draws(Csprng.from_seed(seed))


@given(seed=seeds, offset=st.integers(1, 2**64))
def test_different_int_seeds_differ(seed: int, offset: int) -> None:
    assert Csprng.from_seed(seed).bytes(32) != Csprng.from_seed(seed + offset).bytes(32)


@given(seed=st.binary(max_size=40), extra=st.binary(min_size=1, max_size=4))
def test_different_byte_seeds_differ(seed: bytes, extra: bytes) -> None:
    assert Csprng.from_seed(seed).bytes(32) != Csprng.from_seed(seed + extra).bytes(32)


def test_small_int_seeds_are_all_distinct() -> None:
    outs = {Csprng.from_seed(s).bytes(16) for s in range(600)}
    assert len(outs) == 600


@given(g=csprngs, label=st.text(max_size=12), extra=st.text(min_size=1, max_size=4))
def test_spawn_is_deterministic_and_labels_differ(g: Csprng, label: str, extra: str) -> None:
    a, b = g.spawn(label), g.spawn(label)
    assert a.bytes(32) == b.bytes(32)
    assert g.spawn(label).bytes(32) != g.spawn(label + extra).bytes(32)
    assert g.spawn(label).bytes(32) == g.spawn(label.encode()).bytes(32)


@given(key=keys32, label=st.binary(max_size=12))
def test_spawned_child_is_independent_of_the_parent_stream(key: bytes, label: bytes) -> None:
    parent = Csprng(key)
    child = parent.spawn(label)
    # the child depends on the key, not on how much of the parent was consumed
    parent.bytes(1000)
    assert Csprng(key).spawn(label).bytes(64) == child.bytes(64)
    assert Csprng(key).bytes(64) != Csprng(key).spawn(label).bytes(64)


def test_os_entropy_generators_differ() -> None:
    assert Csprng().bytes(32) != Csprng().bytes(32)


@given(key=keys32)
def test_key_gives_the_chacha20_keystream_without_reusing_any_of_it(key: bytes) -> None:
    """Every output is a slice of ChaCha20(key, zero nonce) and no two outputs overlap."""
    g = Csprng(key)
    outs = [g.bytes(16), g.bytes(70_000), g.fill(np.empty(1000, np.uint32)).tobytes(),
            g.bytes(40), g.bytes(65_536), g.uint64(17).tobytes(), g.bytes(16)]
    stream = Cipher(algorithms.ChaCha20(key, bytes(16)), mode=None).encryptor().update(
        bytes(sum(map(len, outs)) + (1 << 16)))
    spans = []
    for out in outs:
        at = stream.find(out)
        assert at >= 0, "output is not a slice of the key's ChaCha20 keystream"
        spans.append((at, at + len(out)))
    spans.sort()
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert end <= start, f"keystream reused: {spans}"


# -- sizes and ranges ---------------------------------------------------------------------
@pytest.mark.parametrize("n", [0, 1, 15, 63, 64, 65, 65_535, 65_536, 65_537, 200_000])
def test_bytes_has_the_requested_length(n: int) -> None:
    g = Csprng.from_seed(n)
    out = g.bytes(n)
    assert isinstance(out, bytes) and len(out) == n
    if n >= 64:
        assert len(set(out)) > 32  # not a constant or short-period fill


def test_bytes_rejects_negative_counts() -> None:
    with pytest.raises(ConfigError):
        Csprng.from_seed(0).bytes(-1)


@given(g=csprngs, n=st.integers(1, 2**200))
def test_randbelow_is_in_range(g: Csprng, n: int) -> None:
    for _ in range(5):
        assert 0 <= g.randbelow(n) < n


@given(g=csprngs, k=st.integers(0, 300))
def test_randbits_is_in_range(g: Csprng, k: int) -> None:
    assert 0 <= g.randbits(k) < 2**k


def test_randbelow_one_is_zero_and_bad_bounds_raise() -> None:
    g = Csprng.from_seed(1)
    assert all(g.randbelow(1) == 0 for _ in range(10))
    for bad in (0, -1, -(2**70)):
        with pytest.raises(ConfigError):
            g.randbelow(bad)
    with pytest.raises(ConfigError):
        g.randbits(-1)


@pytest.mark.parametrize("n", [6, 10, 37])
def test_randbelow_is_roughly_uniform(n: int) -> None:
    """Chi-square over n buckets; the bound is the 1e-6 tail, far above any real fluctuation."""
    g = Csprng.from_seed(f"randbelow-{n}")
    total = 400 * n
    counts = Counter(g.randbelow(n) for _ in range(total))
    assert set(counts) == set(range(n))
    # chi-square with n-1 degrees of freedom: mean n-1, sd sqrt(2(n-1)); allow 7 sd
    assert _chi_square(counts, n, total) < (n - 1) + 7 * math.sqrt(2 * (n - 1))


def test_randbelow_has_no_modulo_bias_just_above_a_power_of_two() -> None:
    """n = 2^k + 1 is where `r % n` would put double weight on 0; rejection must not."""
    g = Csprng.from_seed("bias")
    n, total = 17, 17 * 600
    counts = Counter(g.randbelow(n) for _ in range(total))
    assert _chi_square(counts, n, total) < 16 + 7 * math.sqrt(32)
    assert counts[0] < 1.3 * total / n


def test_uint32_bits_are_balanced() -> None:
    x = Csprng.from_seed("bits").uint32(20_000)
    ones = np.unpackbits(x.view(np.uint8)).mean()
    assert abs(ones - 0.5) < 0.01
    assert x.max() >= 2**31  # the top bit is used


def test_random_floats_are_in_unit_interval() -> None:
    r = Csprng.from_seed("floats").random(20_000)
    assert r.dtype == np.float64
    assert (r >= 0).all() and (r < 1).all()
    assert abs(r.mean() - 0.5) < 0.01


# -- permutations and samples ---------------------------------------------------------------
@given(g=csprngs, n=st.integers(0, 200))
def test_permutation_is_a_permutation(g: Csprng, n: int) -> None:
    p = g.permutation(n)
    assert sorted(p) == list(range(n))


@pytest.mark.parametrize(("n", "seed", "per"), [(3, "perm", 500), (4, "perm4", 300)])
def test_permutations_are_roughly_uniform(n: int, seed: str, per: int) -> None:
    g = Csprng.from_seed(seed)
    buckets = math.factorial(n)
    total = buckets * per
    counts = Counter(tuple(g.permutation(n)) for _ in range(total))
    assert len(counts) == buckets
    index = {p: i for i, p in enumerate(sorted(counts))}
    stat = _chi_square(Counter({index[p]: c for p, c in counts.items()}), buckets, total)
    assert stat < (buckets - 1) + 7 * math.sqrt(2 * (buckets - 1))


def test_permutation_is_the_order_of_its_keys() -> None:
    n = 1000
    keys = Csprng.from_seed("keys").uint64(n)
    assert Csprng.from_seed("keys").permutation(n) == np.argsort(keys, kind="stable").tolist()


def test_permutation_redraws_keys_that_tie(monkeypatch: pytest.MonkeyPatch) -> None:
    """Equal keys would order by position (a bias): the draw is thrown away instead."""
    g = Csprng.from_seed(0)
    draws = iter([np.array([5, 1, 5], np.uint64), np.array([9, 1, 5], np.uint64)])
    monkeypatch.setattr(g, "uint64", lambda n: next(draws))
    assert g.permutation(3) == [1, 2, 0]
    assert next(draws, None) is None


def test_permutation_rejects_a_negative_size() -> None:
    with pytest.raises(ConfigError, match="n >= 0"):
        Csprng.from_seed(0).permutation(-1)


@given(g=csprngs, data=st.data())
def test_sample_draws_distinct_values(g: Csprng, data: st.DataObject) -> None:
    population = data.draw(st.integers(0, 100))
    k = data.draw(st.integers(0, population))
    s = g.sample(population, k)
    assert len(s) == k == len(set(s))
    assert all(0 <= v < population for v in s)


@pytest.mark.parametrize(("population", "k"), [(5, 6), (5, -1), (0, 1)])
def test_sample_rejects_impossible_requests(population: int, k: int) -> None:
    with pytest.raises(ConfigError):
        Csprng.from_seed(0).sample(population, k)


# -- fill ---------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.uint32, np.uint64, np.uint8])
@pytest.mark.parametrize("n", [0, 1, 1000, 40_000])
def test_fill_fills_in_place(dtype: type, n: int) -> None:
    out = np.zeros(n, dtype)
    assert Csprng.from_seed(n).fill(out) is out
    again = Csprng.from_seed(n).fill(np.zeros(n, dtype))
    assert np.array_equal(out, again)
    if n >= 1000:
        # 1000 uniform bytes show about 251 of 256 values (sd ~2): 230 is > 9 sd below
        assert len(np.unique(out)) > min(n // 2, 230)


def test_fill_handles_multidimensional_contiguous_arrays() -> None:
    out = Csprng.from_seed(3).fill(np.zeros((7, 9), np.uint32))
    assert out.shape == (7, 9) and len(np.unique(out)) > 50


def test_fill_rejects_non_contiguous_arrays() -> None:
    with pytest.raises(ConfigError):
        Csprng.from_seed(0).fill(np.zeros(20, np.uint32)[::2])


# -- construction errors ----------------------------------------------------------------
@pytest.mark.parametrize("key", [b"", bytes(16), bytes(31), bytes(33)])
def test_key_must_be_32_bytes(key: bytes) -> None:
    with pytest.raises(ConfigError, match="32"):
        Csprng(key)


def test_negative_seed_is_refused() -> None:
    with pytest.raises(ConfigError):
        Csprng.from_seed(-1)
