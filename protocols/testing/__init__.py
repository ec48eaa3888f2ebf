"""A testing kit for secure-aggregation protocols: yours, or the ones shipped here.

Installed with the package; it needs ``hypothesis`` (``pip install "secagg[testing]"``).
``import protocols`` never imports it.

- :mod:`protocols.testing.strategies` -- constructive hypothesis strategies: encodings inside
  the headroom, whole round configs drawn from what a spec declares, inputs and weights,
  graph parameters, dropout schedules over a protocol's *own* stages (read from its
  transition table), adversarial network schedules.
- :mod:`protocols.testing.machine` -- :func:`round_machine`, a ``RuleBasedStateMachine`` for
  any registered protocol: deliveries, reordering, duplicates, losses, delays past the
  deadline, kills and deadlines across all roles; the release is the exact sum of the
  contributors' encoded inputs or a typed abort, never a wrong sum. A mode of your protocol
  with checks of its own: subclass :class:`RoundMachine` and pass it as ``base=``.
- :mod:`protocols.testing.conformance` -- :class:`ProtocolConformance`, the suite a
  third-party protocol's test module subclasses.
- :mod:`protocols.testing.walk` -- the h2-style walk of a protocol's transition tables (every
  state x message kind), pure and over real roles.
- The round harness the kit drives is :mod:`protocols.harness` (``Router``); for adversarial
  tests of your own it can rewrite messages in flight (``tamper=``), stop the honest round at
  a message kind (``Router.until``), silence any role (``Router.kill``) and take roles you
  built (``server=``, ``helpers=``).

Worked example: a protocol of your own, registered and tested::

    # my_protocol.py -- a plaintext variant, say
    import dataclasses, protocols
    SPEC = dataclasses.replace(protocols.get("plaintext"), name="my-protocol",
                               summary="plaintext, under another name")
    protocols.register(SPEC)       # or an entry point in group "secagg.protocols"

    # test_my_protocol.py
    from protocols.testing import ProtocolConformance, round_machine
    import my_protocol

    class TestMyProtocol(ProtocolConformance):
        protocol = my_protocol.SPEC

    TestMyProtocolMachine = round_machine(my_protocol.SPEC).TestCase

``pytest test_my_protocol.py`` then runs the whole contract: exact sums, weights, dropouts at
every stage and under any schedule, typed refusals of bad headers, late messages and
duplicates, the codec, the table walks, and the state machine. A protocol that releases a
wrong sum, releases before unmasking, reveals both shares of a client, or half-applies a
message it refuses fails it, with the example hypothesis shrank to (tests/test_kit_catches.py
shows each).
"""

from __future__ import annotations

try:
    import hypothesis as _hypothesis  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("protocols.testing needs hypothesis: pip install 'secagg[testing]'") \
        from exc

from protocols.testing import strategies
from protocols.testing.compare import assert_messages_equal, messages_equal, role_state
from protocols.testing.conformance import ProtocolConformance
from protocols.testing.machine import INVARIANTS, RoundMachine, never_both_shares, round_machine
from protocols.testing.walk import check_table, walk_client, walk_spec_tables, walk_table

__all__ = [
    "INVARIANTS", "ProtocolConformance", "RoundMachine", "assert_messages_equal",
    "check_table", "messages_equal", "never_both_shares", "role_state", "round_machine",
    "strategies", "walk_client", "walk_spec_tables", "walk_table",
]
