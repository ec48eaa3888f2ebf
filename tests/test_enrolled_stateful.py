"""A hypothesis state machine over every role of an enrolled SecAgg / SecAgg+ round.

Hypothesis builds a round (protocol, passive or active, n in 3..8, degree and threshold, a
small dimension) and interleaves delivering the oldest frame or any other (reordering),
duplicating a frame, killing a client for good, and closing the stage. Whatever happens:

- roles raise only ProtocolError and its refinements (refused, late, dropout);
- no client answers two unmask requests, and no client id ever has both a share of its
  self-mask seed released and a round seed involving it revealed (directly or through an
  escrow partial) in the round;
- aborted clients stay silent;
- the round ends with the exact integer sum of its contributors, or with a DropoutError
  and no result; never with a wrong sum.
"""

from __future__ import annotations

import numpy as np
from helpers import Router, random_inputs
from hypothesis import note, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from protocol_strategies import graph_parameters
from strategies import seeds

import protocols
from protocols.base import SERVER
from protocols.secagg import active_min_threshold
from protocols.secagg._enrolled_state import ServerStage
from protocols.secagg.enrolled_messages import UnmaskResponse, Upload
from secagg.errors import DropoutError, ProtocolError, SecAggError, UsageError
from secagg.rng import Csprng

_OPEN = (ServerStage.FINISHED, ServerStage.ABORTED)


class EnrolledRound(RuleBasedStateMachine):
    router: Router

    @initialize(data=st.data(), name=st.sampled_from(["secagg", "secagg+"]),
                n=st.integers(3, 8), dim=st.integers(1, 5), active=st.booleans(), seed=seeds)
    def build(self, data: st.DataObject, name: str, n: int, dim: int, active: bool,
              seed: int) -> None:
        degree, threshold = data.draw(graph_parameters(n, sparse=name == "secagg+"))
        if active:  # the active variant refuses t <= (m + c)/2 (Bonawitz et al.)
            threshold = max(threshold, active_min_threshold(degree + 1, 0.1))
        spec = protocols.get(name)
        config = spec.make_config(n, dim, degree=degree, threshold=threshold, active=active,
                                  enrolled=True)
        rng = Csprng.from_seed(seed)
        self.router = Router(spec, config, rng, random_inputs(n, dim, rng.spawn("x"), 1.5))
        self.errors: list[SecAggError] = []
        self.server_errors: list[SecAggError] = []
        self.sent_when_aborted: dict[int, int] = {}

    def _deliver(self, index: int) -> None:
        env = self.router.pending[index]
        try:
            self.router.deliver(index)
        except ProtocolError as exc:
            self.errors.append(exc)
            if env.recipient == SERVER:
                self.server_errors.append(exc)
        for u, c in enumerate(self.router.clients):
            if c.aborted and u not in self.sent_when_aborted:
                self.sent_when_aborted[u] = len(self.router.sent.get(u, []))

    def _close(self) -> None:
        try:
            self.router.close()
        except ProtocolError as exc:
            self.errors.append(exc)
            self.server_errors.append(exc)

    @precondition(lambda self: bool(self.router.pending))
    @rule()
    def deliver_oldest(self) -> None:
        self._deliver(0)

    @precondition(lambda self: bool(self.router.pending))
    @rule(data=st.data())
    def deliver_any(self, data: st.DataObject) -> None:
        self._deliver(data.draw(st.integers(0, len(self.router.pending) - 1), label="index"))

    @precondition(lambda self: bool(self.router.pending))
    @rule(data=st.data())
    def duplicate(self, data: st.DataObject) -> None:
        self.router.duplicate(data.draw(st.integers(0, len(self.router.pending) - 1),
                                        label="index"))

    @rule(data=st.data())
    def kill(self, data: st.DataObject) -> None:
        self.router.kill(data.draw(st.integers(0, self.router.n - 1), label="client"))

    @precondition(lambda self: self.router.server.stage not in _OPEN)
    @rule()
    def close_stage(self) -> None:
        self._close()

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
    def aborted_clients_stay_silent(self) -> None:
        for u, count in self.sent_when_aborted.items():
            assert self.router.clients[u].aborted
            assert len(self.router.sent.get(u, [])) == count

    @invariant()
    def the_server_aborts_only_for_dropouts(self) -> None:
        server = self.router.server
        if server.stage is ServerStage.ABORTED:
            assert any(isinstance(e, DropoutError) for e in self.server_errors)
            try:
                server.result()
            except UsageError:
                pass
            else:
                raise AssertionError("an aborted round released a result")

    def teardown(self) -> None:
        router = getattr(self, "router", None)
        if router is None:
            return
        server = router.server
        for _ in range(8):
            while router.pending:
                self._deliver(0)
            if server.stage in _OPEN:
                break
            self._close()
        self.never_both_kinds_for_one_client()
        self.aborted_clients_stay_silent()
        self.the_server_aborts_only_for_dropouts()
        note(f"stage={server.stage.name} errors={[type(e).__name__ for e in self.errors]}")
        assert server.stage in _OPEN
        if server.stage is ServerStage.FINISHED:
            result = server.result()
            uploaded = {u for u in range(router.n)
                        if any(isinstance(m, Upload) for m in router.sent.get(u, []))}
            assert set(result.contributors) <= uploaded
            np.testing.assert_array_equal(result.int_sum,
                                          router.expected_int_sum(result.contributors))
            router.check_result(result)


EnrolledRound.TestCase.settings = settings(EnrolledRound.TestCase.settings,
                                           stateful_step_count=40)
TestEnrolledRound = EnrolledRound.TestCase
