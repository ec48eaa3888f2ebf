"""The one wire codec: frozen dataclass messages <-> bytes, and nothing else serialises.

A message class is a frozen dataclass registered with :func:`register` under a unique 16-bit
tag. Its fields are encoded in declaration order from their type annotations, compiled once
at registration. Supported field types:

====================  ===========================================================
``int``               signed 64-bit little-endian
``bool``              one byte, 0 or 1
``float``             IEEE-754 binary64, little-endian
``bytes`` / ``str``   u32 length, then the bytes (UTF-8 for str)
``enum.Enum``         its integer value, as ``int``
``np.ndarray``        dtype code (u8), u64 count, zero padding to 8-byte alignment,
                      then raw little-endian items
``tuple[X, ...]``     u32 count, then each item
``tuple[A, B]``       each item in turn
``X | None``          one byte presence flag, then X
another dataclass     its fields inline (it need not be registered)
====================  ===========================================================

A frame is ``b"SG"``, the codec version (u8), the tag (u16), then the fields. Decoding checks
every length against the bytes that remain *before* allocating anything, rejects trailing
bytes, non-zero padding and non-canonical booleans, and raises only :class:`DecodeError`.
Arrays decode as read-only views into the frame (no copy of a ``bytes`` frame; other
buffers are copied once first, so a caller's later writes cannot change a message).
"""

from __future__ import annotations

import dataclasses
import enum
import struct
import sys
import types
import typing
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from secagg.errors import ConfigError, DecodeError, SecAggError, UsageError

__all__ = ["CODEC_VERSION", "MAGIC", "MAX_FRAME_BYTES", "decode", "encode", "register", "registered"]

MAGIC = b"SG"
CODEC_VERSION = 1
MAX_FRAME_BYTES = (1 << 31) - 1
_HEADER = struct.Struct("<2sBH")

_DTYPES: dict[int, np.dtype] = {
    1: np.dtype("<u1"), 2: np.dtype("<u4"), 3: np.dtype("<u8"), 4: np.dtype("<i4"),
    5: np.dtype("<i8"), 6: np.dtype("<f4"), 7: np.dtype("<f8"),
}
_DTYPE_CODES = {dt.newbyteorder("="): code for code, dt in _DTYPES.items()}

T = TypeVar("T")
Enc = Callable[[bytearray, Any], None]
Dec = Callable[[memoryview, int], tuple[Any, int]]

_BY_TAG: dict[int, tuple[type, Dec]] = {}
_BY_CLASS: dict[type, tuple[int, Enc]] = {}

_I64 = struct.Struct("<q")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_F64 = struct.Struct("<d")


def _need(buf: memoryview, pos: int, n: int, what: str) -> None:
    if n < 0 or pos + n > len(buf):
        raise DecodeError(f"truncated frame: {what} needs {n} bytes at offset {pos}, "
                          f"{len(buf) - pos} remain")


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
    out += v


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
    out += bytes(-len(out) % 8)
    le = v.astype(_DTYPES[code], copy=False)
    out += memoryview(np.ascontiguousarray(le).view(np.uint8))  # type: ignore[arg-type]


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
        return _compile_struct(tp)
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
    ienc, idec = _compile(tp)

    def enc(out: bytearray, v: Any) -> None:
        if not isinstance(v, tuple):
            raise UsageError(f"expected tuple, got {type(v).__name__}")
        out += _U32.pack(len(v))
        for item in v:
            ienc(out, item)

    def dec(buf: memoryview, pos: int) -> tuple[Any, int]:
        _need(buf, pos, 4, "count")
        n = _U32.unpack_from(buf, pos)[0]
        pos += 4
        _need(buf, pos, n, f"{n} items")  # every item takes at least one byte
        items = []
        for _ in range(n):
            item, pos = idec(buf, pos)
            items.append(item)
        return tuple(items), pos

    return enc, dec


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


def _compile_struct(cls: type) -> tuple[Enc, Dec]:
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

    def dec(buf: memoryview, pos: int) -> tuple[Any, int]:
        kwargs = {}
        for name, _, fdec in codecs:
            kwargs[name], pos = fdec(buf, pos)
        try:
            return cls(**kwargs), pos
        except (TypeError, ValueError, SecAggError) as exc:  # a rejecting __post_init__
            raise DecodeError(f"{cls.__name__}: {exc}") from None

    return enc, dec


# -- public API ------------------------------------------------------------------------
def register(tag: int) -> Callable[[type[T]], type[T]]:
    """Class decorator: make a frozen dataclass a wire message under ``tag`` (1..65535).

    Raises:
        ConfigError: a tag out of range or already taken, a class that is not a frozen
            dataclass, or a field type the codec does not support.
    """

    def deco(cls: type[T]) -> type[T]:
        if not 0 < tag < 1 << 16:
            raise ConfigError(f"wire tag must be in 1..65535, got {tag}")
        if not dataclasses.is_dataclass(cls) or not cls.__dataclass_params__.frozen:  # type: ignore[attr-defined]
            raise ConfigError(f"{cls.__name__} must be a frozen dataclass to travel")
        if tag in _BY_TAG and _BY_TAG[tag][0] is not cls:
            raise ConfigError(f"wire tag {tag} is taken by {_BY_TAG[tag][0].__name__}")
        enc, dec = _compile_struct(cls)
        _BY_TAG[tag] = (cls, dec)
        _BY_CLASS[cls] = (tag, enc)
        return cls

    return deco


def registered() -> dict[int, type]:
    """Tag -> message class, for every registered message."""
    return {tag: cls for tag, (cls, _) in _BY_TAG.items()}


def encode(msg: object) -> bytes:
    """The frame for a registered message.

    Raises:
        UsageError: an unregistered class or a field value of the wrong type or range.
    """
    entry = _BY_CLASS.get(type(msg))
    if entry is None:
        raise UsageError(f"{type(msg).__name__} is not a registered wire message")
    tag, enc = entry
    out = bytearray(_HEADER.pack(MAGIC, CODEC_VERSION, tag))
    enc(out, msg)
    if len(out) > MAX_FRAME_BYTES:
        raise UsageError(f"frame of {len(out)} bytes exceeds the {MAX_FRAME_BYTES}-byte limit")
    return bytes(out)


def decode(data: bytes | bytearray | memoryview, expected: type[T] | None = None) -> T:
    """The message in a frame.

    Args:
        data: one whole frame.
        expected: if given, the frame must hold this class.

    Raises:
        DecodeError: anything malformed: magic, version, tag, lengths, trailing bytes.
    """
    # Copy anything mutable, so the decoded (read-only) arrays can never change under us.
    buf = memoryview(data if isinstance(data, bytes) else bytes(memoryview(data).cast("B")))
    if len(buf) > MAX_FRAME_BYTES:
        raise DecodeError(f"frame of {len(buf)} bytes exceeds the {MAX_FRAME_BYTES}-byte limit")
    if len(buf) < _HEADER.size:
        raise DecodeError(f"frame of {len(buf)} bytes is shorter than the {_HEADER.size}-byte header")
    magic, version, tag = _HEADER.unpack_from(buf, 0)
    if magic != MAGIC:
        raise DecodeError(f"bad magic {bytes(magic)!r}, expected {MAGIC!r}")
    if version != CODEC_VERSION:
        raise DecodeError(f"codec version {version} is not supported (this is {CODEC_VERSION})")
    entry = _BY_TAG.get(tag)
    if entry is None:
        raise DecodeError(f"unknown message tag {tag}")
    cls, dec = entry
    if expected is not None and cls is not expected:
        raise DecodeError(f"expected {expected.__name__}, frame holds {cls.__name__}")
    try:
        msg, pos = dec(buf, _HEADER.size)
    except DecodeError:
        raise
    except (ValueError, OverflowError, struct.error) as exc:
        raise DecodeError(f"malformed {cls.__name__}: {exc}") from None
    if pos != len(buf):
        raise DecodeError(f"{len(buf) - pos} trailing bytes after {cls.__name__}")
    return msg  # type: ignore[no-any-return]
