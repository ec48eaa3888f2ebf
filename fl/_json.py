"""Strict JSON for reports and the ``--json`` contract."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["json_safe"]


def json_safe(v: Any) -> Any:
    """``v`` with NaN/inf floats as None, tuples as lists and keys as strings, so that
    ``json.dumps(..., allow_nan=False)`` accepts it."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {str(k): json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [json_safe(x) for x in v]
    return v
