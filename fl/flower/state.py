"""Keep a client core in a node's ``Context.state`` between Flower messages, without replay.

Flower 1.41 starts a fresh ClientApp process for every message; only the node's
``Context.state`` (a RecordDict) survives from one message to the next. A client core is a
Python object, so :func:`snapshot` writes down its attributes and :func:`restore` builds a
fresh core of the same round (``spec.client(config, id, rng, **credentials)``) and puts them
back. Nothing is pickled and no code is named by the snapshot:

- numpy arrays (the encoded input, while the core holds it) go verbatim into an
  ``ArrayRecord``;
- every other attribute goes through the typed JSON codec (:mod:`fl.flower.codec`):
  numbers, strings, bytes, tuples, lists, frozensets, mappings, enums and dataclasses of the
  secagg, protocols and fl packages (a ``KeyPair``, a peer's ``PublicKeys``, the state
  enum), rebuilt through their constructors on the way back;
- ``config`` and the generator are not snapshotted: the round's config comes with the
  setup, and each message's generator is derived from the round's generator key
  (:func:`message_rng`), so no stream position has to be kept.

A core with an attribute the codec does not carry (a TenSEAL context, a gmpy2 number: the HE
clients) cannot be snapshotted: :func:`snapshot` returns ``None`` and the mod falls back to
rebuilding the core by replaying the round's earlier frames (correct, slower).

.. warning:: a snapshot holds the client's round secrets (key pairs, shares, its encoded
   input): it stays in its own node's ``Context.state`` and is deleted when the round ends.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from fl.flower import codec
from secagg.errors import DecodeError, UsageError
from secagg.rng import Csprng

__all__ = ["message_rng", "restore", "snapshot"]

#: attributes rebuilt from the round's setup (or the node's own options, see
#: :func:`fl.flower.client_app.client_options`) instead of being snapshotted.
REBUILT = frozenset({"config", "_rng", "policy", "_answered", "_identity", "_registry", "_store",
                     "_table"})


def _attributes(core: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for cls in type(core).__mro__:
        for name in getattr(cls, "__slots__", ()):
            if hasattr(core, name):
                out[name] = getattr(core, name)
    out.update(getattr(core, "__dict__", {}))
    return out


def snapshot(core: Any) -> tuple[bytes, dict[str, np.ndarray]] | None:
    """``core``'s state as (JSON bytes, arrays), or ``None`` if some attribute cannot be
    carried (see the module docstring)."""
    doc: dict[str, Any] = {}
    arrays: dict[str, np.ndarray] = {}
    for name, value in _attributes(core).items():
        if name in REBUILT:
            continue
        if isinstance(value, np.ndarray):
            arrays[name] = value
            continue
        try:
            doc[name] = codec.to_jsonable(value)
        except UsageError:
            return None
    return json.dumps(doc, separators=(",", ":")).encode(), arrays


def restore(core: Any, data: bytes, arrays: dict[str, np.ndarray]) -> Any:
    """Put a :func:`snapshot` back into ``core`` (a fresh core of the same round); returns it.

    Raises:
        DecodeError: a malformed snapshot, or one naming attributes the core does not have.
    """
    try:
        doc = json.loads(bytes(data).decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DecodeError(f"not a core snapshot: {exc}") from None
    if not isinstance(doc, dict):
        raise DecodeError("not a core snapshot")
    known = _attributes(core)
    for name in [*doc, *arrays]:
        if name not in known or name in REBUILT:
            raise DecodeError(f"the snapshot names attribute {name!r}, which a "
                              f"{type(core).__name__} does not keep")
    for name, value in doc.items():
        object.__setattr__(core, name, codec.from_jsonable(value))
    for name, arr in arrays.items():
        object.__setattr__(core, name, np.array(arr, copy=True))
    return core


def message_rng(root: Csprng | bytes, index: int) -> Csprng:
    """The generator a client core uses while it handles its ``index``-th message of a round:
    the round's own generator for message 0 (input encoding and the first stage draw from it
    exactly as in the simulator), an independent child stream for every later one."""
    rng = Csprng(root) if isinstance(root, bytes) else root
    return rng if index == 0 else rng.spawn(f"message/{index}")
