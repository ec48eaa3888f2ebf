"""secagg.kex (X25519, HKDF-SHA256, labelled key derivation) and secagg.aead (XChaCha20-Poly1305
with random nonces; AES-256-GCM-SIV under a fixed one).

RFC vectors first (HKDF RFC 5869, X25519 RFC 7748), each vector file also checked against an
independent stdlib / pure-Python reference so that a mistyped byte is caught as such; then
the properties the protocols rely on: symmetric agreement, refusal of low-order keys, keys
that differ by every label field, and authenticated encryption that rejects any change.
"""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given, note
from hypothesis import strategies as st
from strategies import csprngs, keys32, party_ids, purposes, round_ids, sessions
from vectors import cases, load, unhex

from secagg import aead, kex
from secagg.errors import ConfigError, ProtocolError
from secagg.kex import KeyPair
from secagg.rng import Csprng

HKDF_VECTORS = "hkdf/rfc5869.json"
X25519_VECTORS = "x25519/rfc7748.json"


# -- independent references ---------------------------------------------------------------
def ref_hkdf(ikm: bytes, salt: bytes, info: bytes, length: int) -> tuple[bytes, bytes]:
    """RFC 5869 section 2 with the stdlib's HMAC: (PRK, OKM)."""
    prk = hmac.new(salt or bytes(32), ikm, hashlib.sha256).digest()
    okm, block = b"", b""
    for i in range(1, -(-length // 32) + 1):
        block = hmac.new(prk, block + info + bytes([i]), hashlib.sha256).digest()
        okm += block
    return prk, okm[:length]


_P = 2**255 - 19


def ref_x25519(k: bytes, u: bytes) -> bytes:
    """X25519 from RFC 7748 section 5 (Montgomery ladder, a24 = 121665)."""
    kb = bytearray(k)
    kb[0] &= 248
    kb[31] &= 127
    kb[31] |= 64
    scalar = int.from_bytes(kb, "little")
    ub = bytearray(u)
    ub[31] &= 127
    x1 = int.from_bytes(ub, "little") % _P
    x2, z2, x3, z3, swap = 1, 0, x1, 1, 0
    for t in reversed(range(255)):
        bit = (scalar >> t) & 1
        swap ^= bit
        if swap:
            x2, x3, z2, z3 = x3, x2, z3, z2
        swap = bit
        a, b = x2 + z2, x2 - z2
        aa, bb = a * a % _P, b * b % _P
        e = (aa - bb) % _P
        c, d = x3 + z3, x3 - z3
        da, cb = d * a % _P, c * b % _P
        x3, z3 = (da + cb) ** 2 % _P, x1 * (da - cb) ** 2 % _P
        x2, z2 = aa * bb % _P, e * (aa + 121665 * e) % _P
    if swap:
        x2, z2 = x3, z3
    return (x2 * pow(z2, _P - 2, _P) % _P).to_bytes(32, "little")


# -- HKDF, RFC 5869 ---------------------------------------------------------------------------
@pytest.mark.parametrize("v", cases(HKDF_VECTORS, "vectors"))
def test_hkdf_vectors_agree_with_the_stdlib_reference(v: dict) -> None:
    prk, okm = ref_hkdf(unhex(v["ikm"]), unhex(v["salt"]), unhex(v["info"]), v["length"])
    assert prk == unhex(v["prk"])
    assert okm == unhex(v["okm"])
    assert len(okm) == v["length"]


@pytest.mark.parametrize("v", cases(HKDF_VECTORS, "vectors"))
def test_hkdf_matches_rfc5869(v: dict) -> None:
    salt = unhex(v["salt"])
    got = kex.hkdf(unhex(v["ikm"]), unhex(v["info"]), length=v["length"], salt=salt)
    assert got == unhex(v["okm"])
    if not salt:  # "salt not provided" is HashLen zero bytes, the same as salt=None
        assert kex.hkdf(unhex(v["ikm"]), unhex(v["info"]), length=v["length"]) == got


# -- X25519, RFC 7748 -------------------------------------------------------------------------
@pytest.mark.parametrize("v", cases(X25519_VECTORS, "scalarmult"))
def test_x25519_vectors_agree_with_the_reference(v: dict) -> None:
    assert ref_x25519(unhex(v["scalar"]), unhex(v["u"])) == unhex(v["output"])


@pytest.mark.parametrize("v", cases(X25519_VECTORS, "scalarmult"))
def test_agree_matches_rfc7748_section_5_2(v: dict) -> None:
    assert kex.agree(unhex(v["scalar"]), unhex(v["u"])) == unhex(v["output"])


def test_agree_matches_rfc7748_iterated_vectors() -> None:
    it = load(X25519_VECTORS)["iterated"]
    k = u = unhex(it["start"])
    want = {a["iterations"]: unhex(a["k"]) for a in it["after"]}
    assert ref_x25519(k, u) == want[1]
    for i in range(1, max(want) + 1):
        k, u = kex.agree(k, u), k
        if i in want:
            assert k == want[i], f"after {i} iterations"


def test_dh_vector_agrees_with_the_reference() -> None:
    dh = load(X25519_VECTORS)["dh"]
    base = (9).to_bytes(32, "little")
    assert ref_x25519(unhex(dh["alice_private"]), base) == unhex(dh["alice_public"])
    assert ref_x25519(unhex(dh["bob_private"]), base) == unhex(dh["bob_public"])
    assert ref_x25519(unhex(dh["alice_private"]), unhex(dh["bob_public"])) == unhex(dh["shared"])


def test_keypairs_and_agreement_match_rfc7748_section_6_1() -> None:
    dh = load(X25519_VECTORS)["dh"]
    alice = KeyPair.from_secret(unhex(dh["alice_private"]))
    bob = KeyPair.from_secret(unhex(dh["bob_private"]))
    assert alice.public == unhex(dh["alice_public"])
    assert bob.public == unhex(dh["bob_public"])
    assert kex.agree(alice.secret, bob.public) == unhex(dh["shared"])
    assert kex.agree(bob.secret, alice.public) == unhex(dh["shared"])


# -- agreement properties -----------------------------------------------------------------
@given(a=keys32, b=keys32)
def test_agreement_is_symmetric(a: bytes, b: bytes) -> None:
    ka, kb = KeyPair.from_secret(a), KeyPair.from_secret(b)
    assert len(ka.public) == kex.PUBLIC_KEY_SIZE
    assert kex.agree(ka.secret, kb.public) == kex.agree(kb.secret, ka.public)


@given(rng=csprngs)
def test_generated_pairs_are_fresh_and_agree(rng: Csprng) -> None:
    a, b = KeyPair.generate(rng), KeyPair.generate(rng)
    assert a.public != b.public
    assert kex.agree(a.secret, b.public) == kex.agree(b.secret, a.public)


def test_repr_never_shows_the_secret() -> None:
    pair = KeyPair.from_secret(bytes(range(32)))
    text = repr(pair)
    assert pair.secret.hex() not in text and pair.secret.hex()[:16] not in text
    assert "KeyPair" in text


# Points of small order on Curve25519 and its twist (u = 0, 1, the two order-8 points,
# p - 1, and the non-canonical encodings p and p + 1). The test checks each against the
# reference ladder too, so a mistyped point cannot pass as a "low-order" one by accident.
LOW_ORDER_POINTS = [
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0100000000000000000000000000000000000000000000000000000000000000",
    "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
    "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
]


@pytest.mark.parametrize("point", LOW_ORDER_POINTS)
def test_low_order_public_keys_are_refused(point: str) -> None:
    secret = Csprng.from_seed(point).bytes(32)
    assert ref_x25519(secret, unhex(point)) == bytes(32)  # really of low order
    with pytest.raises(ProtocolError, match="low-order"):
        kex.agree(secret, unhex(point))


@pytest.mark.parametrize("size", [0, 31, 33, 64])
def test_public_key_of_the_wrong_size_is_a_protocol_error(size: int) -> None:
    with pytest.raises(ProtocolError, match="32"):
        kex.agree(bytes(range(32)), bytes(range(size)))


@pytest.mark.parametrize("size", [0, 31, 33])
def test_secret_key_of_the_wrong_size_is_a_config_error(size: int) -> None:
    peer = KeyPair.from_secret(bytes(range(32))).public
    with pytest.raises(ConfigError, match="32"):
        kex.agree(bytes(size), peer)
    with pytest.raises(ConfigError, match="32"):
        KeyPair.from_secret(bytes(size))


# -- labelled derivation ------------------------------------------------------------------
_FIELDS = ("shared", "purpose", "session", "round_id", "a", "b")


@st.composite
def _labels(draw: st.DrawFn) -> dict:
    return {"shared": draw(keys32), "purpose": draw(purposes), "session": draw(sessions),
            "round_id": draw(round_ids), "a": draw(party_ids), "b": draw(party_ids)}


@st.composite
def _changed(draw: st.DrawFn, base: dict) -> tuple[str, dict]:
    """``base`` with one field changed to a different value (a changed party id never gives
    the same unordered pair back: {a + d, b} = {a, b} would need a = b = a + d)."""
    field = draw(st.sampled_from(_FIELDS))
    other = dict(base)
    if field == "shared":
        flip = draw(st.integers(1, 255))
        other["shared"] = bytes([base["shared"][0] ^ flip]) + base["shared"][1:]
    elif field == "purpose":
        other["purpose"] = base["purpose"] + draw(st.sampled_from("abz-9"))
    elif field == "session":
        other["session"] = base["session"] + draw(st.binary(min_size=1, max_size=3))
    else:
        other[field] = base[field] + draw(st.integers(1, 2**31))
    return field, other


@given(base=_labels(), data=st.data())
def test_derived_keys_differ_by_every_label_field(base: dict, data: st.DataObject) -> None:
    field, other = data.draw(_changed(base), label="changed")
    note(f"changed {field}")
    k1, k2 = kex.derive_key(**base), kex.derive_key(**other)
    assert len(k1) == len(k2) == 32
    assert k1 != k2


@given(base=_labels())
def test_derived_keys_are_deterministic_and_symmetric_in_the_pair(base: dict) -> None:
    swapped = dict(base, a=base["b"], b=base["a"])
    assert kex.derive_key(**base) == kex.derive_key(**base)
    assert kex.derive_key(**base) == kex.derive_key(**swapped)
    if base["a"] != base["b"]:
        assert kex.derive_key(**base, ordered=True) != kex.derive_key(**swapped, ordered=True)


def test_derive_key_labels_are_unambiguous() -> None:
    k1 = kex.derive_key(bytes(32), "mask|x", b"s", 1, 2, 3)
    k2 = kex.derive_key(bytes(32), "mask", b"x|s", 1, 2, 3)
    assert k1 != k2


# -- AEAD -------------------------------------------------------------------------------------
# Both framings: (seal(key, pt, ad, rng), open_(key, sealed, ad), nonce bytes on the wire).
_FRAMINGS = {
    "xchacha-random-nonce": (aead.seal, aead.open_, aead.NONCE_SIZE),
    "gcm-siv-deterministic": (lambda key, pt, ad, rng: aead.seal_deterministic(key, pt, ad),
                              aead.open_deterministic, 0),
}
framings = pytest.mark.parametrize("framing", sorted(_FRAMINGS))


@st.composite
def _sealed(draw: st.DrawFn, framing: str) -> tuple[bytes, bytes, bytes, bytes]:
    key = draw(keys32)
    pt = draw(st.binary(max_size=200))
    ad = aead.associated_data(draw(st.sampled_from(["secagg", "secagg+"])), 1, draw(sessions),
                              draw(round_ids), draw(party_ids), draw(party_ids))
    return key, pt, ad, _FRAMINGS[framing][0](key, pt, ad, draw(csprngs))


@framings
@given(data=st.data())
def test_seal_open_round_trip(framing: str, data: st.DataObject) -> None:
    key, pt, ad, sealed = data.draw(_sealed(framing))
    _, open_, nonce = _FRAMINGS[framing]
    assert len(sealed) == nonce + len(pt) + aead.TAG_SIZE
    assert open_(key, sealed, ad) == pt


@given(key=keys32, pt=st.binary(max_size=64), rng=csprngs)
def test_nonces_are_fresh(key: bytes, pt: bytes, rng: Csprng) -> None:
    a, b = aead.seal(key, pt, b"ad", rng), aead.seal(key, pt, b"ad", rng)
    assert a[: aead.NONCE_SIZE] != b[: aead.NONCE_SIZE] and a != b


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


@given(key=keys32, pt=st.binary(min_size=16, max_size=64), ad=st.binary(max_size=32),
       data=st.data())
def test_deterministic_framing_reveals_only_equality(key: bytes, pt: bytes, ad: bytes,
                                                     data: st.DataObject) -> None:
    """Under one key and the fixed nonce, equal inputs seal alike; another plaintext or other
    associated data gets a new synthetic IV, so no keystream is reused (the two directions
    of a pair, or a message resent with fresh shares, are safe under one key)."""
    a = aead.seal_deterministic(key, pt, ad)
    assert aead.seal_deterministic(key, pt, ad) == a
    other = data.draw(st.binary(min_size=len(pt), max_size=len(pt)).filter(lambda o: o != pt))
    for b, q in ((aead.seal_deterministic(key, pt, ad + b"x"), pt),
                 (aead.seal_deterministic(key, other, ad), other)):
        # one keystream under both would make the bodies' XOR the plaintexts' XOR
        assert _xor(a[:-aead.TAG_SIZE], b[:-aead.TAG_SIZE]) != _xor(pt, q)
        assert a[-aead.TAG_SIZE:] != b[-aead.TAG_SIZE:]


@pytest.mark.parametrize(("plaintext", "sealed"), [
    ("", "07f5f4169bbf55a8400cd47ea6fd400f"),
    ("0100000000000000", "c2ef328e5c71c83b843122130f7364b761e0b97427e3df28"),
])
def test_gcm_siv_is_rfc_8452(plaintext: str, sealed: str) -> None:
    """The library under seal_deterministic is AES-256-GCM-SIV as RFC 8452 defines it
    (appendix C.2, key 01 00.., nonce 03 00.., no associated data)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCMSIV

    key, nonce = bytes.fromhex("01" + "00" * 31), bytes.fromhex("03" + "00" * 11)
    assert AESGCMSIV(key).encrypt(nonce, bytes.fromhex(plaintext), b"").hex() == sealed


def test_deterministic_framing_known_answer() -> None:
    """The wire format of a deterministic seal, pinned: AES-256-GCM-SIV, all-zero 12-byte
    nonce, ciphertext then tag (a change here breaks every deployed node)."""
    key = bytes(range(32))
    sealed = aead.seal_deterministic(key, b"share of a secret", b"ad")
    assert sealed.hex() == ("c2794f253c9a0468456c4c13bc6db069acbf2cebb7d254eb0fd9b9dd2dc293ed69")


@framings
@given(data=st.data())
def test_any_flipped_bit_is_rejected(framing: str, data: st.DataObject) -> None:
    key, _, ad, sealed = data.draw(_sealed(framing))
    pos = data.draw(st.integers(0, len(sealed) - 1), label="byte")
    bit = data.draw(st.integers(0, 7), label="bit")
    forged = bytearray(sealed)
    forged[pos] ^= 1 << bit
    with pytest.raises(ProtocolError):
        _FRAMINGS[framing][1](key, bytes(forged), ad)


@framings
@given(data=st.data())
def test_truncated_ciphertext_is_rejected(framing: str, data: st.DataObject) -> None:
    key, _, ad, sealed = data.draw(_sealed(framing))
    cut = data.draw(st.integers(0, len(sealed) - 1), label="keep")
    with pytest.raises(ProtocolError):
        _FRAMINGS[framing][1](key, sealed[:cut], ad)


@framings
@given(data=st.data(), extra=st.binary(min_size=1, max_size=8))
def test_wrong_associated_data_is_rejected(framing: str, data: st.DataObject, extra: bytes) -> None:
    key, _, ad, sealed = data.draw(_sealed(framing))
    for wrong in (ad + extra, extra + ad, ad[:-1], b""):
        with pytest.raises(ProtocolError):
            _FRAMINGS[framing][1](key, sealed, wrong)


@framings
@given(data=st.data(), flip=st.integers(1, 255), at=st.integers(0, 31))
def test_wrong_key_is_rejected(framing: str, data: st.DataObject, flip: int, at: int) -> None:
    key, _, ad, sealed = data.draw(_sealed(framing))
    wrong = bytearray(key)
    wrong[at] ^= flip
    with pytest.raises(ProtocolError):
        _FRAMINGS[framing][1](bytes(wrong), sealed, ad)


def test_associated_data_binds_every_field() -> None:
    base = ("secagg", 1, b"session", 3, 4, 5)
    ads = {aead.associated_data(*base)}
    for i, changed in enumerate([("secagg+",), (2,), (b"other",), (30,), (40,), (50,)]):
        args = list(base)
        args[i] = changed[0]
        ads.add(aead.associated_data(*args))
    ads.add(aead.associated_data("secagg", 1, b"session", 3, 5, 4))  # direction matters
    assert len(ads) == 8


@framings
@pytest.mark.parametrize("size", [0, 16, 31, 33])
def test_aead_key_of_the_wrong_size_is_a_config_error(framing: str, size: int) -> None:
    seal, open_, _ = _FRAMINGS[framing]
    rng = Csprng.from_seed(0)
    with pytest.raises(ConfigError, match="32"):
        seal(bytes(size), b"x", b"", rng)
    sealed = seal(bytes(32), b"x", b"", rng)
    with pytest.raises(ConfigError, match="32"):
        open_(bytes(size), sealed, b"")
