"""Protocols by name: ``protocols.get("secagg+")``."""

from __future__ import annotations

from protocols.base import ProtocolSpec
from secagg.errors import ConfigError

__all__ = ["get", "names", "register"]

_SPECS: dict[str, ProtocolSpec] = {}


def register(spec: ProtocolSpec) -> ProtocolSpec:
    """Add a protocol under ``spec.name``.

    Raises:
        ConfigError: the name is taken by another spec.
    """
    if spec.name in _SPECS and _SPECS[spec.name] is not spec:
        raise ConfigError(f"protocol name {spec.name!r} is already registered")
    _SPECS[spec.name] = spec
    return spec


def names() -> tuple[str, ...]:
    """Every registered protocol name."""
    return tuple(_SPECS)


def get(name: str) -> ProtocolSpec:
    """The protocol called ``name``.

    Raises:
        ConfigError: an unknown name (lists the valid ones).
    """
    try:
        return _SPECS[name]
    except KeyError:
        raise ConfigError(
            f"unknown protocol {name!r}; choose one of: {', '.join(names())}"
        ) from None
