"""Comparing messages structurally, and reading a role's state (no hypothesis needed)."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

__all__ = ["assert_messages_equal", "messages_equal", "role_state"]


def messages_equal(a: Any, b: Any) -> bool:
    """Structural equality of messages (dataclasses, tuples, bytes, numpy arrays)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and bool(np.array_equal(a, b))
    if dataclasses.is_dataclass(a):
        return all(messages_equal(getattr(a, f.name), getattr(b, f.name))
                   for f in dataclasses.fields(a))
    if isinstance(a, tuple):
        return len(a) == len(b) and all(messages_equal(x, y) for x, y in zip(a, b))
    return bool(a == b)


def assert_messages_equal(a: Any, b: Any) -> None:
    """Raise AssertionError (showing both) unless ``a`` and ``b`` are structurally equal."""
    if not messages_equal(a, b):
        raise AssertionError(f"messages differ:\n{a!r}\n{b!r}")


def role_state(role: Any) -> Any:
    """A role's stage/state enum, whatever the protocol calls it (``stage`` or ``state``;
    None if it has neither). Tests use it to check that a refused message moved nothing."""
    for name in ("stage", "state"):
        if hasattr(role, name):
            return getattr(role, name)
    return None
