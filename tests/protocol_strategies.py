"""Round-level strategies moved to :mod:`protocols.testing.strategies`; re-exported here."""

from __future__ import annotations

from protocols.testing.strategies import (  # noqa: F401
    dropout_schedules,
    graph_parameters,
    sparse_degrees,
)

__all__ = ["dropout_schedules", "graph_parameters", "sparse_degrees"]

import protocols

_SECAGG = protocols.get("secagg")
#: client stages of the passive and the active SecAgg variants, read from their tables
PASSIVE_STAGES = len(_SECAGG.client_stages(_SECAGG.make_config(3, 1)))
ACTIVE_STAGES = len(_SECAGG.client_stages(_SECAGG.make_config(3, 1, active=True)))
