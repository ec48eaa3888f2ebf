"""A hypothesis state machine over every role of one round of any registered protocol.

Hypothesis builds a round from what the spec declares (:func:`.strategies.round_configs`:
n, dim, the encoding, graph parameters and the active variant where the protocol takes them;
inputs and weights), and then interleaves, in any order:

- delivering the oldest frame in flight (or several), or any other one (reordering);
- duplicating a frame, losing one, or holding one back past the stage's deadline;
- killing a client for good (nothing more reaches it);
- closing the current stage (the deadline passes, whatever is still in flight).

Whatever happens, these must hold:

- the only errors a role raises are :class:`~secagg.errors.ProtocolError` and its
  refinements (refused, late, dropout); anything else escapes and fails the run;
- a client that aborted sends nothing more;
- every check in :data:`INVARIANTS` (e.g. no client reveals both a seed share and a key share
  of the same client, for messages that carry both kinds);
- the round ends either with a release that is the exact sum of its contributors' encoded
  inputs (:meth:`protocols.harness.Router.check_result`: exact in integer units, weights
  too, never fewer than ``spec.min_cohort`` contributors, only clients that sent something),
  or with a typed abort (a ProtocolError from the server or a helper) and no result.
  Never with a wrong sum.

Use it for your own protocol::

    from protocols.testing import round_machine
    TestMyRound = round_machine("my-protocol").TestCase      # collected by pytest
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from hypothesis import note
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from protocols.base import ProtocolSpec
from protocols.harness import Router
from protocols.testing.strategies import inputs_and_weights, round_configs, seeds
from secagg.errors import ProtocolError, UsageError
from secagg.rng import Csprng

__all__ = ["INVARIANTS", "RoundMachine", "never_both_shares", "round_machine"]


def never_both_shares(router: Router) -> None:
    """No client reveals both kinds of share (self-mask seed and mask key) of the same client
    in a round, and none answers two unmask requests. Applies to every message that carries
    ``seed_shares`` and ``key_shares`` (the SecAgg unmask response)."""
    seed_owners: set[int] = set()
    keys: set[int] = set()
    for u in range(router.n):
        responses = [m for m in router.sent.get(u, [])
                     if hasattr(m, "seed_shares") and hasattr(m, "key_shares")]
        if len(responses) > 1:
            raise AssertionError(f"client {u} answered two unmask requests")
        for m in responses:
            mine_seed = {s.owner for s in m.seed_shares}
            mine_key = {s.owner for s in m.key_shares}
            if mine_seed & mine_key:
                raise AssertionError(f"client {u} revealed both shares of "
                                     f"{sorted(mine_seed & mine_key)}")
            seed_owners |= mine_seed
            keys |= mine_key
    both = seed_owners & keys
    if both:
        raise AssertionError(f"both shares of {sorted(both)} were revealed")


#: checks run after every step of every :class:`RoundMachine` (``router -> None``, raising
#: AssertionError); append your own for a protocol-specific privacy property.
INVARIANTS: list[Callable[[Router], None]] = [never_both_shares]


class RoundMachine(RuleBasedStateMachine):
    """The machine; :func:`round_machine` makes one for a given protocol."""

    spec: ClassVar[ProtocolSpec]
    config_options: ClassVar[dict[str, Any]] = {}
    max_n: ClassVar[int] = 6
    max_dim: ClassVar[int] = 4
    router: Router

    @initialize(data=st.data(), seed=seeds)
    def build(self, data: st.DataObject, seed: int) -> None:
        spec, config = data.draw(round_configs(self.spec, max_n=self.max_n,
                                               max_dim=self.max_dim, **self.config_options),
                                 label="round")
        inputs, weights = data.draw(inputs_and_weights(config.n_clients, config.dim),
                                    label="inputs and weights")
        self.router = Router(spec, config, Csprng.from_seed(seed), inputs, weights)
        self.errors: list[ProtocolError] = []
        self.server_errors: list[ProtocolError] = []
        self.sent_when_aborted: dict[int, int] = {}

    # -- rules -------------------------------------------------------------------------
    def _deliver(self, index: int) -> None:
        env = self.router.pending[index]
        try:
            self.router.deliver(index)
        except ProtocolError as exc:  # refused; anything else fails the run
            self.errors.append(exc)
            if env.recipient < 0:
                self.server_errors.append(exc)
        self._note_aborts()

    def _note_aborts(self) -> None:
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
    def deliver_several(self, data: st.DataObject) -> None:
        for _ in range(data.draw(st.integers(1, 2 * self.router.n), label="count")):
            if not self.router.pending:
                break
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

    @precondition(lambda self: bool(self.router.pending))
    @rule(data=st.data())
    def lose(self, data: st.DataObject) -> None:
        self.router.drop(data.draw(st.integers(0, len(self.router.pending) - 1), label="index"))

    @precondition(lambda self: bool(self.router.pending))
    @rule(data=st.data())
    def delay_past_deadline(self, data: st.DataObject) -> None:
        self.router.delay(data.draw(st.integers(0, len(self.router.pending) - 1),
                                    label="index"))

    @rule(data=st.data())
    def kill(self, data: st.DataObject) -> None:
        self.router.kill(data.draw(st.integers(0, self.router.n - 1), label="client"))

    @precondition(lambda self: not self.router.finished)
    @rule()
    def close_stage(self) -> None:
        self._close()

    # -- invariants --------------------------------------------------------------------
    @invariant()
    def aborted_clients_stay_silent(self) -> None:
        for u, count in self.sent_when_aborted.items():
            if not self.router.clients[u].aborted:
                raise AssertionError(f"client {u} aborted, then un-aborted")
            if len(self.router.sent.get(u, [])) != count:
                raise AssertionError(f"client {u} sent a message after it aborted")

    @invariant()
    def protocol_invariants(self) -> None:
        for check in INVARIANTS:
            check(self.router)

    @invariant()
    def a_result_is_the_exact_sum(self) -> None:
        if self.router.finished:
            self._check_release()

    def _check_release(self) -> None:
        router = self.router
        result = router.server.result()
        senders = {u for u in range(router.n) if router.sent.get(u)}
        if not set(result.contributors) <= senders:
            raise AssertionError(f"contributors {result.contributors} include clients that "
                                 f"never sent anything (senders {sorted(senders)})")
        router.check_result(result)

    def teardown(self) -> None:
        router = getattr(self, "router", None)
        if router is None:
            return
        for _ in range(16):  # finish the round as a driver would
            while router.pending:
                self._deliver(0)
            if router.finished:
                break
            self._close()
        self.aborted_clients_stay_silent()
        self.protocol_invariants()
        note(f"finished={router.finished} errors={[type(e).__name__ for e in self.errors]}")
        if router.finished:
            self._check_release()
            return
        if not self.server_errors:
            raise AssertionError("the round neither released a sum nor aborted with a typed "
                                 "error from the server or a helper")
        try:
            router.server.result()
        except UsageError:
            pass
        else:
            raise AssertionError("an unfinished round released a result")


def round_machine(spec_or_name: ProtocolSpec | str, *, max_n: int = 6, max_dim: int = 4,
                  base: type[RoundMachine] = RoundMachine,
                  **config_options: Any) -> type[RoundMachine]:
    """A :class:`RoundMachine` for one protocol; its ``.TestCase`` is a unittest test case.

    Args:
        base: the machine to specialise: a subclass of :class:`RoundMachine` that adds
            invariants (``@invariant()`` methods) or release checks (override
            ``_check_release``, calling the base) for a mode of your protocol, so several
            protocols share them.
        config_options: fixed ``make_config`` keywords (e.g. ``active=True``, or
            ``enrolled=True`` for the masking protocols' enrolled mode).

    Example (tests/test_enrolled_stateful.py does this)::

        class EnrolledChecks(RoundMachine):
            @invariant()
            def my_property(self) -> None: ...

        TestEnrolled = round_machine("secagg", base=EnrolledChecks, enrolled=True).TestCase

    Raises:
        UsageError: ``base`` is not a RoundMachine.
    """
    if not (isinstance(base, type) and issubclass(base, RoundMachine)):
        raise UsageError(f"base must be a subclass of RoundMachine, got {base!r}")
    from protocols.registry import get

    spec = get(spec_or_name) if isinstance(spec_or_name, str) else spec_or_name
    name = "".join(ch if ch.isalnum() else "_" for ch in spec.name)
    return type(f"RoundMachine_{name}", (base,), {
        "spec": spec, "config_options": dict(config_options), "max_n": max_n,
        "max_dim": max_dim, "__module__": __name__,
    })
