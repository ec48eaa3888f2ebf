"""One conformance suite for every protocol (dp_accounting's ``PrivacyAccountantTest`` idea).

Subclass :class:`ProtocolConformance` in a test module, name the protocol, and pytest (or
unittest discovery, for the plain-method tests) runs the whole contract against it::

    from protocols.testing import ProtocolConformance

    class TestMyProtocol(ProtocolConformance):
        protocol = "my-protocol"          # a registered name, or the ProtocolSpec itself
        options = {}                      # fixed make_config keywords, e.g. {"active": True}

What every protocol must do:

- a full round releases the sum over its contributors: exactly in fixed-point units for an
  exact protocol, within the stochastic rounding (and the scheme's own error) otherwise;
- weighted rounds release sum(w*x) and sum(w) through the same secure sum;
- clients that drop before sending their input are left out and the round goes on; a
  dropout at any stage (the protocol's own stages) gives the sum of who contributed, and so
  does any dropout schedule hypothesis draws;
- fewer than ``min_clients`` contributors, and never fewer than ``spec.min_cohort``, is
  refused with a typed error, never released;
- ``result()`` before the round finished is a UsageError;
- a message with the wrong version, round, recipient or sender is a ProtocolError; a client
  that gets one aborts, the server and helpers refuse it and stay where they were;
- a message for a stage that has closed is a LateMessageError and changes nothing;
- a duplicate is a ProtocolError, changes nothing, and is never counted twice;
- every message a round sends survives the wire codec unchanged, and is registered;
- under any adversarial network schedule (reorder, duplicate, drop, delay past the
  deadline) the release is exact or the round aborts with a typed error;
- the transition tables walk cleanly (:mod:`.walk`), and the state machine
  (:mod:`.machine`) finds nothing.

Sizes stay small (``n`` = 5 clients, ``dim`` = 16 values by default) so homomorphic protocols
run quickly. Assertions raise AssertionError; a check that does not apply to the protocol (no
helper roles) raises ``unittest.SkipTest``, which pytest reports as a skip.
"""

from __future__ import annotations

import dataclasses
import unittest
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import numpy as np
from hypothesis import given, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import run_state_machine_as_test

from protocols.base import DECRYPTOR, PROTOCOL_VERSION, SERVER, Message, ProtocolSpec
from protocols.harness import Envelope, Router
from protocols.testing.compare import assert_messages_equal, role_state
from protocols.testing.machine import round_machine
from protocols.testing.strategies import (
    dropout_schedules_for,
    inputs_and_weights,
    network_schedules,
    round_configs,
    seeds,
)
from protocols.testing.walk import walk_client, walk_spec_tables
from secagg import wire
from secagg.encoding import EncodingConfig
from secagg.errors import ConfigError, DropoutError, LateMessageError, ProtocolError, UsageError
from secagg.rng import Csprng

__all__ = ["ProtocolConformance"]


def expect(condition: bool, message: str = "") -> None:
    """``assert`` that survives ``python -O``."""
    if not condition:
        raise AssertionError(message)


@contextmanager
def raises(kind: type[BaseException] | tuple[type[BaseException], ...],
           match: str | None = None) -> Iterator[None]:
    """Expect the block to raise ``kind`` (whose text contains ``match``, if given)."""
    try:
        yield
    except kind as exc:
        if match is not None and match not in str(exc):
            raise AssertionError(f"{type(exc).__name__}({exc}) does not mention {match!r}") \
                from exc
        return
    raise AssertionError(f"expected {kind}, nothing was raised")


def _to_server(env: Envelope) -> bool:
    return env.recipient == SERVER and env.sender >= 0


class ProtocolConformance:
    """The suite; subclass it with ``protocol`` set (see the module docstring)."""

    #: the protocol under test: a registered name or a ProtocolSpec
    protocol: ClassVar[str | ProtocolSpec]
    #: fixed make_config keywords for every round of the suite
    options: ClassVar[dict[str, Any]] = {}
    n: ClassVar[int] = 5
    dim: ClassVar[int] = 16
    #: hypothesis examples for the property tests and the state machine
    examples: ClassVar[int] = 15

    # -- building rounds ---------------------------------------------------------------
    @classmethod
    def spec(cls) -> ProtocolSpec:
        """The protocol under test."""
        from protocols.registry import get

        p = cls.protocol
        return get(p) if isinstance(p, str) else p

    def router(self, seed: int | str = 1, *, n: int | None = None, dim: int | None = None,
               start: bool = True, drop_at: dict[int, int] | None = None,
               weights: list[float] | None = None, **kw: Any) -> Router:
        """A round of the protocol under test (with :attr:`options` and ``kw``)."""
        spec = self.spec()
        config = spec.make_config(n or self.n, dim or self.dim, **{**self.options, **kw})
        return Router(spec, config, Csprng.from_seed(f"conformance/{spec.name}/{seed}"),
                      weights=weights, drop_at=drop_at, start=start)

    def _hold_first(self, router: Router, where: Callable[[Envelope], bool]) -> Envelope:
        """Deliver oldest first until a frame that ``where`` selects is in flight; take it."""
        router.run_until(lambda: router.find(where) is not None)
        env = router.take(where)
        if env is None:  # raised, not asserted: survives python -O and narrows the type
            raise AssertionError("no frame that the test waits for was ever in flight")
        return env

    # -- the sum -----------------------------------------------------------------------
    def test_full_round_releases_the_sum(self) -> None:
        router = self.router()
        result = router.run()
        expect(result.contributors == tuple(range(self.n)), f"{result.contributors}")
        router.check_result(result)
        expect(router.server.finished)

    def test_weighted_round_sums_w_times_x_and_w(self) -> None:
        # Weights that are exact in 16 fraction bits make sum(w) exact as well.
        weights = [0.5, 2.0, 1.25, 0.75, 1.5, 1.0, 0.25, 1.75][: self.n]
        for seed in (2, 3):
            encoding = EncodingConfig(max_clients=self.n, max_weight=2.0)
            router = self.router(seed, encoding=encoding, weights=weights)
            result = router.run()
            router.check_result(result)
            tol = self.n * 2.0**-16 + 1e-3
            expect(abs(result.total_weight - sum(weights)) <= tol)
            if self.spec().exact:
                expect(result.total_weight == sum(weights), f"{result.total_weight}")
            want, _ = router.expected_float_sum(range(self.n))
            np.testing.assert_allclose(result.mean, want / sum(weights), atol=1e-3)

    def test_dropouts_before_input_are_left_out(self) -> None:
        router = self.router(drop_at={1: 0, 3: 0})
        result = router.run()
        expect(result.contributors == tuple(u for u in range(self.n) if u not in (1, 3)),
               f"{result.contributors}")
        router.check_result(result)

    def test_a_dropout_at_any_stage_gives_the_sum_of_who_contributed(self) -> None:
        for stage in range(len(self.router(start=False).stages)):
            router = self.router(10 + stage, drop_at={2: stage})
            result = router.run()
            router.check_result(result)
            expect(set(result.contributors) >= set(range(self.n)) - {2})
            if stage == 0:
                expect(2 not in result.contributors)

    def test_fewer_than_min_clients_is_refused(self) -> None:
        router = self.router(min_clients=self.n, drop_at={0: 0})
        with raises(DropoutError):
            router.run()
        expect(not router.server.finished)
        with raises(UsageError):
            router.server.result()

    def test_no_sum_below_min_cohort_is_released(self) -> None:
        spec = self.spec()
        keep = spec.min_cohort - 1
        drop = {u: 0 for u in range(keep, self.n)}
        try:  # the weakest threshold the protocol accepts: the floor must hold even then
            kw: dict[str, Any] = {"threshold": 1} if "threshold" in spec.keywords else {}
            router = self.router(drop_at=drop, **kw)
        except ConfigError:  # e.g. an active variant that needs t > (m + c)/2
            router = self.router(drop_at=drop)
        with raises(ProtocolError):  # a DropoutError, or a client refusing to unmask
            router.run(swallow=LateMessageError)
        with raises(UsageError):
            router.server.result()

    # -- API misuse --------------------------------------------------------------------
    def test_result_before_the_round_finishes_is_a_usage_error(self) -> None:
        router = self.router(start=False)
        with raises(UsageError):
            router.server.result()
        router.start()
        with raises(UsageError):
            router.server.result()
        router.deliver(0)
        while router.pending and not router.finished:
            router.deliver(0)
            if not router.finished:
                with raises(UsageError):
                    router.server.result()

    # -- headers -----------------------------------------------------------------------
    def test_client_refuses_a_bad_header_and_aborts(self) -> None:
        bad_headers: dict[str, Callable[[Message], dict[str, int]]] = {
            "version": lambda m: {"version": PROTOCOL_VERSION + 1},
            "round": lambda m: {"round": m.round + 1},
            "recipient": lambda m: {"recipient": 1 if m.recipient != 1 else 2},
            "sender": lambda m: {"sender": self.n + 3 if m.sender == SERVER else SERVER - 5},
        }
        for what, change in bad_headers.items():
            router = self.router()
            env = self._hold_first(router, lambda e: e.recipient == 0)
            msg = env.open()
            with raises(ProtocolError):
                router.send(dataclasses.replace(msg, **change(msg)), to=0)
            expect(router.clients[0].aborted, what)
            expect(router.sent.get(0, []) == [], what)
            # Aborted for good: even the genuine message gets nothing out of it now.
            with raises(ProtocolError):
                router.send(env, to=0)
            expect(router.sent.get(0, []) == [], what)

    def _server_bad_headers(self, msg: Message) -> dict[str, dict[str, int]]:
        changes = {
            "version": {"version": PROTOCOL_VERSION + 1},
            "round": {"round": msg.round + 1},
            "recipient": {"recipient": DECRYPTOR if msg.recipient == SERVER else SERVER},
            "sender outside the cohort": {"sender": self.n},
            "sender unknown role": {"sender": DECRYPTOR - 7},
        }
        if msg.sender >= 0:  # a client's message, claimed by the server or the decryptor
            changes["sender server"] = {"sender": SERVER}
            changes["sender decryptor"] = {"sender": DECRYPTOR}
        else:  # a role's message, claimed by a client
            changes["sender a client"] = {"sender": 0}
        return changes

    def _refuse_bad_headers_at(self, router: Router, where: Callable[[Envelope], bool]) -> None:
        env = self._hold_first(router, where)
        address = env.recipient
        party = router.party(address)
        msg = env.open()
        for what, change in self._server_bad_headers(msg).items():
            before = role_state(party)
            with raises(ProtocolError):
                router.send(dataclasses.replace(msg, **change), to=address)
            expect(role_state(party) == before, what)
        router.send(env)
        result = router.run()
        expect(result.contributors == tuple(range(self.n)))
        router.check_result(result)

    def test_server_refuses_bad_headers_and_stays_put(self) -> None:
        self._refuse_bad_headers_at(self.router(), _to_server)

    def test_helpers_refuse_bad_headers_and_stay_put(self) -> None:
        router = self.router()
        if not router.helpers:
            raise unittest.SkipTest(f"{self.spec().name} has no helper roles")
        self._refuse_bad_headers_at(router, lambda e: e.recipient in router.helpers)

    # -- late and duplicate messages ---------------------------------------------------
    def test_a_message_after_its_stage_closed_is_late_and_changes_nothing(self) -> None:
        router = self.router()
        held = self._hold_first(router, _to_server)
        router.flush()
        expect(router.find(_to_server) is None)
        router.close()
        before = role_state(router.server)
        with raises(LateMessageError):
            router.send(held)
        expect(role_state(router.server) == before)
        result = router.run()
        expect(held.sender not in result.contributors)
        router.check_result(result)
        # After the round, anything more is late too, and the result stays what it was.
        with raises(LateMessageError):
            router.send(held)
        expect(router.server.result() is result)

    def test_a_duplicate_to_the_server_is_refused_and_never_counted_twice(self) -> None:
        router = self.router()
        env = self._hold_first(router, _to_server)
        router.send(env)
        before = role_state(router.server)
        with raises(ProtocolError):
            router.send(env)
        expect(role_state(router.server) == before)
        result = router.run()
        expect(result.contributors == tuple(range(self.n)))
        router.check_result(result)

    def test_a_duplicate_to_a_client_is_refused(self) -> None:
        router = self.router()
        env = self._hold_first(router, lambda e: e.recipient == 0)
        router.send(env)
        sent = len(router.sent[0])
        with raises(ProtocolError):
            router.send(env)
        expect(router.clients[0].aborted)
        expect(len(router.sent[0]) == sent)

    def test_every_duplicate_to_a_helper_is_refused(self) -> None:
        # A replayed request to a helper is the peer's fault: a ProtocolError (a one-shot
        # error may refine it), so drivers that refuse peer errors carry on.
        router = self.router()
        if not router.helpers:
            raise unittest.SkipTest(f"{self.spec().name} has no helper roles")
        duplicated = []
        for _ in range(8):
            while router.pending:
                env = router.pending[0]
                router.deliver(0)
                if env.recipient in router.helpers:
                    party = router.party(env.recipient)
                    before = role_state(party)
                    with raises(ProtocolError):
                        router.send(env)
                    expect(role_state(party) == before)
                    duplicated.append(env.kind)
            if router.finished:
                break
            router.close()
        expect(router.finished)
        router.check_result(router.server.result())
        expect(len(duplicated) >= 1, "no message ever reached a helper")

    # -- the codec ---------------------------------------------------------------------
    def test_every_message_kind_round_trips_through_the_codec(self) -> None:
        stages = self.router(start=False).stage_names
        # One client drops at the last stage, so that messages about dropouts are non-empty.
        router = self.router(drop_at={self.n - 1: len(stages) - 1})
        router.run()
        kinds = set()
        registered = set(wire.registered().values())
        for msg in router.log:
            frame = wire.encode(msg)
            again: Message = wire.decode(frame)
            assert_messages_equal(again, msg)
            expect(wire.encode(again) == frame)
            expect(type(msg) in registered, f"{type(msg).__name__} is not wire-registered")
            expect(msg.version == PROTOCOL_VERSION)
            kinds.add(msg.KIND)
        # Every stage a client goes through was exercised, and so was the way back.
        expect(set(stages) <= {k.name for k in kinds})
        expect(any(m.recipient == SERVER and m.sender >= 0 for m in router.log))

    # -- tables ------------------------------------------------------------------------
    def test_the_transition_tables_walk_cleanly(self) -> None:
        spec = self.spec()
        results = walk_spec_tables(spec, spec.make_config(self.n, self.dim, **self.options))
        expect(results["client"].moved == len(spec.client_stages(
            spec.make_config(self.n, self.dim, **self.options))))

    def test_every_client_state_x_stage_message_moves_or_aborts(self) -> None:
        pairs = walk_client(self.spec(), self.options, n=min(self.n, 4), dim=3)
        expect(pairs >= 1)

    # -- properties --------------------------------------------------------------------
    def test_any_dropout_schedule_releases_the_exact_sum_or_aborts(self) -> None:
        spec = self.spec()

        @settings(max_examples=self.examples, deadline=None, database=None)
        @given(data=st.data(), seed=seeds)
        def check(data: st.DataObject, seed: int) -> None:
            _, config = data.draw(round_configs(spec, **self.options), label="round")
            inputs, weights = data.draw(inputs_and_weights(config.n_clients, config.dim))
            drop_at = data.draw(dropout_schedules_for(spec, config), label="drop_at")
            router = Router(spec, config, Csprng.from_seed(seed), inputs, weights,
                            drop_at=drop_at)
            try:
                result = router.run()
            except ProtocolError as exc:  # too few left: the server or a client refuses
                note(f"aborted: {type(exc).__name__}: {exc}")
                expect(not router.finished)
                return
            router.check_result(result)
            silent_before_input = {u for u, s in drop_at.items() if s == 0}
            expect(not silent_before_input & set(result.contributors))

        check()

    def test_any_network_schedule_releases_the_exact_sum_or_aborts(self) -> None:
        spec = self.spec()

        @settings(max_examples=self.examples, deadline=None, database=None)
        @given(data=st.data(), seed=seeds)
        def check(data: st.DataObject, seed: int) -> None:
            _, config = data.draw(round_configs(spec, **self.options), label="round")
            router = Router(spec, config, Csprng.from_seed(seed))
            router.apply(data.draw(network_schedules(), label="network"),
                         swallow=ProtocolError)
            try:  # refusals of late or replayed frames are expected: record them
                result = router.run(swallow=ProtocolError)
            except UsageError as exc:  # stalled: only after a typed abort of the round
                note(f"stalled after {[type(e).__name__ for e in router.errors]}: {exc}")
                expect(not router.finished)
                expect(any(isinstance(e, DropoutError) for e in router.errors),
                       f"the round stalled without a typed abort: {exc}")
                return
            router.check_result(result)

        check()

    def test_the_state_machine_finds_nothing(self) -> None:
        machine = round_machine(self.spec(), **self.options)
        run_state_machine_as_test(machine, settings=settings(  # type: ignore[no-untyped-call]
            max_examples=self.examples, stateful_step_count=30, deadline=None, database=None))
