"""The kit's state machine (:mod:`protocols.testing.machine`) over SecAgg / SecAgg+ rounds,
with the masking protocols' own checks on top.

The kit builds a round (n in 3..8, the graph degree and threshold, the active variant, a
small dimension, inputs and weights) and interleaves deliveries (oldest, several, any: 
reordering), duplicates, losses, delays past the deadline, kills and deadlines. Beyond what
the kit checks for every protocol (only ProtocolErrors; aborted clients stay silent; no
client reveals both a seed share and a key share of the same client, nor answers two unmask
requests; the release is the exact sum of its contributors or a typed abort), here:

- the server aborts only for dropouts (a DropoutError), and then releases nothing;
- the contributors are clients whose masked input was sent, at least t of them.
"""

from __future__ import annotations

import numpy as np
from helpers import assert_aborted_only_for_dropouts
from hypothesis import settings
from hypothesis.stateful import invariant

import protocols
from protocols.secagg._state import ServerStage
from protocols.secagg.messages import MaskedInput
from protocols.testing import RoundMachine


class SecAggRound(RoundMachine):
    max_n = 8
    max_dim = 5

    @invariant()
    def the_server_aborts_only_for_dropouts(self) -> None:
        assert_aborted_only_for_dropouts(self.router.server, self.server_errors)

    def teardown(self) -> None:
        super().teardown()
        router = getattr(self, "router", None)
        if router is None:
            return
        server = router.server
        assert server.stage in (ServerStage.FINISHED, ServerStage.ABORTED)
        self.the_server_aborts_only_for_dropouts()
        if server.stage is ServerStage.FINISHED:
            result = server.result()
            masked = {u for u in range(router.n)
                      if any(isinstance(m, MaskedInput) for m in router.sent.get(u, []))}
            assert set(result.contributors) <= masked
            assert len(result.contributors) >= router.config.threshold  # type: ignore[attr-defined]
            np.testing.assert_array_equal(result.int_sum,
                                          router.expected_int_sum(result.contributors))


class SecAggCompleteRound(SecAggRound):
    spec = protocols.get("secagg")


class SecAggPlusRound(SecAggRound):
    spec = protocols.get("secagg+")


for _machine in (SecAggCompleteRound, SecAggPlusRound):
    _machine.TestCase.settings = settings(_machine.TestCase.settings, stateful_step_count=40)
TestSecAggRound = SecAggCompleteRound.TestCase
TestSecAggPlusRound = SecAggPlusRound.TestCase
