"""The project's hypothesis strategies live in the public kit, :mod:`protocols.testing.strategies`;
this module re-exports them for the tests that import ``strategies``."""

from __future__ import annotations

from protocols.testing.strategies import *  # noqa: F403
from protocols.testing.strategies import __all__  # noqa: F401
