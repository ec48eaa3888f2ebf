"""Retained-memory measurement of a protocol role (for ``server_peak_bytes``).

:func:`deep_sizeof` walks an object graph (dicts, lists, tuples, sets, dataclasses with or
without slots, numpy arrays, bytes) and adds up what it retains, counting each object and
each array buffer once. A driver calls it after every step of a role; the maximum is the
role's peak retained state. Transient temporaries inside one step are not counted: the
masking protocols' only ones are fixed-size PRG chunk buffers (128 KiB).
"""

from __future__ import annotations

import sys
import types
from typing import Any

import numpy as np

__all__ = ["deep_sizeof"]

_ARRAY_HEADER = sys.getsizeof(np.empty(0))
_SKIP = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType,
         types.MethodType)


def deep_sizeof(obj: Any) -> int:
    """Bytes retained by ``obj`` and everything it references (each counted once)."""
    seen: set[int] = set()
    total = 0
    stack = [obj]
    while stack:
        o = stack.pop()
        if id(o) in seen or isinstance(o, _SKIP):
            continue
        seen.add(id(o))
        if isinstance(o, np.ndarray):
            root = o
            while isinstance(root.base, np.ndarray):
                root = root.base
            total += _ARRAY_HEADER
            if root.base is None:  # owns its buffer: count the buffer once
                if id(root) not in seen or root is o:
                    seen.add(id(root))
                    total += root.nbytes
            else:  # a view into bytes / a memoryview: count that object
                stack.append(root.base)
            continue
        if isinstance(o, memoryview):
            total += sys.getsizeof(o)
            stack.append(o.obj)
            continue
        total += sys.getsizeof(o)
        if isinstance(o, dict):
            stack.extend(o.keys())
            stack.extend(o.values())
        elif isinstance(o, (list, tuple, set, frozenset)):
            stack.extend(o)
        elif isinstance(o, (bytes, bytearray, str, int, float, bool, memoryview)) or o is None:
            continue
        else:
            d = getattr(o, "__dict__", None)
            if d is not None:
                stack.append(d)
            for cls in type(o).__mro__:
                for name in getattr(cls, "__slots__", ()):
                    if hasattr(o, name):
                        stack.append(getattr(o, name))
    return total
