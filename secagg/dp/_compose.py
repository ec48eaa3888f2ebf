"""Composition machinery shared by :mod:`secagg.dp.ledger`: argument checks, and the
composed privacy state (merged unsampled Gaussians plus a ``dp-accounting`` accountant).

Private to secagg.dp; the public surface is :mod:`secagg.dp.ledger`.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

from secagg.dp.events import (
    ComposedEvent,
    DiscreteGaussianEvent,
    DpEvent,
    PoissonSampledEvent,
    SelfComposedEvent,
    check_event,
    import_dp_accounting,
    to_dp_accounting,
)
from secagg.errors import ConfigError, SecAggTypeError

Accountant: TypeAlias = Literal["rdp", "pld"]
ACCOUNTANTS: tuple[Accountant, ...] = ("rdp", "pld")


# -- validation -----------------------------------------------------------------------------


def real_number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SecAggTypeError(f"{name} must be a number, got {type(value).__name__}")
    return float(value)


def check_delta(delta: object) -> float:
    d = real_number("delta", delta)
    if not (math.isfinite(d) and 0 < d < 1):
        raise ConfigError(f"delta must be in (0, 1), e.g. 1e-5 or 1/(number of clients), got {d}")
    return d


def check_rate(q: object) -> float:
    r = real_number("sampling_rate", q)
    if not (math.isfinite(r) and 0 < r <= 1):
        raise ConfigError(f"sampling_rate must be in (0, 1], e.g. 0.01 or 1.0, got {r}")
    return r


def check_rounds(rounds: object, name: str = "rounds") -> int:
    if isinstance(rounds, bool) or not isinstance(rounds, int):
        raise SecAggTypeError(f"{name} must be an int, got {type(rounds).__name__}")
    if rounds < 1:
        raise ConfigError(f"{name} must be >= 1, got {rounds}")
    return rounds


def check_positive(name: str, value: object, hint: str) -> float:
    v = real_number(name, value)
    if not (math.isfinite(v) and v > 0):
        raise ConfigError(f"{name} must be finite and > 0, {hint}, got {v}")
    return v


def check_accountant(accountant: object) -> Accountant:
    if accountant == "rdp":
        return "rdp"
    if accountant == "pld":
        return "pld"
    raise ConfigError(f"accountant must be one of {', '.join(ACCOUNTANTS)}, got {accountant!r}")


# -- accounting state -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Split:
    """An event split into merged unsampled Gaussians and everything else."""

    gauss_inv_sq: float  # sum over rounds of z^-2 for unsampled Gaussian releases
    rest: tuple[tuple[DpEvent, int], ...]  # other events with their repeat counts


def split_event(event: DpEvent, count: int) -> Split:
    check_event(event)  # SecAggTypeError for anything else
    if isinstance(event, DiscreteGaussianEvent):
        return Split(count / event.noise_multiplier**2, ())
    if isinstance(event, PoissonSampledEvent):
        if event.sampling_rate == 1:
            return split_event(event.event, count)
        inner = split_event(event.event, 1)
        if inner.rest:
            raise ConfigError("nested Poisson sampling is not supported; sample once per round")
        # Every release inside one sample is a Gaussian on the same clients: one Gaussian.
        merged = DiscreteGaussianEvent(inner.gauss_inv_sq**-0.5)
        return Split(0.0, ((PoissonSampledEvent(event.sampling_rate, merged), count),))
    if isinstance(event, SelfComposedEvent):
        return split_event(event.event, count * event.count)
    if isinstance(event, ComposedEvent):
        parts = [split_event(e, count) for e in event.events]
        return Split(
            sum(p.gauss_inv_sq for p in parts), tuple(r for p in parts for r in p.rest)
        )
    raise SecAggTypeError(  # pragma: no cover
        f"expected a secagg.dp event, got {type(event).__name__}")


class State:
    """Composed privacy loss: merged Gaussian part plus a dp_accounting accountant."""

    __slots__ = ("accountant", "gauss_inv_sq", "has_rest", "kind")

    def __init__(self, kind: Accountant) -> None:
        self.kind = kind
        self.gauss_inv_sq = 0.0
        self.accountant: Any = None
        self.has_rest = False

    @staticmethod
    def _new_accountant(kind: Accountant) -> Any:
        dpa = import_dp_accounting()
        if kind == "rdp":
            return dpa.rdp.RdpAccountant()
        return dpa.pld.PLDAccountant()

    def plus(self, split: Split, times: int) -> State:
        """A new state with ``split`` composed ``times`` more times; self is unchanged."""
        out = State(self.kind)
        out.gauss_inv_sq = self.gauss_inv_sq + times * split.gauss_inv_sq
        out.has_rest = self.has_rest or bool(split.rest)
        if split.rest:
            out.accountant = (
                copy.deepcopy(self.accountant)
                if self.accountant is not None
                else self._new_accountant(self.kind)
            )
            for event, count in split.rest:
                out.accountant.compose(to_dp_accounting(event), count * times)
        else:
            out.accountant = self.accountant  # never mutated in place, safe to share
        return out

    def epsilon(self, delta: float) -> float:
        dpa = import_dp_accounting()
        if self.gauss_inv_sq == 0 and not self.has_rest:
            return 0.0
        if not self.has_rest:
            z = self.gauss_inv_sq**-0.5
            if self.kind == "pld":
                return float(dpa.get_epsilon_gaussian(z, delta))
            acc = self._new_accountant("rdp")
            acc.compose(dpa.GaussianDpEvent(z))
            return float(acc.get_epsilon(delta))
        acc = self.accountant
        if self.gauss_inv_sq > 0:
            acc = copy.deepcopy(acc)
            acc.compose(dpa.GaussianDpEvent(self.gauss_inv_sq**-0.5))
        return float(acc.get_epsilon(delta))


def epsilon_of(event: DpEvent, rounds: int, delta: float, kind: Accountant) -> float:
    return State(kind).plus(split_event(event, 1), rounds).epsilon(delta)
