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

The field codecs live in :mod:`secagg._codecs`. A ``tuple[int, ...]`` is written and read
in one ``array`` pass, and a tuple of records whose fields are all ``int`` or ``bytes``
(public keys) in one ``struct`` pass when every record has the first one's lengths: the same
layout either way. A frame's large payloads (arrays, long byte strings) are joined into it
once (:class:`secagg._codecs.Frame`), not grown into a buffer and copied again.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Callable
from typing import TypeVar

from secagg._codecs import Dec, Enc, Frame, compile_struct
from secagg.errors import ConfigError, DecodeError, UsageError

__all__ = ["CODEC_VERSION", "MAGIC", "MAX_FRAME_BYTES", "decode", "encode", "register", "registered"]

MAGIC = b"SG"
CODEC_VERSION = 1
MAX_FRAME_BYTES = (1 << 31) - 1
_HEADER = struct.Struct("<2sBH")

T = TypeVar("T")

_BY_TAG: dict[int, tuple[type, Dec]] = {}
_BY_CLASS: dict[type, tuple[int, Enc]] = {}


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
        enc, dec = compile_struct(cls)
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
    out = Frame(_HEADER.pack(MAGIC, CODEC_VERSION, tag))
    enc(out, msg)
    size = out.base + len(out)
    if size > MAX_FRAME_BYTES:
        raise UsageError(f"frame of {size} bytes exceeds the {MAX_FRAME_BYTES}-byte limit")
    return out.finish()


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
