"""secagg.threshold (a threshold Diffie-Hellman PRF on Ed25519, one key per label) and the
enrolled key schedule, checked against an independent derivation."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.bindings import (
    crypto_core_ed25519_add,
    crypto_core_ed25519_is_valid_point,
    crypto_sign_ed25519_pk_to_curve25519,
)

import protocols
from protocols.secagg._enrolled_keys import round_graph, round_neighbourhoods, round_seed, share_key
from secagg import threshold as th
from secagg.errors import ConfigError, ProtocolError
from secagg.rng import Csprng

# A point of order 8 on Ed25519 (the torsion subgroup), in its canonical encoding.
TORSION8 = bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a")


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32), n=st.integers(1, 9), data=st.data())
def test_any_t_partials_rebuild_the_key_and_fewer_do_not(seed: int, n: int,
                                                        data: st.DataObject) -> None:
    rng = Csprng.from_seed(seed)
    t = data.draw(st.integers(1, n), label="t")
    z = th.random_owner_scalar(rng)
    xs = list(range(1, n + 1))
    shares = th.split(z % th.L, xs, t, rng)
    R = th.hash_point(b"label %d" % seed)
    [K] = th.owner_keys(z, [R])  # the owner's key for the label, by X25519
    assert K == crypto_sign_ed25519_pk_to_curve25519(th.partial(z % th.L, R))
    partials = {x: th.partial(s, R) for x, s in zip(xs, shares)}
    chosen = data.draw(st.lists(st.sampled_from(xs), min_size=t, max_size=t, unique=True))
    assert th.combined_key({x: partials[x] for x in chosen}, t) == K
    if t > 1:  # t-1 partials, interpolated as if they were enough, give another point
        assert th.combined_key({x: partials[x] for x in chosen[:-1]}, t - 1) != K
    with pytest.raises(ConfigError):
        th.combine({x: partials[x] for x in chosen[:-1]}, t)
    # Partials for one label combine to that label's key only.
    other = {x: th.partial(s, th.hash_point(b"other %d" % seed)) for x, s in zip(xs, shares)}
    assert th.combined_key({x: other[x] for x in chosen}, t) != K


def test_a_point_with_a_torsion_component_is_refused() -> None:
    """R + T (T of order 8) would let a forged point reveal share mod 8: it is refused."""
    rng = Csprng.from_seed("torsion")
    z = th.random_scalar(rng)
    R = th.partial(z, th.hash_point(b"torsion"))
    forged = crypto_core_ed25519_add(R, TORSION8)
    assert forged != R
    share = th.random_scalar(rng)
    assert len(th.partial(share, R)) == th.POINT_SIZE
    with pytest.raises(ProtocolError):
        th.partial(share, forged)
    with pytest.raises(ProtocolError):
        th.partial(share, TORSION8)  # a small-order point alone is refused
    with pytest.raises(ProtocolError):
        th.partial(share, b"\x01" * 31)


def test_owner_keys_batch_agrees_with_one_at_a_time_and_refuses_a_clamped_away_scalar() -> None:
    rng = Csprng.from_seed("batch")
    z = th.random_owner_scalar(rng)
    points = [th.hash_point(b"%d" % i) for i in range(7)]
    assert th.owner_keys(z, points) == [th.owner_keys(z, [P])[0] for P in points]
    assert th.owner_keys(z, []) == []
    for bad in (z + 1, z - (1 << 254), z | (1 << 255)):
        with pytest.raises(ConfigError):
            th.owner_keys(bad, points)


def test_hashed_points_lie_in_the_prime_order_subgroup() -> None:
    """H(label) is a canonical point of order L, not of small order (libsodium's check), and
    (L-1)*H is -H; one point per label."""
    points = {th.hash_point(b"%d" % i) for i in range(16)}
    assert len(points) == 16
    identity = b"\x01" + b"\x00" * 31
    for P in points:
        assert crypto_core_ed25519_is_valid_point(P)
        assert crypto_core_ed25519_add(P, th.partial(th.L - 1, P)) == identity


def test_scalars_round_trip_and_refuse_unreduced_bytes() -> None:
    s = th.random_scalar(Csprng.from_seed("s"))
    assert th.decode_scalar(th.encode_scalar(s)) == s
    with pytest.raises(ProtocolError):
        th.decode_scalar(th.L.to_bytes(32, "little"))
    with pytest.raises(ConfigError):
        th.split(1, [1, 1], 1, Csprng.from_seed("x"))


def _independent(ikm: bytes, *fields: bytes) -> bytes:
    info = b"".join(len(f).to_bytes(2, "big") + f for f in fields)
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(ikm)


def test_round_seed_and_share_key_labels_are_pinned() -> None:
    config = protocols.get("secagg+").make_config(4, 2, enrolled=True, session=b"S" * 16,
                                                  round_id=3)
    dh = bytes(range(32))
    for fn, purpose in ((round_seed, b"pair-mask"), (share_key, b"share-enc")):
        want = _independent(dh, b"secagg/v1/enrolled/" + purpose, b"S" * 16, b"3", b"0", b"1")
        assert fn(config, dh, 1, 0) == fn(config, dh, 0, 1) == want


def test_the_graph_is_a_public_function_of_session_round_and_cohort() -> None:
    spec = protocols.get("secagg+")
    a = spec.make_config(30, 2, enrolled=True, degree=6, threshold=4, session=b"A")
    cohort = tuple(range(30))
    g = round_graph(a, cohort)
    assert all(len(vs) == 6 and u not in vs for u, vs in g.items())
    assert all(u in g[v] for u, vs in g.items() for v in vs)
    assert g == round_graph(spec.make_config(30, 2, enrolled=True, degree=6, threshold=4,
                                             session=b"A"), cohort)
    other_round = spec.make_config(30, 2, enrolled=True, degree=6, threshold=4, session=b"A",
                                   round_id=1)
    assert g != round_graph(other_round, cohort)
    small = round_graph(a, (1, 5, 9, 12, 20))  # cohort below k+1: complete over the cohort
    assert all(vs == {1, 5, 9, 12, 20} - {u} for u, vs in small.items())


@given(cohort=st.sets(st.integers(0, 49), min_size=2, max_size=50), degree=st.sampled_from([2, 4, 6, 8]),
       data=st.data())
def test_a_client_reads_its_part_of_the_round_graph(cohort: set[int], degree: int,
                                                    data: st.DataObject) -> None:
    """What a client computes (its own and its neighbours' lists) is the server's graph."""
    config = protocols.get("secagg+").make_config(50, 2, enrolled=True, degree=degree,
                                                   threshold=2, session=b"G")
    members = tuple(sorted(cohort))
    whole = round_graph(config, members)
    me = data.draw(st.sampled_from(members))
    part = round_neighbourhoods(config, members, me)
    assert set(part) == {me} | whole[me]
    assert all(part[u] == whole[u] for u in part)
    with pytest.raises(ConfigError, match="not in the cohort"):
        round_neighbourhoods(config, members, 50)
