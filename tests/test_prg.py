"""secagg.prg: ChaCha20 (RFC 8439) vectors, keystream layout, and add_masks.

Three layers of evidence:

1. The vector file is checked against an independent pure-Python ChaCha20 written from the
   RFC's pseudocode (so a mistyped byte in the file shows up as a failing self-check, not as
   a "bug" in the code).
2. ``cryptography``'s ChaCha20, called the way :mod:`secagg.prg` calls it (16-byte nonce =
   4-byte little-endian counter || 12-byte nonce), reproduces every vector.
3. :func:`secagg.prg.keystream` is RFC ChaCha20 under the all-zero nonce and counter, and
   :func:`secagg.prg.add_masks` equals the sum of keystreams mod 2^b for any terms and lengths.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from hypothesis import given
from hypothesis import strategies as st
from strategies import csprngs, keys32, mask_lengths, mask_terms, ring_dtypes
from vectors import cases, unhex

from secagg import prg
from secagg.errors import ConfigError

VECTORS = "chacha20/rfc8439.json"


# -- an independent reference, from RFC 8439 section 2.3.1 -------------------------------
def _rotl(v: int, c: int) -> int:
    return ((v << c) & 0xFFFFFFFF) | (v >> (32 - c))


def _qround(s: list[int], a: int, b: int, c: int, d: int) -> None:
    s[a] = (s[a] + s[b]) & 0xFFFFFFFF
    s[d] = _rotl(s[d] ^ s[a], 16)
    s[c] = (s[c] + s[d]) & 0xFFFFFFFF
    s[b] = _rotl(s[b] ^ s[c], 12)
    s[a] = (s[a] + s[b]) & 0xFFFFFFFF
    s[d] = _rotl(s[d] ^ s[a], 8)
    s[c] = (s[c] + s[d]) & 0xFFFFFFFF
    s[b] = _rotl(s[b] ^ s[c], 7)


def ref_block(key: bytes, counter: int, nonce: bytes) -> bytes:
    """The ChaCha20 block function of RFC 8439, section 2.3."""
    state = [0x61707865, 0x3320646E, 0x79622D32, 0x6B206574]
    state += list(struct.unpack("<8L", key)) + [counter] + list(struct.unpack("<3L", nonce))
    work = state[:]
    for _ in range(10):
        _qround(work, 0, 4, 8, 12)
        _qround(work, 1, 5, 9, 13)
        _qround(work, 2, 6, 10, 14)
        _qround(work, 3, 7, 11, 15)
        _qround(work, 0, 5, 10, 15)
        _qround(work, 1, 6, 11, 12)
        _qround(work, 2, 7, 8, 13)
        _qround(work, 3, 4, 9, 14)
    return struct.pack("<16L", *((w + s) & 0xFFFFFFFF for w, s in zip(work, state)))


def ref_keystream(key: bytes, counter: int, nonce: bytes, n: int) -> bytes:
    out = b"".join(ref_block(key, counter + j, nonce) for j in range((n + 63) // 64))
    return out[:n]


def crypto_chacha20(key: bytes, counter: int, nonce: bytes, data: bytes) -> bytes:
    """``cryptography``'s ChaCha20, called as secagg.prg calls it (16-byte nonce form)."""
    full_nonce = counter.to_bytes(4, "little") + nonce
    return Cipher(algorithms.ChaCha20(key, full_nonce), mode=None).encryptor().update(data)


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


# -- 1. the vector file against the reference -----------------------------------------------
def test_reference_quarter_round_matches_rfc_2_1_1() -> None:
    s = [0x11111111, 0x01020304, 0x9B8D6F43, 0x01234567]
    _qround(s, 0, 1, 2, 3)
    assert s == [0xEA2A92F4, 0xCB1CF8CE, 0x4581472E, 0x5881C4BB]


@pytest.mark.parametrize("v", cases(VECTORS, "block"))
def test_block_vectors_agree_with_the_reference(v: dict) -> None:
    key, nonce, ks = unhex(v["key"]), unhex(v["nonce"]), unhex(v["keystream"])
    assert (len(key), len(nonce), len(ks)) == (32, 12, 64)
    assert ref_block(key, v["counter"], nonce) == ks


@pytest.mark.parametrize("v", cases(VECTORS, "encrypt"))
def test_encryption_vectors_agree_with_the_reference(v: dict) -> None:
    key, nonce = unhex(v["key"]), unhex(v["nonce"])
    pt, ct = unhex(v["plaintext"]), unhex(v["ciphertext"])
    assert len(pt) == len(ct)
    assert _xor(pt, ref_keystream(key, v["counter"], nonce, len(pt))) == ct


def test_plaintexts_are_the_rfc_texts() -> None:
    by_name = {v["name"]: unhex(v["plaintext"]) for v in (p.values[0] for p in
                                                          cases(VECTORS, "encrypt"))}
    assert by_name["2.4.2 (sunscreen)"] == (
        b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for "
        b"the future, sunscreen would be it.")
    assert len(by_name["A.2 #2"]) == 375
    assert by_name["A.2 #2"].startswith(b"Any submission to the IETF intended by the Contributor")
    assert by_name["A.2 #2"].endswith(b"which are addressed to")
    assert by_name["A.2 #3"] == (b"'Twas brillig, and the slithy toves\nDid gyre and gimble in the "
                                 b"wabe:\nAll mimsy were the borogoves,\nAnd the mome raths "
                                 b"outgrabe.")


# -- 2. cryptography's ChaCha20, in prg's calling convention --------------------------------
@pytest.mark.parametrize("v", cases(VECTORS, "block"))
def test_cryptography_chacha20_reproduces_block_vectors(v: dict) -> None:
    got = crypto_chacha20(unhex(v["key"]), v["counter"], unhex(v["nonce"]), bytes(64))
    assert got == unhex(v["keystream"])


@pytest.mark.parametrize("v", cases(VECTORS, "encrypt"))
def test_cryptography_chacha20_reproduces_encryption_vectors(v: dict) -> None:
    got = crypto_chacha20(unhex(v["key"]), v["counter"], unhex(v["nonce"]), unhex(v["plaintext"]))
    assert got == unhex(v["ciphertext"])


# -- 3. prg.keystream ---------------------------------------------------------------------
def _vector(name: str) -> dict:
    return next(p.values[0] for p in cases(VECTORS, "block") if p.values[0]["name"] == name)


@pytest.mark.parametrize("dtype", [np.uint32, np.uint64])
def test_keystream_is_rfc_a1_vector_1_and_2(dtype: type) -> None:
    """All-zero key, nonce and counter: block 0 is A.1 #1, block 1 is A.1 #2."""
    v1, v2 = _vector("A.1 #1"), _vector("A.1 #2")
    assert unhex(v1["key"]) == bytes(32) and v1["counter"] == 0
    words = 128 // np.dtype(dtype).itemsize
    ks = prg.keystream(bytes(32), words, dtype)
    assert ks.dtype == np.dtype(dtype) and ks.shape == (words,)
    raw = ks.astype(np.dtype(dtype).newbyteorder("<")).tobytes()
    assert raw[:64] == unhex(v1["keystream"])
    assert raw[64:] == unhex(v2["keystream"])


def test_keystream_words_are_little_endian() -> None:
    ks = prg.keystream(bytes(32), 2, np.uint32)
    first = unhex(_vector("A.1 #1")["keystream"])
    assert int(ks[0]) == int.from_bytes(first[0:4], "little") == 0xADE0B876
    ks64 = prg.keystream(bytes(32), 1, np.uint64)
    assert int(ks64[0]) == int.from_bytes(first[0:8], "little")


@given(key=keys32, count=st.integers(0, 40), dtype=ring_dtypes)
def test_keystream_is_chacha20_with_zero_nonce(key: bytes, count: int, dtype: np.dtype) -> None:
    want = ref_keystream(key, 0, bytes(12), count * dtype.itemsize)
    got = prg.keystream(key, count, dtype)
    assert got.astype(dtype.newbyteorder("<")).tobytes() == want


@given(key=keys32, n=st.integers(1, 64), m=st.integers(1, 64))
def test_keystream_prefixes_agree(key: bytes, n: int, m: int) -> None:
    a, b = prg.keystream(key, n), prg.keystream(key, n + m)
    assert np.array_equal(a, b[:n])


def test_keystream_rejects_bad_dtype_and_key() -> None:
    with pytest.raises(ConfigError):
        prg.keystream(bytes(32), 4, np.int32)
    with pytest.raises(ConfigError):
        prg.keystream(bytes(32), 4, np.float64)
    for size in (0, 16, 31, 33):
        with pytest.raises(ConfigError, match="32"):
            prg.keystream(bytes(size), 4)


# -- 3. prg.add_masks -----------------------------------------------------------------------
def _expected_sum(start: np.ndarray, terms: list[tuple[bytes, int]]) -> np.ndarray:
    want = start.copy()
    for key, sign in terms:
        ks = prg.keystream(key, start.size, start.dtype)
        want = want + ks if sign > 0 else want - ks  # unsigned numpy arithmetic wraps mod 2^b
    return want


@given(data=st.data(), dtype=ring_dtypes, terms=mask_terms(), rng=csprngs)
def test_add_masks_is_the_sum_of_keystreams(data: st.DataObject, dtype: np.dtype,
                                             terms: list[tuple[bytes, int]], rng) -> None:
    n = data.draw(mask_lengths(dtype), label="length")
    start = rng.fill(np.empty(n, dtype))
    acc = start.copy()
    out = prg.add_masks(acc, terms)
    assert out is acc
    assert out.dtype == dtype
    assert np.array_equal(acc, _expected_sum(start, terms))


@given(data=st.data(), dtype=ring_dtypes, terms=mask_terms(), rng=csprngs)
def test_add_then_subtract_cancels(data: st.DataObject, dtype: np.dtype,
                                   terms: list[tuple[bytes, int]], rng) -> None:
    n = data.draw(mask_lengths(dtype), label="length")
    start = rng.fill(np.empty(n, dtype))
    acc = prg.add_masks(start.copy(), terms)
    prg.add_masks(acc, [(k, -s) for k, s in terms])
    assert np.array_equal(acc, start)
    # +k and -k in the same call cancel too: the pairwise masks of SecAgg
    both = prg.add_masks(start.copy(), [t for k, s in terms for t in ((k, s), (k, -s))])
    assert np.array_equal(both, start)


@given(key=keys32, dtype=ring_dtypes)
def test_add_masks_across_chunk_boundary_matches_one_long_keystream(key: bytes,
                                                                     dtype: np.dtype) -> None:
    words = prg.CHUNK_BYTES // dtype.itemsize
    acc = prg.add_masks(np.zeros(words + 5, dtype), [(key, 1)])
    assert np.array_equal(acc, prg.keystream(key, words + 5, dtype))
    neg = prg.add_masks(np.zeros(words + 5, dtype), [(key, -1)])
    assert np.array_equal(neg + acc, np.zeros(words + 5, dtype))


def test_add_masks_without_terms_leaves_acc_unchanged() -> None:
    acc = np.arange(10, dtype=np.uint32)
    assert prg.add_masks(acc, []) is acc
    assert np.array_equal(acc, np.arange(10, dtype=np.uint32))


@pytest.mark.parametrize("acc", [
    np.zeros(8, np.int32), np.zeros(8, np.int64), np.zeros(8, np.uint16), np.zeros(8, np.float64),
    np.zeros((2, 4), np.uint32), np.zeros(16, np.uint32)[::2], np.zeros(8, ">u4"),
], ids=["int32", "int64", "uint16", "float64", "2-D", "strided", "big-endian"])
def test_add_masks_rejects_bad_accumulators(acc: np.ndarray) -> None:
    with pytest.raises(ConfigError):
        prg.add_masks(acc, [(bytes(32), 1)])


@pytest.mark.parametrize("sign", [0, 2, -2, 1.5])
def test_add_masks_rejects_bad_signs(sign: object) -> None:
    with pytest.raises(ConfigError, match="sign"):
        prg.add_masks(np.zeros(8, np.uint32), [(bytes(32), sign)])  # type: ignore[list-item]


@pytest.mark.parametrize("size", [0, 16, 31, 33, 64])
def test_add_masks_rejects_bad_key_sizes(size: int) -> None:
    with pytest.raises(ConfigError, match="32"):
        prg.add_masks(np.zeros(8, np.uint64), [(bytes(size), 1)])


@given(good=mask_terms(), bad_at=st.integers(0, 4), dtype=ring_dtypes)
def test_add_masks_validates_every_term_before_touching_acc(
        good: list[tuple[bytes, int]], bad_at: int, dtype: np.dtype) -> None:
    terms = list(good)
    terms.insert(min(bad_at, len(terms)), (bytes(31), 1))
    acc = np.arange(100, dtype=dtype)
    with pytest.raises(ConfigError):
        prg.add_masks(acc, terms)
    assert np.array_equal(acc, np.arange(100, dtype=dtype))


@pytest.mark.parametrize("term", [(bytes(32), 5), (b"short", 1)], ids=["bad-sign", "bad-key"])
def test_add_masks_validates_terms_even_for_an_empty_accumulator(term: tuple[bytes, int]) -> None:
    with pytest.raises(ConfigError):
        prg.add_masks(np.zeros(0, np.uint32), [term])
