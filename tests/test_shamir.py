"""secagg.shamir: threshold reconstruction, perfect secrecy of t-1 shares, forged-share checks.

The secrecy property is shown constructively: for t-1 shares and *any* candidate secret, the
test interpolates the unique polynomial through (0, candidate) and the t-1 shares, checks its
degree is below t and that it passes through every share, then hands the library a completion
share on that polynomial and watches it reconstruct the candidate. So the t-1 shares rule out
no secret at all.
"""

from __future__ import annotations

import pytest
from hypothesis import given, note
from hypothesis import strategies as st
from strategies import csprngs, field_elements, shamir_setups

from secagg.errors import ConfigError, ProtocolError
from secagg.rng import Csprng
from secagg.shamir import (
    PRIME,
    SHARE_SIZE,
    LagrangeCache,
    ShareBook,
    reconstruct,
    reconstruct_bytes,
    reconstruct_many,
    reconstruct_many_bytes,
    split,
    split_bytes,
)


# -- an independent reference: interpolation to coefficients ---------------------------------
def _poly_mul_linear(poly: list[int], root: int) -> list[int]:
    """poly * (X - root), coefficients lowest degree first, mod PRIME."""
    out = [0] * (len(poly) + 1)
    for i, c in enumerate(poly):
        out[i + 1] = (out[i + 1] + c) % PRIME
        out[i] = (out[i] - root * c) % PRIME
    return out


def interpolate(points: dict[int, int]) -> list[int]:
    """Coefficients (lowest first) of the unique polynomial of degree < len(points)."""
    coeffs = [0] * len(points)
    for xi, yi in points.items():
        basis, denom = [1], 1
        for xm in points:
            if xm != xi:
                basis = _poly_mul_linear(basis, xm)
                denom = denom * (xi - xm) % PRIME
        scale = yi * pow(denom, -1, PRIME) % PRIME
        for k, c in enumerate(basis):
            coeffs[k] = (coeffs[k] + scale * c) % PRIME
    return coeffs


def evaluate(coeffs: list[int], x: int) -> int:
    acc = 0
    for c in reversed(coeffs):
        acc = (acc * x + c) % PRIME
    return acc


def _secret(s: int) -> int:
    return s % PRIME


# -- reconstruction -----------------------------------------------------------------------
@given(setup=shamir_setups(), rng=csprngs, data=st.data())
def test_any_t_or_more_shares_reconstruct(setup: tuple, rng: Csprng, data: st.DataObject) -> None:
    xs, t, secret = setup
    secret = _secret(secret)
    shares = dict(zip(xs, split(secret, xs, t, rng)))
    assert all(0 <= y < PRIME for y in shares.values())
    subset = data.draw(st.lists(st.sampled_from(xs), min_size=t, max_size=len(xs), unique=True),
                       label="holders")
    assert reconstruct({x: shares[x] for x in subset}, t) == secret


@given(setup=shamir_setups(), rng=csprngs)
def test_shares_lie_on_one_polynomial_of_degree_below_t(setup: tuple, rng: Csprng) -> None:
    xs, t, secret = setup
    secret = _secret(secret)
    shares = dict(zip(xs, split(secret, xs, t, rng)))
    coeffs = interpolate(dict(list(shares.items())[:t]))
    assert coeffs[0] == secret
    assert all(evaluate(coeffs, x) == y for x, y in shares.items())


@given(setup=shamir_setups(min_t=2), candidate=field_elements, rng=csprngs,
       data=st.data())
def test_t_minus_one_shares_are_consistent_with_every_secret(
        setup: tuple, candidate: int, rng: Csprng, data: st.DataObject) -> None:
    xs, t, secret = setup
    shares = dict(zip(xs, split(_secret(secret), xs, t, rng)))
    seen = data.draw(st.lists(st.sampled_from(xs), min_size=t - 1, max_size=t - 1, unique=True),
                     label="t-1 holders")
    partial = {x: shares[x] for x in seen}
    # the polynomial through (0, candidate) and the t-1 shares ...
    coeffs = interpolate({0: candidate, **partial})
    assert len(coeffs) == t  # degree <= t-1
    assert coeffs[0] == candidate
    assert all(evaluate(coeffs, x) == y for x, y in partial.items())
    # ... completes the t-1 shares into t that reconstruct the candidate
    fresh = next(x for x in range(1, 3 * len(xs) + 3) if x not in partial)
    completion = {**partial, fresh: evaluate(coeffs, fresh)}
    assert reconstruct(completion, t) == candidate


@given(setup=shamir_setups(), rng=csprngs)
def test_split_is_deterministic_under_a_seed_and_random_otherwise(setup: tuple,
                                                                  rng: Csprng) -> None:
    xs, t, secret = setup
    a = split(_secret(secret), xs, t, Csprng.from_seed(7))
    b = split(_secret(secret), xs, t, Csprng.from_seed(7))
    assert a == b
    if t >= 2:
        assert split(_secret(secret), xs, t, rng) != split(_secret(secret), xs, t, rng)


def test_threshold_one_gives_the_secret_to_everyone() -> None:
    assert split(42, [1, 2, 3], 1, Csprng.from_seed(0)) == [42, 42, 42]
    assert reconstruct({5: 42}, 1) == 42


# -- extra shares are checked ---------------------------------------------------------------
@given(setup=shamir_setups(max_n=9), rng=csprngs, data=st.data())
def test_a_corrupted_share_among_extra_shares_is_detected(setup: tuple, rng: Csprng,
                                                          data: st.DataObject) -> None:
    xs, t, secret = setup
    if len(xs) == t:  # constructive: add one extra holder
        xs = xs + [next(x for x in range(1, len(xs) + 2) if x not in xs)]
    shares = dict(zip(xs, split(_secret(secret), xs, t, rng)))
    victim = data.draw(st.sampled_from(xs), label="corrupted holder")
    delta = data.draw(st.integers(1, PRIME - 1), label="delta")
    note(f"t={t} n={len(xs)} corrupted x={victim}")
    forged = dict(shares)
    forged[victim] = (shares[victim] + delta) % PRIME
    with pytest.raises(ProtocolError, match="inconsistent"):
        reconstruct(forged, t)


@given(setup=shamir_setups(max_n=9), rng=csprngs)
def test_consistent_extra_shares_are_accepted(setup: tuple, rng: Csprng) -> None:
    xs, t, secret = setup
    shares = dict(zip(xs, split(_secret(secret), xs, t, rng)))
    assert reconstruct(shares, t) == _secret(secret)


# -- bytes helpers --------------------------------------------------------------------------
@given(secret=st.binary(min_size=32, max_size=32), setup=shamir_setups(max_n=8), rng=csprngs,
       data=st.data())
def test_bytes_helpers_round_trip_32_byte_secrets(secret: bytes, setup: tuple, rng: Csprng,
                                                  data: st.DataObject) -> None:
    xs, t, _ = setup
    shares = split_bytes(secret, xs, t, rng)
    assert all(isinstance(s, bytes) and len(s) == SHARE_SIZE for s in shares)
    subset = data.draw(st.lists(st.sampled_from(range(len(xs))), min_size=t, max_size=len(xs),
                                unique=True), label="holders")
    assert reconstruct_bytes({xs[i]: shares[i] for i in subset}, t) == secret


@given(secret=st.binary(max_size=64), rng=csprngs)
def test_bytes_helpers_round_trip_any_length_up_to_64(secret: bytes, rng: Csprng) -> None:
    shares = split_bytes(secret, [1, 2, 3, 4], 3, rng)
    got = reconstruct_bytes({1: shares[0], 3: shares[2], 4: shares[3]}, 3, length=len(secret))
    assert got == secret


@pytest.mark.parametrize("size", [0, 1, SHARE_SIZE - 1, SHARE_SIZE + 1])
def test_share_of_the_wrong_size_is_a_protocol_error(size: int) -> None:
    shares = split_bytes(bytes(32), [1, 2, 3], 2, Csprng.from_seed(0))
    with pytest.raises(ProtocolError, match=str(SHARE_SIZE)):
        reconstruct_bytes({1: shares[0], 2: bytes(size)}, 2)


def test_share_outside_the_field_is_a_protocol_error() -> None:
    shares = split_bytes(bytes(32), [1, 2, 3], 2, Csprng.from_seed(0))
    with pytest.raises(ProtocolError, match="field"):
        reconstruct_bytes({1: shares[0], 2: PRIME.to_bytes(SHARE_SIZE, "big")}, 2)


def test_secret_that_does_not_fit_the_length_is_a_protocol_error() -> None:
    shares = split_bytes(b"\xff" * 20, [1, 2, 3], 2, Csprng.from_seed(0))
    with pytest.raises(ProtocolError, match="16 bytes"):
        reconstruct_bytes({1: shares[0], 2: shares[1]}, 2, length=16)


def test_secret_longer_than_32_bytes_is_refused() -> None:
    with pytest.raises(ConfigError, match="32"):
        split_bytes(bytes(33), [1, 2], 2, Csprng.from_seed(0))


# -- parameter errors -------------------------------------------------------------------------
@pytest.mark.parametrize(("xs", "t"), [
    ([1, 2, 3], 0), ([1, 2, 3], -1), ([1, 2, 3], 4), ([1, 2, 3], 2.0),
    ([1, 1, 2], 2), ([0, 1, 2], 2), ([-1, 1, 2], 2), ([1, PRIME, 2], 2), ([1, 2.0, 3], 2),
    ([], 1),
], ids=["t=0", "t<0", "t>n", "t-float", "repeated-x", "x=0", "x<0", "x=PRIME", "x-float",
        "no-holders"])
def test_bad_split_parameters_raise_config_error(xs: list, t: object) -> None:
    with pytest.raises(ConfigError):
        split(1, xs, t, Csprng.from_seed(0))  # type: ignore[arg-type]


@pytest.mark.parametrize("secret", [-1, PRIME, PRIME + 1, 2**600])
def test_secret_outside_the_field_is_refused(secret: int) -> None:
    with pytest.raises(ConfigError):
        split(secret, [1, 2, 3], 2, Csprng.from_seed(0))


@given(setup=shamir_setups(min_t=2), rng=csprngs, data=st.data())
def test_fewer_than_t_shares_is_a_config_error(setup: tuple, rng: Csprng,
                                               data: st.DataObject) -> None:
    xs, t, secret = setup
    shares = dict(zip(xs, split(_secret(secret), xs, t, rng)))
    k = data.draw(st.integers(0, t - 1), label="shares given")
    with pytest.raises(ConfigError, match=f"need {t} shares"):
        reconstruct(dict(list(shares.items())[:k]), t)


def test_reconstruct_rejects_bad_thresholds_and_coordinates() -> None:
    with pytest.raises(ConfigError):
        reconstruct({1: 5, 2: 6}, 0)
    with pytest.raises(ConfigError):
        reconstruct({0: 5, 2: 6}, 2)
    with pytest.raises(ConfigError):
        reconstruct({PRIME: 5, 2: 6}, 2)


# -- many secrets from exactly t shares (the server's batched path) -------------------------
@given(rng=csprngs, data=st.data())
def test_batched_reconstruction_gives_every_secret_back(rng: Csprng, data: st.DataObject) -> None:
    """Secrets with different holder sets (small x, large x, mixed), one batch."""
    t = data.draw(st.integers(1, 8), label="t")
    count = data.draw(st.integers(1, 6), label="secrets")
    share_sets, secrets = [], []
    for j in range(count):
        n = data.draw(st.integers(t, t + 4), label=f"n{j}")
        coord = st.integers(1, 3 * n + 40) | st.integers(1, PRIME - 1)
        xs = data.draw(st.lists(coord, min_size=n, max_size=n, unique=True), label=f"xs{j}")
        secret = data.draw(field_elements, label=f"s{j}")
        share_sets.append(dict(zip(xs, split(secret, xs, t, rng))))
        secrets.append(secret)
    assert reconstruct_many(share_sets, t) == secrets
    for shares in share_sets:  # the batched coefficients agree with the checked single path
        low = {x: shares[x] for x in sorted(shares)[:t]}
        assert reconstruct(low, t) == reconstruct_many([shares], t)[0]


def test_batched_coefficients_are_the_lagrange_coefficients() -> None:
    """sum c_i f(x_i) = f(0) for random polynomials, for sets wide enough to need every int64
    grouping (1 to 6 factors per group) and for the big-x fallback."""
    rng = Csprng.from_seed(3)
    cache = LagrangeCache()

    def distinct(span: int, t: int) -> tuple[int, ...]:
        got: set[int] = set()
        while len(got) < t:
            got.add(1 + rng.randbelow(span))
        return tuple(sorted(got))

    sets = [distinct(span, t) for span, t in
            ((12, 5), (600, 29), (20_000, 40), (2**20, 9), (2**40, 4), (70_000, 1))]
    sets.append((5, 2**200, PRIME - 1))
    cache.prepare(sets)
    assert len(cache) == len(sets)
    for xs in sets:
        coeffs = [rng.randbelow(PRIME) for _ in xs]
        ys = [evaluate(coeffs, x) for x in xs]
        c = cache.coefficients(xs)
        assert sum(int(ci) * y for ci, y in zip(c, ys)) % PRIME == coeffs[0]


def test_batched_path_ignores_extra_shares_and_trusts_the_t_it_uses() -> None:
    """Shares beyond the t lowest x are not read (a forged one changes nothing); a forged
    share among those t gives a wrong secret, which is why callers check a commitment."""
    rng = Csprng.from_seed(4)
    xs, t, secret = [3, 9, 4, 12, 7], 3, 123456789
    shares = dict(zip(xs, split(secret, xs, t, rng)))
    forged_extra = {**shares, 12: (shares[12] + 1) % PRIME}
    assert reconstruct_many([forged_extra], t) == [secret]
    forged_used = {**shares, 3: (shares[3] + 1) % PRIME}
    assert reconstruct_many([forged_used], t) != [secret]


def test_batched_path_errors_name_the_secret_and_the_share() -> None:
    rng = Csprng.from_seed(5)
    good = dict(zip([1, 2, 3], split_bytes(b"k" * 32, [1, 2, 3], 2, rng)))
    with pytest.raises(ConfigError, match=r"secret #1: need 2 shares"):
        reconstruct_many_bytes([good, {1: good[1]}], 2)
    with pytest.raises(ProtocolError, match="x=2 is 5 bytes"):
        reconstruct_many_bytes([{1: good[1], 2: b"short"}], 2)
    with pytest.raises(ProtocolError, match="not a field element"):
        reconstruct_many_bytes([{1: good[1], 2: (2**(8 * SHARE_SIZE) - 1).to_bytes(SHARE_SIZE, "big")}], 2)
    with pytest.raises(ConfigError, match="threshold"):
        reconstruct_many([good and {1: 1}], 0)
    with pytest.raises(ConfigError, match="increasing order"):
        LagrangeCache().prepare([(3, 1)])
    with pytest.raises(ConfigError, match="distinct"):
        LagrangeCache().prepare([(1, 1)])


def test_share_book_keeps_the_first_t_shares_compactly() -> None:
    rng = Csprng.from_seed(6)
    xs = [5, 2, 8, 1, 6]
    secret = bytes(range(32))
    book = ShareBook(3)
    for x, sh in zip(xs, split_bytes(secret, xs, 3, rng)):
        book.add(7, x, sh)
    assert book.count(7) == 3 and set(book.shares(7)) == {5, 2, 8}
    assert book.count(99) == 0 and book.shares(99) == {}
    assert book.reconstruct([7]) == [secret]
    with pytest.raises(ProtocolError, match="second share"):
        book.add(7, 2, bytes(SHARE_SIZE))
    with pytest.raises(ProtocolError, match=f"expected {SHARE_SIZE}"):
        book.add(8, 1, b"x")
    with pytest.raises(ProtocolError, match="two shares of one secret"):
        book.add_from(4, (8, 8), bytes(2 * SHARE_SIZE))
    assert book.count(8) == 0  # nothing kept from a refused batch
    for owners, values in (((10, 7), bytes(2 * SHARE_SIZE)),  # x=2 holds 7's already
                           ((10, 11), bytes(SHARE_SIZE) + b"short")):
        with pytest.raises(ProtocolError, match="second share of secret 7|are not 2 shares"):
            book.add_from(2, owners, values)
        assert book.count(10) == 0 and book.count(7) == 3  # checked before keeping any
    book.add(9, 1, bytes(SHARE_SIZE))
    with pytest.raises(ConfigError, match="need 3 shares"):
        book.reconstruct([9])
    book.add(9, 2, (2**(8 * SHARE_SIZE) - 1).to_bytes(SHARE_SIZE, "big"))
    book.add(9, 3, bytes(SHARE_SIZE))
    with pytest.raises(ProtocolError, match="x=2 is not a field element"):
        book.reconstruct([9])
    book.clear()
    assert book.count(7) == 0
    with pytest.raises(ConfigError, match="threshold"):
        ShareBook(0)


def test_share_book_can_keep_extras_and_check_them() -> None:
    rng = Csprng.from_seed(7)
    xs = [4, 9, 2, 7, 5]
    secret = bytes(range(1, 33))
    shares = split_bytes(secret, xs, 3, rng)
    book = ShareBook(3, keep=5)
    book.add_from(1, (), b"")  # an empty response keeps nothing
    for x, sh in zip(xs, shares):
        book.add(0, x, sh)
    forged = bytearray(shares[1])
    forged[-1] ^= 1
    for x, sh in zip(xs, shares):
        book.add(1, x, bytes(forged) if x == 9 else sh)  # x=9 is not among the 3 lowest
    assert book.count(0) == 5
    assert book.reconstruct([0, 1]) == [secret, secret]  # the fast path reads x = 2, 4, 5
    assert book.reconstruct([0], check_extra=True) == [secret]
    with pytest.raises(ProtocolError, match="x=9 is inconsistent"):
        book.reconstruct([1], check_extra=True)
    with pytest.raises(ConfigError, match="keep must be"):
        ShareBook(3, keep=2)


def test_the_field_is_the_least_prime_above_2_256() -> None:
    """Every 32-byte secret is one field element, a share is 33 bytes, and the modulus is
    prime (Miller-Rabin, 64 rounds) with no prime between 2^256 and it."""
    import gmpy2

    assert PRIME > 2**256 and SHARE_SIZE == (PRIME.bit_length() + 7) // 8 == 33
    assert gmpy2.is_prime(PRIME, 64)
    assert not any(gmpy2.is_prime(2**256 + i, 25) for i in range(1, PRIME - 2**256))
    top = split_bytes(b"\xff" * 32, [1, 2, 3], 2, Csprng.from_seed("top"))
    assert reconstruct_bytes({1: top[0], 3: top[2]}, 2) == b"\xff" * 32
