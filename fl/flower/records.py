"""How secure-aggregation traffic sits inside Flower messages: the record layout.

Every message the ServerApp sends for secure aggregation has ``message_type="train"`` (so a
user's ``@app.train()`` function, wrapped by :func:`fl.flower.client_app.secagg_mod`, is the
one that supplies the client's input) and carries:

- ``ConfigRecord "secagg"``: ``op`` (:data:`OP_HELLO` or :data:`OP_ROUND`) and ``round`` (the
  aggregation round's index in the run). The first message of a round to a client adds the
  setup: ``protocol``, ``client-id`` and ``config`` (the round configuration in the typed
  JSON codec of :mod:`fl.flower.codec`).
- ``ArrayRecord "secagg.frames"``: the protocol messages for that client, each one
  :mod:`secagg.wire` frame stored verbatim as a ``uint8`` Flower ``Array`` with
  ``stype="secagg.wire"`` under the keys ``"0"``, ``"1"``, ... in order. Flower moves the
  bytes (and chunks large ones); nothing here re-encodes or pickles them.

A reply carries the same two records: the client's outgoing frames, and in ``"secagg"`` the
``op``, the ``round``, the client's protocol compute ``seconds`` for this message and, for a
hello, its ``partition-id`` (``-1`` when its node config has none).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict

from secagg.errors import DecodeError

__all__ = [
    "CONFIG_RECORD", "FRAMES_RECORD", "MESSAGE_TYPE", "OP_HELLO", "OP_ROUND", "WIRE_STYPE",
    "frames_of", "frames_record", "get_bytes", "get_float", "get_int", "get_str", "is_secagg",
    "make_content",
]

MESSAGE_TYPE = "train"
CONFIG_RECORD = "secagg"
FRAMES_RECORD = "secagg.frames"
WIRE_STYPE = "secagg.wire"
OP_HELLO = "hello"
OP_ROUND = "round"

#: largest number of frames one Flower message may carry (a sanity bound, not a protocol one).
MAX_FRAMES = 1 << 20


def frames_record(frames: Sequence[bytes]) -> ArrayRecord:
    """An ArrayRecord holding ``frames`` verbatim, in order."""
    return ArrayRecord({str(i): Array(dtype="uint8", shape=(len(f),), stype=WIRE_STYPE,
                                      data=bytes(f))
                        for i, f in enumerate(frames)})


def frames_of(content: RecordDict) -> list[bytes]:
    """The wire frames in ``content`` (none if it has no frames record).

    Raises:
        DecodeError: keys that are not ``0..k-1``, or an array that is not a raw frame.
    """
    if FRAMES_RECORD not in content.array_records:
        return []
    rec = content.array_records[FRAMES_RECORD]
    if len(rec) > MAX_FRAMES:
        raise DecodeError(f"{len(rec)} frames in one message; at most {MAX_FRAMES}")
    if sorted(rec.keys(), key=lambda k: (len(k), k)) != [str(i) for i in range(len(rec))]:
        raise DecodeError("frame keys must be 0..k-1")
    out = []
    for i in range(len(rec)):
        arr = rec[str(i)]
        if arr.stype != WIRE_STYPE or arr.dtype != "uint8" or tuple(arr.shape) != (len(arr.data),):
            raise DecodeError(f"frame {i} is not a raw wire frame (stype={arr.stype!r}, "
                              f"dtype={arr.dtype!r}, shape={arr.shape})")
        out.append(bytes(arr.data))
    return out


def make_content(fields: dict[str, object], frames: Sequence[bytes] = ()) -> RecordDict:
    """A RecordDict with the ``"secagg"`` ConfigRecord and the frames record."""
    return RecordDict({CONFIG_RECORD: ConfigRecord(dict(fields)),  # type: ignore[arg-type]
                       FRAMES_RECORD: frames_record(frames)})


def get_int(rec: ConfigRecord, key: str, default: int | None = None) -> int:
    """``rec[key]`` as an int (not a bool).

    Raises:
        DecodeError: missing (without a default) or not an integer.
    """
    v = rec.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int):
        raise DecodeError(f"secagg record field {key!r} must be an integer, got {v!r}")
    return v


def get_float(rec: Mapping[str, Any], key: str, default: float) -> float:
    """``rec[key]`` as a float (an int is accepted)."""
    v = rec.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise DecodeError(f"secagg record field {key!r} must be a number, got {v!r}")
    return float(v)


def get_bytes(rec: ConfigRecord, key: str) -> bytes:
    """``rec[key]`` as bytes."""
    v = rec.get(key)
    if not isinstance(v, bytes):
        raise DecodeError(f"secagg record field {key!r} must be bytes")
    return v


def get_str(rec: ConfigRecord, key: str) -> str:
    """``rec[key]`` as a str."""
    v = rec.get(key)
    if not isinstance(v, str):
        raise DecodeError(f"secagg record field {key!r} must be a string, got {v!r}")
    return v


def is_secagg(content: RecordDict) -> bool:
    """Whether ``content`` is secure-aggregation traffic (has the ``"secagg"`` record)."""
    return CONFIG_RECORD in content.config_records
