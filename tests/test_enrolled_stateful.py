"""The kit's state machine (:class:`protocols.testing.RoundMachine`) over enrolled SecAgg /
SecAgg+ rounds, with the enrolled mode's own checks on top.

Hypothesis builds a round (protocol, passive or active, n in 3..8, degree and threshold, a
small dimension; ``enrolled=True``) and interleaves everything the kit's machine does:
delivering the oldest frame or any other (reordering), duplicating, losing or delaying a
frame, killing a client for good, and closing the stage. On top of the kit's own checks
(typed errors only, aborted clients stay silent, a release is the exact sum of its
contributors or a typed abort), the enrolled mode must keep:

- no client answers two unmask requests, and no client id ever has both a share of its
  self-mask seed released and a round seed involving it revealed (directly or through an
  escrow partial) in the round;
- the server aborts only for dropouts (a DropoutError), and then releases nothing;
- the round ends FINISHED or ABORTED; a release's contributors all uploaded, and its
  integer sum is exactly theirs.
"""

from __future__ import annotations

import numpy as np
from helpers import assert_aborted_only_for_dropouts
from hypothesis import settings
from hypothesis.stateful import invariant

from protocols.base import AggregateResult
from protocols.secagg._enrolled_state import ServerStage
from protocols.secagg.enrolled_messages import UnmaskResponse, Upload
from protocols.testing import RoundMachine, round_machine

_OPEN = (ServerStage.FINISHED, ServerStage.ABORTED)


class EnrolledChecks(RoundMachine):
    """What the enrolled mode adds to the kit's machine."""

    @invariant()
    def never_both_kinds_for_one_client(self) -> None:
        unmasked: set[int] = set()
        exposed: set[int] = set()
        for u in range(self.router.n):
            responses = [m for m in self.router.sent.get(u, []) if isinstance(m, UnmaskResponse)]
            assert len(responses) <= 1, f"client {u} answered two unmask requests"
            for m in responses:
                unmasked |= {s.owner for s in m.seed_shares}
                exposed |= {r.peer for r in m.round_seeds} | {p.dropped for p in m.partials}
        both = unmasked & exposed
        assert not both, f"self mask and round seeds of {sorted(both)} were both revealed"

    @invariant()
    def the_server_aborts_only_for_dropouts(self) -> None:
        assert_aborted_only_for_dropouts(self.router.server, self.server_errors)

    def _check_release(self) -> None:
        super()._check_release()
        router = self.router
        result: AggregateResult = router.server.result()
        uploaded = {u for u in range(router.n)
                    if any(isinstance(m, Upload) for m in router.sent.get(u, []))}
        assert set(result.contributors) <= uploaded
        np.testing.assert_array_equal(result.int_sum,
                                      router.expected_int_sum(result.contributors))

    def teardown(self) -> None:
        super().teardown()
        router = getattr(self, "router", None)
        if router is not None:
            assert router.server.stage in _OPEN, router.server.stage


def _machine(name: str) -> type[RoundMachine]:
    machine = round_machine(name, max_n=8, max_dim=5, base=EnrolledChecks, enrolled=True)
    machine.TestCase.settings = settings(machine.TestCase.settings, stateful_step_count=40)
    return machine


TestEnrolledSecAgg = _machine("secagg").TestCase
TestEnrolledSecAggPlus = _machine("secagg+").TestCase
