"""Test helpers. The round harness itself is public: :mod:`protocols.harness` (``Router``,
``Envelope``, ``random_inputs`` are re-exported here for the tests that import them from
this module); message comparison lives in :mod:`protocols.testing`.
"""

from __future__ import annotations

from protocols.harness import Envelope, Router, random_inputs
from protocols.testing import assert_messages_equal, messages_equal, role_state

__all__ = [
    "Envelope",
    "Router",
    "assert_messages_equal",
    "messages_equal",
    "random_inputs",
    "server_state",
]


#: the server's stage/state enum, whatever the protocol calls it (None if it has none)
server_state = role_state
