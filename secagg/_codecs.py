"""The field codecs behind :mod:`secagg.wire`, compiled once per message class from its
type annotations (the layout table is in :mod:`secagg.wire`'s docstring).

Every decoder checks each length against the bytes that remain before it allocates, and
raises only :class:`DecodeError`; every encoder raises :class:`UsageError` for a value of the
wrong type or range.
"""

from __future__ import annotations

import array
import dataclasses
import enum
import operator
import struct
import sys
import types
import typing
from collections.abc import Callable
from itertools import repeat
from typing import Any

import numpy as np

from secagg.errors import ConfigError, DecodeError, SecAggError, UsageError

__all__ = ["Dec", "Enc", "Frame", "compile_struct"]

Enc = Callable[[bytearray, Any], None]
Dec = Callable[[memoryview, int], tuple[Any, int]]

_DTYPES: dict[int, np.dtype] = {
    1: np.dtype("<u1"), 2: np.dtype("<u4"), 3: np.dtype("<u8"), 4: np.dtype("<i4"),
    5: np.dtype("<i8"), 6: np.dtype("<f4"), 7: np.dtype("<f8"),
}
_DTYPE_CODES = {dt.newbyteorder("="): code for code, dt in _DTYPES.items()}

_I64 = struct.Struct("<q")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_F64 = struct.Struct("<d")


#: a payload at least this long is kept by reference while a frame is encoded
LARGE_PAYLOAD = 1 << 16


class Frame(bytearray):
    """A frame being encoded: fields are appended, but a large payload (an array, a long
    byte string) is kept by reference in :attr:`parts` and the whole is
    joined once (:meth:`finish`), so the payload is copied once. Growing one bytearray by a
    payload and then copying it into ``bytes`` cost two fresh allocations of the payload's
    size and their page faults: 7.8 ms for 4 MB here, against 0.2 ms joined."""

    __slots__ = ("base", "parts")

    def __init__(self, head: bytes = b"") -> None:
        super().__init__(head)
        self.base = 0  # bytes already moved to parts
        self.parts: list[bytes | bytearray | memoryview] = []

    def finish(self) -> bytes:
        """The encoded frame."""
        if not self.parts:
            return bytes(self)
        return b"".join((*self.parts, self))


def _put(out: bytearray, chunk: bytes | bytearray | memoryview) -> None:
    """Append ``chunk``; a large one to a :class:`Frame` by reference."""
    if len(chunk) >= LARGE_PAYLOAD and isinstance(out, Frame):
        out.parts.append(bytes(out))
        out.parts.append(chunk)
        out.base += len(out) + len(chunk)
        del out[:]
    else:
        out += chunk


def _offset(out: bytearray) -> int:
    """How many bytes have been encoded into ``out``."""
    return out.base + len(out) if isinstance(out, Frame) else len(out)


def _need(buf: memoryview, pos: int, n: int, what: str) -> None:
    if n < 0 or pos + n > len(buf):
        raise DecodeError(f"truncated frame: {what} needs {n} bytes at offset {pos}, "
                          f"{len(buf) - pos} remain")


def _count(buf: memoryview, pos: int, item_bytes: int, what: str) -> tuple[int, int]:
    """A sequence's u32 count at ``pos``, checked against the bytes that remain for that
    many items of at least ``item_bytes`` each; returns (count, position after it)."""
    _need(buf, pos, 4, "count")
    n: int = _U32.unpack_from(buf, pos)[0]
    _need(buf, pos + 4, item_bytes * n, f"{n} {what}")
    return n, pos + 4


# -- scalar codecs ---------------------------------------------------------------------
def _enc_int(out: bytearray, v: Any) -> None:
    if isinstance(v, bool) or not isinstance(v, int):
        raise UsageError(f"expected int, got {type(v).__name__}")
    if not -(2**63) <= v < 2**63:
        raise UsageError(f"int {v} does not fit in 64 bits; send it as bytes")
    out += _I64.pack(v)


def _dec_int(buf: memoryview, pos: int) -> tuple[Any, int]:
    _need(buf, pos, 8, "int")
    return _I64.unpack_from(buf, pos)[0], pos + 8


def _enc_bool(out: bytearray, v: Any) -> None:
    if not isinstance(v, bool):
        raise UsageError(f"expected bool, got {type(v).__name__}")
    out.append(1 if v else 0)


def _dec_bool(buf: memoryview, pos: int) -> tuple[Any, int]:
    _need(buf, pos, 1, "bool")
    b = buf[pos]
    if b > 1:
        raise DecodeError(f"non-canonical bool byte {b} at offset {pos}")
    return bool(b), pos + 1


def _enc_float(out: bytearray, v: Any) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise UsageError(f"expected float, got {type(v).__name__}")
    try:
        out += _F64.pack(float(v))
    except OverflowError:
        raise UsageError(f"{v!r} does not fit a float64") from None


def _dec_float(buf: memoryview, pos: int) -> tuple[Any, int]:
    _need(buf, pos, 8, "float")
    return _F64.unpack_from(buf, pos)[0], pos + 8


def _enc_bytes(out: bytearray, v: Any) -> None:
    if not isinstance(v, (bytes, bytearray)):
        raise UsageError(f"expected bytes, got {type(v).__name__}")
    out += _U32.pack(len(v))
    _put(out, v)


def _dec_bytes(buf: memoryview, pos: int) -> tuple[Any, int]:
    _need(buf, pos, 4, "length")
    n = _U32.unpack_from(buf, pos)[0]
    pos += 4
    _need(buf, pos, n, "bytes")
    return bytes(buf[pos : pos + n]), pos + n


def _enc_str(out: bytearray, v: Any) -> None:
    if not isinstance(v, str):
        raise UsageError(f"expected str, got {type(v).__name__}")
    try:
        _enc_bytes(out, v.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise UsageError(f"string is not valid UTF-8: {exc.reason}") from None


def _dec_str(buf: memoryview, pos: int) -> tuple[Any, int]:
    raw, pos = _dec_bytes(buf, pos)
    try:
        return raw.decode("utf-8"), pos
    except UnicodeDecodeError as exc:
        raise DecodeError(f"invalid UTF-8 in string field: {exc.reason}") from None


def _enc_array(out: bytearray, v: Any) -> None:
    if not isinstance(v, np.ndarray) or v.ndim != 1:
        raise UsageError("expected a 1-D numpy array")
    code = _DTYPE_CODES.get(v.dtype.newbyteorder("="))
    if code is None:
        raise UsageError(f"dtype {v.dtype} cannot travel; use one of "
                         + ", ".join(str(d) for d in _DTYPES.values()))
    out.append(code)
    out += _U64.pack(v.size)
    out += bytes(-_offset(out) % 8)
    le = v.astype(_DTYPES[code], copy=False)
    _put(out, memoryview(np.ascontiguousarray(le).view(np.uint8)))  # type: ignore[arg-type]


def _dec_array(buf: memoryview, pos: int) -> tuple[Any, int]:
    _need(buf, pos, 9, "array header")
    code = buf[pos]
    dt = _DTYPES.get(code)
    if dt is None:
        raise DecodeError(f"unknown array dtype code {code} at offset {pos}")
    count = _U64.unpack_from(buf, pos + 1)[0]
    pos += 9
    pad = -pos % 8
    _need(buf, pos, pad, "padding")
    if any(buf[pos : pos + pad]):
        raise DecodeError("non-zero array padding")
    pos += pad
    nbytes = count * dt.itemsize
    _need(buf, pos, nbytes, f"array of {count} {dt}")
    arr = np.frombuffer(buf, dtype=dt, count=count, offset=pos)
    if sys.byteorder != "little":  # pragma: no cover - big-endian hosts
        arr = arr.astype(dt.newbyteorder("="))
    return arr, pos + nbytes


_SCALARS: dict[Any, tuple[Enc, Dec]] = {
    int: (_enc_int, _dec_int),
    bool: (_enc_bool, _dec_bool),
    float: (_enc_float, _dec_float),
    bytes: (_enc_bytes, _dec_bytes),
    str: (_enc_str, _dec_str),
    np.ndarray: (_enc_array, _dec_array),
}


# -- compound codecs -------------------------------------------------------------------
def _compile(tp: Any) -> tuple[Enc, Dec]:
    if tp in _SCALARS:
        return _SCALARS[tp]
    origin = typing.get_origin(tp)
    if origin is np.ndarray:
        return _SCALARS[np.ndarray]
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return _compile_enum(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        inner = [a for a in args if a is not type(None)]
        if len(args) == 2 and len(inner) == 1:
            return _compile_optional(inner[0])
        raise ConfigError(f"wire: only 'X | None' unions are supported, got {tp}")
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return _compile_seq(args[0])
        return _compile_fixed(args)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return compile_struct(tp)
    raise ConfigError(f"wire: unsupported field type {tp!r}")


def _compile_enum(cls: type[enum.Enum]) -> tuple[Enc, Dec]:
    members = {m.value: m for m in cls}

    def enc(out: bytearray, v: Any) -> None:
        if not isinstance(v, cls):
            raise UsageError(f"expected {cls.__name__}, got {type(v).__name__}")
        _enc_int(out, v.value)

    def dec(buf: memoryview, pos: int) -> tuple[Any, int]:
        raw, pos = _dec_int(buf, pos)
        if raw not in members:
            raise DecodeError(f"{raw} is not a valid {cls.__name__}")
        return members[raw], pos

    return enc, dec


def _compile_optional(tp: Any) -> tuple[Enc, Dec]:
    ienc, idec = _compile(tp)

    def enc(out: bytearray, v: Any) -> None:
        if v is None:
            out.append(0)
        else:
            out.append(1)
            ienc(out, v)

    def dec(buf: memoryview, pos: int) -> tuple[Any, int]:
        present, pos = _dec_bool(buf, pos)
        return idec(buf, pos) if present else (None, pos)

    return enc, dec


def _compile_seq(tp: Any) -> tuple[Enc, Dec]:
    if tp is int:
        return _enc_ints, _dec_ints
    ienc, idec = _compile(tp)

    def enc(out: bytearray, v: Any) -> None:
        if not isinstance(v, tuple):
            raise UsageError(f"expected tuple, got {type(v).__name__}")
        out += _U32.pack(len(v))
        for item in v:
            ienc(out, item)

    def dec(buf: memoryview, pos: int) -> tuple[Any, int]:
        n, pos = _count(buf, pos, 1, "items")  # every item takes at least one byte
        items = []
        for _ in range(n):
            item, pos = idec(buf, pos)
            items.append(item)
        return tuple(items), pos

    is_int = _flat_fields(tp)
    if is_int is not None:
        return _flat_seq(tp, is_int, ienc, dec)
    return enc, dec


_MEMO_FROM = 256  # ints in a tuple worth remembering the bytes of (a roster, not k peers)
_last_ints: list[tuple[object, bytes]] = [(object(), b"")]  # (last long tuple, its bytes)


def _enc_ints(out: bytearray, v: Any) -> None:
    """``tuple[int, ...]`` (peer and survivor lists, a roster's clients): the general
    layout, u32 count then each int as i64, written by one ``array`` pass when every item
    is a plain int in range; otherwise item by item, which raises the item's error.

    Encoding the same long tuple object again reuses its bytes: the server sends one
    roster to each of n clients, and checking n ints n times is O(n^2). Safe because a
    tuple of ints is immutable; only the last tuple of at least _MEMO_FROM items is kept.
    """
    if not isinstance(v, tuple):
        raise UsageError(f"expected tuple, got {type(v).__name__}")
    last, data = _last_ints[0]
    if v is last:
        _put(out, data)
        return
    if v and set(map(type, v)) == {int}:
        try:
            packed = array.array("q", v)
        except OverflowError:
            pass
        else:
            if sys.byteorder != "little":  # pragma: no cover - big-endian hosts
                packed.byteswap()
            data = _U32.pack(len(v)) + packed.tobytes()
            if len(v) >= _MEMO_FROM:
                _last_ints[0] = (v, data)
            _put(out, data)
            return
    out += _U32.pack(len(v))
    for item in v:
        _enc_int(out, item)


def _dec_ints(buf: memoryview, pos: int) -> tuple[Any, int]:
    n, pos = _count(buf, pos, 8, "ints")
    items = array.array("q")
    items.frombytes(buf[pos:pos + 8 * n])
    if sys.byteorder != "little":  # pragma: no cover - big-endian hosts
        items.byteswap()
    return tuple(items), pos + 8 * n


def _compile_fixed(args: tuple[Any, ...]) -> tuple[Enc, Dec]:
    codecs = [_compile(a) for a in args]

    def enc(out: bytearray, v: Any) -> None:
        if not isinstance(v, tuple) or len(v) != len(codecs):
            raise UsageError(f"expected a tuple of {len(codecs)} items")
        for (ienc, _), item in zip(codecs, v):
            ienc(out, item)

    def dec(buf: memoryview, pos: int) -> tuple[Any, int]:
        items = []
        for _, idec in codecs:
            item, pos = idec(buf, pos)
            items.append(item)
        return tuple(items), pos

    return enc, dec


def compile_struct(cls: type) -> tuple[Enc, Dec]:
    hints = typing.get_type_hints(cls)
    fields = [f for f in dataclasses.fields(cls) if f.init]
    codecs = [(f.name, *_compile(hints[f.name])) for f in fields]

    def enc(out: bytearray, v: Any) -> None:
        if type(v) is not cls:
            raise UsageError(f"expected {cls.__name__}, got {type(v).__name__}")
        for name, fenc, _ in codecs:
            try:
                fenc(out, getattr(v, name))
            except UsageError as exc:
                raise UsageError(f"{cls.__name__}.{name}: {exc}") from None

    is_int = _flat_fields(cls)
    if is_int is not None:
        return enc, _flat_struct_dec(cls, is_int)

    def dec(buf: memoryview, pos: int) -> tuple[Any, int]:
        kwargs = {}
        for name, _, fdec in codecs:
            kwargs[name], pos = fdec(buf, pos)
        try:
            return cls(**kwargs), pos
        except (TypeError, ValueError, SecAggError) as exc:  # a rejecting __post_init__
            raise DecodeError(f"{cls.__name__}: {exc}") from None

    return enc, dec


# -- records: dataclasses of int and bytes fields only ---------------------------------
def _flat_fields(tp: Any) -> tuple[bool, ...] | None:
    """For a dataclass whose fields are all ``int`` or ``bytes``: whether each is an int."""
    if not (isinstance(tp, type) and dataclasses.is_dataclass(tp)):
        return None
    hints = typing.get_type_hints(tp)
    kinds = [hints[f.name] for f in dataclasses.fields(tp) if f.init]
    if kinds and all(k is int or k is bytes for k in kinds):
        return tuple(k is int for k in kinds)
    return None


def _flat_struct_dec(cls: type, is_int: tuple[bool, ...]) -> Dec:
    """The general decoder of such a record with its field codecs inlined: the same layout
    and checks, one call a record."""
    unpack_i64, unpack_u32 = _I64.unpack_from, _U32.unpack_from

    def dec(buf: memoryview, pos: int) -> tuple[Any, int]:
        end = len(buf)
        values: list[Any] = []
        for an_int in is_int:
            if an_int:
                if pos + 8 > end:
                    _need(buf, pos, 8, "int")
                values.append(unpack_i64(buf, pos)[0])
                pos += 8
                continue
            if pos + 4 > end:
                _need(buf, pos, 4, "length")
            n = unpack_u32(buf, pos)[0]
            pos += 4
            if pos + n > end:
                _need(buf, pos, n, "bytes")
            values.append(bytes(buf[pos:pos + n]))
            pos += n
        return _construct(cls, values), pos

    return dec


def _construct(cls: type, values: Any) -> Any:
    try:
        return cls(*values)
    except (TypeError, ValueError, SecAggError) as exc:  # a rejecting __post_init__
        raise DecodeError(f"{cls.__name__}: {exc}") from None


_LAYOUTS_KEPT = 64  # distinct record layouts whose struct is kept (a peer picks lengths)


def _flat_seq(cls: type, is_int: tuple[bool, ...], ienc: Enc, general: Dec) -> tuple[Enc, Dec]:
    """``tuple[cls, ...]`` for such records, in the general layout, with a shortcut: when
    every record has the first one's byte lengths (the usual case: fixed-size keys and
    commitments), encoding checks the records a column at a time and packs each with one
    ``struct``, and decoding reads them all in one ``struct.iter_unpack`` and checks those
    lengths; otherwise both go record by record through the general codec. Both read the
    same bytes the same way, since each record starts where the one before it ended.
    (Messages that carry n records to each of n parties hold them as columns instead, e.g.
    a roster: no codec builds an object per record then.)
    """
    layouts: dict[tuple[int, ...], tuple[struct.Struct, list[int], list[int]]] = {}
    names = [(f.name, an_int) for f, an_int in
             zip([f for f in dataclasses.fields(cls) if f.init], is_int)]
    pack_u32 = _U32.pack

    def enc(out: bytearray, v: Any) -> None:
        if not isinstance(v, tuple):
            raise UsageError(f"expected tuple, got {type(v).__name__}")
        out += pack_u32(len(v))
        if _pack_columns(out, v):
            return
        for item in v:  # anything unusual (or wrong): the general codec, its errors
            ienc(out, item)

    getters = [(operator.attrgetter(name), an_int) for name, an_int in names]
    packers: dict[tuple[int, ...], Callable[..., bytes]] = {}

    def _pack_columns(out: bytearray, v: tuple[Any, ...]) -> bool:
        """Append every record, read and checked a column at a time and packed by one
        ``struct`` per record, when all are of ``cls`` with the first one's byte lengths
        and ints in range; False (nothing appended) otherwise."""
        if not v or set(map(type, v)) != {cls}:
            return False
        args: list[Any] = []
        lengths: list[int] = []
        for get, an_int in getters:
            col = list(map(get, v))
            if an_int:
                if set(map(type, col)) != {int} or min(col) < -(2**63) or max(col) >= 2**63:
                    return False
            else:
                sizes = set(map(len, col))
                if set(map(type, col)) != {bytes} or len(sizes) != 1:
                    return False
                lengths.append(sizes.pop())
                args.append(repeat(pack_u32(lengths[-1]), len(v)))
            args.append(col)
        key = tuple(lengths)
        pack = packers.get(key)
        if pack is None:
            fmt, it = "<", iter(key)
            for an_int in is_int:
                fmt += "q" if an_int else f"4s{next(it)}s"
            pack = struct.Struct(fmt).pack
            if len(packers) < _LAYOUTS_KEPT:
                packers[key] = pack
        out += b"".join(map(pack, *args))
        return True

    def layout(lengths: tuple[int, ...]) -> tuple[struct.Struct, list[int], list[int]]:
        got = layouts.get(lengths)
        if got is None:
            fmt, length_cols, value_cols, col, it = "<", [], [], 0, iter(lengths)
            for an_int in is_int:
                if an_int:
                    fmt += "q"
                    value_cols.append(col)
                    col += 1
                else:
                    fmt += f"I{next(it)}s"
                    length_cols.append(col)
                    value_cols.append(col + 1)
                    col += 2
            got = (struct.Struct(fmt), length_cols, value_cols)
            if len(layouts) < _LAYOUTS_KEPT:
                layouts[lengths] = got
        return got

    def first_lengths(buf: memoryview, pos: int) -> tuple[int, ...] | None:
        lengths, end = [], len(buf)
        for an_int in is_int:
            if an_int:
                pos += 8
            else:
                if pos + 4 > end:
                    return None
                n = _U32.unpack_from(buf, pos)[0]
                lengths.append(n)
                pos += 4 + n
            if pos > end:
                return None
        return tuple(lengths)

    def dec(buf: memoryview, start: int) -> tuple[Any, int]:
        n, pos = _count(buf, start, 1, "items")  # every item takes at least one byte
        lengths = first_lengths(buf, pos) if n else None
        if lengths is not None:
            st, length_cols, value_cols = layout(lengths)
            size = st.size * n
            if pos + size <= len(buf):
                cols = list(zip(*st.iter_unpack(buf[pos:pos + size])))
                if all(cols[c].count(want) == n for c, want in zip(length_cols, lengths)):
                    rows = zip(*(cols[c] for c in value_cols))
                    return tuple(_construct(cls, row) for row in rows), pos + size
        return general(buf, start)  # record by record

    return enc, dec
