"""The kit catches broken protocols: each deliberately broken variant below fails the kit's
state machine (or its conformance suite), and the example hypothesis shrinks to is recorded
and checked to show the bug, not some other failure.

- a client that answers an unmask request with both kinds of share of a neighbour;
- a server that releases the sum before unmasking it;
- a client whose masks do not cancel;
- a server that half-applies a message it then refuses (adds a duplicate input, then raises).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.reporting import with_reporter
from hypothesis.stateful import run_state_machine_as_test

import protocols
from protocols.base import AggregateResult, ProtocolSpec
from protocols.plaintext import PlainInput, PlaintextServer, ServerState
from protocols.secagg import SecAggClient, SecAggServer
from protocols.secagg._state import Kind, ServerStage
from protocols.secagg.messages import Share, Shares
from protocols.testing import ProtocolConformance, round_machine
from secagg.errors import ProtocolError, RangeCheckError


# -- the broken variants --------------------------------------------------------------------
class BothSharesClient(SecAggClient):
    """Reveals a surviving neighbour's key share next to its seed share."""

    def _leaky_unmask(self, msg: Any) -> list[Any]:
        held = dict(self._held)
        (resp,) = SecAggClient._on_unmask_request(self, msg)
        survivors = set(msg.survivors) - {self.client_id}
        extra = tuple(Share(v, held[v][1]) for v in sorted(held) if v in survivors)[:1]
        return [dataclasses.replace(resp, key_shares=Shares.of((*resp.key_shares, *extra)))]

    _HANDLERS = {**SecAggClient._HANDLERS, Kind.UNMASK_REQUEST: _leaky_unmask}


class EarlyReleaseServer(SecAggServer):
    """Releases the masked sum as soon as the masked inputs are in."""

    def _release_early(self) -> list[Any]:
        # Decodes without finalize's range check too (a check would refuse the masked sum:
        # the broken server skips both the unmasking and the check).
        int_sum = self.config.encoding.centre(self._acc.copy())
        values, weight = self.config.encoding.decode(int_sum)
        self._result = AggregateResult(values, weight, tuple(sorted(self._masked)), int_sum,
                                       None)
        return []

    _CLOSERS = {**SecAggServer._CLOSERS, ServerStage.COLLECT_MASKED: _release_early}

    @property
    def finished(self) -> bool:
        return self._result is not None


class UncancelledMaskClient(SecAggClient):
    """Its pairwise masks leave a residue of one unit in the first coordinate (a mask its
    neighbour's opposite mask does not cancel exactly). A residue as large as a whole mask
    would be refused by the server's range check (a typed abort, which the kit accepts); one
    unit passes it and gives a wrong sum, which the kit must catch."""

    def _bad_mask(self, msg: Any) -> list[Any]:
        (out,) = SecAggClient._on_share_forward(self, msg)
        masked = np.array(out.masked, copy=True)
        masked[0] += masked.dtype.type(1)
        return [dataclasses.replace(out, masked=masked)]

    _HANDLERS = {**SecAggClient._HANDLERS, Kind.SHARE_FORWARD: _bad_mask}


class HalfApplyServer(PlaintextServer):
    """Adds a duplicate input to the sum, then refuses it: validate-then-commit, broken.
    (Where every weight is at its maximum, the server's range check refuses the release: a
    typed abort, the protocol's second line of defence.)"""

    def receive(self, msg: Any) -> list[Any]:
        if (isinstance(msg, PlainInput) and self.state is ServerState.COLLECTING
                and msg.sender in self._seen):
            np.add(self._acc, msg.encoded, out=self._acc)
            raise ProtocolError(f"client {msg.sender} sent its input twice")
        return super().receive(msg)


def _broken(base: str, **roles: Any) -> ProtocolSpec:
    return dataclasses.replace(protocols.get(base), name=f"broken-{base}", **roles)


# -- running the kit against them -------------------------------------------------------
def _falsify(spec: ProtocolSpec, examples: int = 300,
             **options: Any) -> tuple[BaseException, str]:
    """Run the kit's state machine until it fails; the exception and the shrunk program."""
    lines: list[str] = []
    machine = round_machine(spec, max_n=4, max_dim=2, **options)
    with with_reporter(lines.append):
        try:
            run_state_machine_as_test(machine, settings=settings(
                max_examples=examples, stateful_step_count=15, deadline=None, database=None,
                derandomize=True, print_blob=False, report_multiple_bugs=False,
                suppress_health_check=list(HealthCheck)))
        except Exception as exc:  # noqa: BLE001 - whatever the kit raised is the finding
            notes = getattr(exc, "__notes__", [])
            return exc, "\n".join([*lines, *map(str, notes)])
    raise AssertionError(f"the kit did not catch {spec.name}")


def test_both_shares_of_a_client_are_caught() -> None:
    exc, program = _falsify(_broken("secagg", client=BothSharesClient))
    assert isinstance(exc, AssertionError) and "both shares" in str(exc)
    assert "state.build(" in program  # the shrunk example is recorded
    print(program)


def test_a_release_before_unmasking_is_caught() -> None:
    exc, program = _falsify(_broken("secagg+", server=EarlyReleaseServer))
    assert isinstance(exc, AssertionError) and "not the exact sum" in str(exc)
    assert "state.build(" in program
    print(program)


def test_masks_that_do_not_cancel_are_caught() -> None:
    exc, program = _falsify(_broken("secagg", client=UncancelledMaskClient))
    assert isinstance(exc, AssertionError) and "not the exact sum" in str(exc)
    assert "state.build(" in program
    print(program)


def test_a_half_applied_refusal_is_caught() -> None:
    # A duplicate must reach the server while it collects: rarer than the other bugs' triggers.
    exc, program = _falsify(_broken("plaintext", server=HalfApplyServer), examples=2000)
    assert isinstance(exc, AssertionError) and "not the exact sum" in str(exc)
    # Shrunk to the one thing that matters: a duplicated frame delivered to the server.
    assert "state.duplicate(" in program
    print(program)


def test_the_conformance_suite_catches_them_too() -> None:
    class Early(ProtocolConformance):
        protocol = _broken("secagg+", server=EarlyReleaseServer)

    class Half(ProtocolConformance):
        protocol = _broken("plaintext", server=HalfApplyServer)

    with pytest.raises(AssertionError, match="not the exact sum"):
        Early().test_full_round_releases_the_sum()
    # Its weights are all at their maximum, so the duplicate also breaks the range check: the
    # test fails either on the wrong sum or on the refused release, never passes.
    with pytest.raises((AssertionError, RangeCheckError)):
        Half().test_a_duplicate_to_the_server_is_refused_and_never_counted_twice()
    # ... while the genuine protocols pass the same checks.
    class Genuine(ProtocolConformance):
        protocol = "plaintext"

    Genuine().test_a_duplicate_to_the_server_is_refused_and_never_counted_twice()
