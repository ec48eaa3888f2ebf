"""The independent checker of the project's own vectors (``tests/own_vectors.py`` makes them).

Each vector is checked twice: against the code (the code still produces it, and decodes it
back), and independently of the code:

- wire frames are rebuilt from their value trees with ``struct``, following the format the
  ``secagg.wire`` docstring documents (magic ``SG``, codec version, u16 tag, then fields:
  i64, u8 bool, f64, u32-length bytes/str, enum as i64, arrays as dtype code + u64 count +
  zero padding to an 8-byte frame offset + little-endian items, u32-count sequences, fixed
  tuples inline, a presence byte for optionals, nested dataclasses inline);
- HKDF-SHA256 is recomputed with ``hmac``/``hashlib`` (RFC 5869 extract and expand) over the
  documented label encoding (each field prefixed by its 2-byte big-endian length);
- Shamir shares are checked by Lagrange interpolation over Python integers: any t of them give
  the secret back and every share lies on the same polynomial of degree t - 1.

A vector that fails is a format change or a bug: never regenerate to make this pass without
saying which.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from own_vectors import sample_message, shipped_messages

from protocols.testing import messages_equal
from secagg import kex, shamir, wire
from secagg.rng import Csprng

VECTORS = Path(__file__).resolve().parent / "vectors"
REGENERATE = "regenerate with: python3 tests/own_vectors.py (a format change: say so)"


def _load(rel: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTORS / rel).read_text(encoding="utf-8"))
    return data


WIRE = _load("wire/frames.json")["vectors"]
KEX = _load("kex/derive_key.json")
SHAMIR = _load("shamir/splits.json")

# -- an independent encoder of the documented frame format ---------------------------------
_DTYPE_CODES = {"<u1": 1, "<u4": 2, "<u8": 3, "<i4": 4, "<i8": 5, "<f4": 6, "<f8": 7}


def _encode_tree(out: bytearray, node: dict[str, Any]) -> None:
    ((kind, value),) = node.items()
    if kind in ("int", "enum"):
        out += struct.pack("<q", value)
    elif kind == "bool":
        out += b"\x01" if value else b"\x00"
    elif kind == "float":
        out += struct.pack("<d", value)
    elif kind in ("bytes", "str"):
        raw = bytes.fromhex(value) if kind == "bytes" else value.encode("utf-8")
        out += struct.pack("<I", len(raw)) + raw
    elif kind == "array":
        out += bytes([_DTYPE_CODES[value["dtype"]]]) + struct.pack("<Q", len(value["items"]))
        out += bytes(-len(out) % 8)
        fmt = {"<u1": "B", "<u4": "I", "<u8": "Q", "<i4": "i", "<i8": "q", "<f4": "f",
               "<f8": "d"}[value["dtype"]]
        out += struct.pack("<" + fmt * len(value["items"]), *value["items"])
    elif kind == "seq":
        out += struct.pack("<I", len(value))
        for item in value:
            _encode_tree(out, item)
    elif kind == "fixed":
        for item in value:
            _encode_tree(out, item)
    elif kind == "none":
        out += b"\x00"
    elif kind == "some":
        out += b"\x01"
        _encode_tree(out, value)
    elif kind == "struct":
        for _name, item in value:
            _encode_tree(out, item)
    else:
        raise AssertionError(f"unknown node kind {kind!r}")


def _frame(tag: int, tree: dict[str, Any]) -> bytes:
    out = bytearray(b"SG" + bytes([1]) + struct.pack("<H", tag))
    _encode_tree(out, tree)
    return bytes(out)


_IDS = [f"{v['tag']:#06x}-{v['class'].rsplit('.', 1)[-1]}" for v in WIRE]


@pytest.mark.parametrize("vector", WIRE, ids=_IDS)
def test_the_frame_is_the_documented_layout_of_its_fields(vector: dict[str, Any]) -> None:
    assert _frame(vector["tag"], vector["fields"]).hex() == vector["frame"]


@pytest.mark.parametrize("vector", WIRE, ids=_IDS)
def test_the_codec_still_produces_and_reads_the_golden_frame(vector: dict[str, Any]) -> None:
    cls = wire.registered().get(vector["tag"])
    assert cls is not None, f"tag {vector['tag']:#06x} is no longer registered; {REGENERATE}"
    assert f"{cls.__module__}.{cls.__qualname__}" == vector["class"], REGENERATE
    msg, tree = sample_message(cls, vector["tag"])
    assert tree == vector["fields"], f"{cls.__name__}'s fields changed; {REGENERATE}"
    frame = bytes.fromhex(vector["frame"])
    assert wire.encode(msg) == frame
    assert messages_equal(wire.decode(frame), msg)


def test_every_shipped_message_class_has_a_golden_frame() -> None:
    pinned = {v["tag"] for v in WIRE}
    missing = {f"{t:#06x} {c.__name__}" for t, c in shipped_messages().items()
               if t not in pinned}
    assert not missing, f"no golden frame for {sorted(missing)}; {REGENERATE}"


def test_a_frame_pins_field_order() -> None:
    # The independent encoder is sensitive to order: swapping two fields changes the frame.
    vector = next(v for v in WIRE if len(v["fields"]["struct"]) >= 5)
    fields = list(vector["fields"]["struct"])
    fields[2], fields[4] = fields[4], fields[2]
    assert _frame(vector["tag"], {"struct": fields}).hex() != vector["frame"]


# -- HKDF and labels, recomputed with hmac --------------------------------------------------
def _hkdf_sha256(ikm: bytes, info: bytes, length: int = 32) -> bytes:
    prk = hmac.new(b"\x00" * 32, ikm, hashlib.sha256).digest()  # salt absent: HashLen zeros
    okm, block = b"", b""
    for i in itertools.count(1):
        if len(okm) >= length:
            return okm[:length]
        block = hmac.new(prk, block + info + bytes([i]), hashlib.sha256).digest()
        okm += block
    raise AssertionError("unreachable")


def _label(*fields: bytes) -> bytes:
    return b"".join(len(f).to_bytes(2, "big") + f for f in fields)


@pytest.mark.parametrize("case", KEX["label"], ids=lambda c: f"{len(c['fields'])}-fields")
def test_label_vectors(case: dict[str, Any]) -> None:
    fields = [bytes.fromhex(f) for f in case["fields"]]
    assert _label(*fields).hex() == case["label"]
    assert kex.label(*fields).hex() == case["label"]


@pytest.mark.parametrize("case", KEX["derive_key"], ids=lambda c: f"{c['purpose']}-{c['round']}")
def test_derive_key_vectors(case: dict[str, Any]) -> None:
    a, b = case["a"], case["b"]
    lo, hi = (a, b) if case["ordered"] else (min(a, b), max(a, b))
    info = _label(b"secagg/v1/" + case["purpose"].encode(), bytes.fromhex(case["session"]),
                  str(case["round"]).encode(), str(lo).encode(), str(hi).encode())
    shared = bytes.fromhex(case["shared"])
    assert _hkdf_sha256(shared, info).hex() == case["key"]
    got = kex.derive_key(shared, case["purpose"], bytes.fromhex(case["session"]),
                         case["round"], a, b, ordered=case["ordered"])
    assert got.hex() == case["key"]


def test_ordered_pairs_give_different_keys() -> None:
    plain, ordered = (c for c in KEX["derive_key"][1:3])
    assert plain["key"] != ordered["key"]


# -- Shamir, checked by interpolation over Python ints --------------------------------------
_P = 2**256 + 297  # the field of secagg.shamir, written out independently


def _interpolate(points: list[tuple[int, int]], at: int) -> int:
    total = 0
    for j, (xj, yj) in enumerate(points):
        num = den = 1
        for m, (xm, _) in enumerate(points):
            if m != j:
                num = num * (at - xm) % _P
                den = den * (xj - xm) % _P
        total = (total + yj * num * pow(den, _P - 2, _P)) % _P
    return total


def _check_shares(secret: int, xs: list[int], t: int, shares: list[int]) -> None:
    points = list(zip(xs, shares))
    for subset in itertools.combinations(points, t):
        assert _interpolate(list(subset), 0) == secret
    for x, y in points[t:]:  # every share lies on the polynomial of the first t
        assert _interpolate(points[:t], x) == y


@pytest.mark.parametrize("case", SHAMIR["split"], ids=lambda c: c["seed"])
def test_shamir_split_vectors(case: dict[str, Any]) -> None:
    shares = [int(s) for s in case["shares"]]
    _check_shares(case["secret"], case["xs"], case["t"], shares)
    got = shamir.split(case["secret"], case["xs"], case["t"], Csprng.from_seed(case["seed"]))
    assert got == shares
    if case["t"] > 1:
        assert len(set(shares)) == len(shares)  # a random polynomial, not the constant


@pytest.mark.parametrize("case", SHAMIR["split_bytes"], ids=lambda c: c["seed"])
def test_shamir_split_bytes_vectors(case: dict[str, Any]) -> None:
    raw = [bytes.fromhex(s) for s in case["shares"]]
    assert all(len(s) == 33 for s in raw)
    secret = int.from_bytes(bytes.fromhex(case["secret"]), "big")
    _check_shares(secret, case["xs"], case["t"], [int.from_bytes(s, "big") for s in raw])
    got = shamir.split_bytes(bytes.fromhex(case["secret"]), case["xs"], case["t"],
                             Csprng.from_seed(case["seed"]))
    assert got == raw


def test_the_checker_is_not_vacuous() -> None:
    assert len(WIRE) >= 15 and np.all([v["frame"].startswith("534701") for v in WIRE])
