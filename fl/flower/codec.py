"""A typed JSON codec for round configurations and client credentials. Never pickle.

Protocol *messages* travel only as :mod:`secagg.wire` frames. A round's configuration is not a
message: it is a frozen dataclass (``SecAggConfig``, ``CkksConfig``, ...) holding an
``EncodingConfig``, maybe a client registry or a distributed-noise mechanism. The ServerApp
sends it to every client in the first message of a round, and the loopback engine hands it to
the ServerApp in a job file, with the round's central noise mechanism beside it; the
ServerApp's result carries the DP event of what it released back to the engine (both are
frozen dataclasses of :mod:`secagg.dp`). This module turns such values into JSON and back:

=====================  =========================================================
``None``, bool, int,    as JSON
float, str
``bytes``              ``{"$bytes": "<hex>"}``
``tuple``              ``{"$tuple": [...]}`` (``list`` stays a list)
``frozenset``          ``{"$frozenset": [...]}`` (in the order of the items' JSON text)
``Mapping``            ``{"$map": [[key, value], ...]}`` (keys of any type here)
``Fraction``           ``{"$fraction": [numerator, denominator]}``
``enum.Enum``          ``{"$enum": "module:Qualname", "name": "MEMBER"}``
a dataclass instance   ``{"$dc": "module:Qualname", "fields": {...}}`` (``init`` fields only)
numpy scalar           as the matching Python number
=====================  =========================================================

Decoding imports a class only from the packages in :data:`TRUSTED_PACKAGES`, only if it is a
dataclass (or an Enum), and builds it through its constructor, so every ``__post_init__``
check runs again on the receiving side. Anything else raises :class:`DecodeError`.

.. warning:: a client accepts the configuration its server sends. The codec guarantees that
   it gets a *valid* configuration of a known type, not a *sensible* one: pin what matters
   (the protocol) in the node config, see :mod:`fl.flower.client_app`.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import json
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

import numpy as np

from secagg.errors import DecodeError, UsageError

__all__ = ["TRUSTED_PACKAGES", "dumps", "from_jsonable", "loads", "to_jsonable"]

#: top-level packages whose dataclasses and enums may be rebuilt from JSON.
TRUSTED_PACKAGES = frozenset({"secagg", "protocols", "fl"})

_MAX_DEPTH = 32


def _qualname(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _canonical(item: Any) -> str:
    return json.dumps(item, sort_keys=True, separators=(",", ":"))


def to_jsonable(value: Any, _depth: int = 0) -> Any:
    """``value`` as plain JSON types (see the module docstring).

    Raises:
        UsageError: a value of a type the codec does not carry (names the type).
    """
    if _depth > _MAX_DEPTH:
        raise UsageError(f"value nested deeper than {_MAX_DEPTH} levels")
    d = _depth + 1
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (bytes, bytearray)):
        return {"$bytes": bytes(value).hex()}
    if isinstance(value, Fraction):
        return {"$fraction": [value.numerator, value.denominator]}
    if isinstance(value, enum.Enum):
        return {"$enum": _qualname(type(value)), "name": value.name}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: to_jsonable(getattr(value, f.name), d)
                  for f in dataclasses.fields(value) if f.init}
        return {"$dc": _qualname(type(value)), "fields": fields}
    if isinstance(value, tuple):
        return {"$tuple": [to_jsonable(v, d) for v in value]}
    if isinstance(value, frozenset):
        # In the order of the items' JSON text: the same bytes for the same set, whatever
        # its items' types (mixed types cannot be sorted as themselves).
        items = sorted((to_jsonable(v, d) for v in value), key=_canonical)
        return {"$frozenset": items}
    if isinstance(value, list):
        return [to_jsonable(v, d) for v in value]
    if isinstance(value, Mapping):
        return {"$map": [[to_jsonable(k, d), to_jsonable(v, d)] for k, v in value.items()]}
    raise UsageError(
        f"cannot send a {type(value).__module__}.{type(value).__qualname__} to another process: "
        "the codec carries numbers, strings, bytes, tuples, lists, mappings, enums and "
        "dataclasses of the secagg, protocols and fl packages"
    )


def _resolve(ref: Any) -> type:
    if not isinstance(ref, str) or ":" not in ref:
        raise DecodeError(f"bad type reference {ref!r}")
    module, qual = ref.split(":", 1)
    if module.split(".", 1)[0] not in TRUSTED_PACKAGES:
        raise DecodeError(f"type {ref!r} is outside the trusted packages "
                          f"({', '.join(sorted(TRUSTED_PACKAGES))})")
    try:
        obj: Any = importlib.import_module(module)
        for part in qual.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError):
        raise DecodeError(f"unknown type {ref!r}") from None
    if not isinstance(obj, type):
        raise DecodeError(f"{ref!r} is not a class")
    return obj


def from_jsonable(value: Any, _depth: int = 0) -> Any:
    """The inverse of :func:`to_jsonable`.

    Raises:
        DecodeError: malformed input, an untrusted or unknown type, or a constructor that
            refused the fields (its message is kept).
    """
    if _depth > _MAX_DEPTH:
        raise DecodeError(f"value nested deeper than {_MAX_DEPTH} levels")
    d = _depth + 1
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, list):
        return [from_jsonable(v, d) for v in value]
    if not isinstance(value, dict) or len(value) not in (1, 2):
        raise DecodeError(f"unexpected JSON value of type {type(value).__name__}")
    try:
        if "$bytes" in value:
            return bytes.fromhex(value["$bytes"])
        if "$tuple" in value:
            return tuple(from_jsonable(v, d) for v in value["$tuple"])
        if "$frozenset" in value:
            return frozenset(from_jsonable(v, d) for v in value["$frozenset"])
        if "$map" in value:
            return {from_jsonable(k, d): from_jsonable(v, d) for k, v in value["$map"]}
        if "$fraction" in value:
            num, den = value["$fraction"]
            return Fraction(int(num), int(den))
        if "$enum" in value:
            cls = _resolve(value["$enum"])
            if not issubclass(cls, enum.Enum):
                raise DecodeError(f"{value['$enum']!r} is not an Enum")
            return cls[value["name"]]
        if "$dc" in value:
            cls = _resolve(value["$dc"])
            if not dataclasses.is_dataclass(cls):
                raise DecodeError(f"{value['$dc']!r} is not a dataclass")
            allowed = {f.name for f in dataclasses.fields(cls) if f.init}
            raw = value["fields"]
            if not isinstance(raw, dict) or not set(raw) <= allowed:
                raise DecodeError(f"fields of {value['$dc']!r} must be among {sorted(allowed)}")
            return cls(**{k: from_jsonable(v, d) for k, v in raw.items()})
    except DecodeError:
        raise
    except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
        raise DecodeError(f"malformed typed value: {type(exc).__name__}: {exc}") from None
    raise DecodeError(f"unknown tagged value with keys {sorted(value)}")


def dumps(value: Any) -> bytes:
    """``value`` as UTF-8 JSON bytes (see :func:`to_jsonable`)."""
    return json.dumps(to_jsonable(value), separators=(",", ":"), allow_nan=True).encode()


def loads(data: bytes, expect: type | tuple[type, ...] | None = None) -> Any:
    """Decode :func:`dumps` output, optionally checking the top-level type.

    Raises:
        DecodeError: malformed bytes, or a value that is not an instance of ``expect``.
    """
    try:
        raw = json.loads(bytes(data).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DecodeError(f"not a typed JSON value: {exc}") from None
    value = from_jsonable(raw)
    if expect is not None and not isinstance(value, expect):
        raise DecodeError(f"expected {expect}, got {type(value).__name__}")
    return value
