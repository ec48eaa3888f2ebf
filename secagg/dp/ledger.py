"""Privacy accounting: compose DP events across rounds and enforce an epsilon budget.

:class:`PrivacyLedger` keeps the events charged so far and reports epsilon at a fixed delta
after every round. It refuses, with :class:`secagg.errors.BudgetExceededError`, a round that
would take epsilon over the budget, and a refused round leaves the ledger unchanged.
:func:`compute_epsilon` and :func:`noise_multiplier_for` are the same accounting as pure
functions, for planning a run; :meth:`PrivacyLedger.noise_multiplier_for` is the one
calibration search (the pure function runs it on an empty ledger), counting what a ledger has
already spent.

Accounting is done by the ``dp-accounting`` package (the ``dp`` extra):

- ``"rdp"``: ``dp_accounting.rdp.RdpAccountant`` (Renyi DP, Mironov 2017; sampled Gaussian of
  Mironov, Talwar and Zhang 2019) with its default orders.
- ``"pld"``: ``dp_accounting.pld.PLDAccountant`` (privacy loss distributions, tighter).

Events are translated by :func:`secagg.dp.events.to_dp_accounting`: a discrete Gaussian is
accounted as the Gaussian with the same noise multiplier (see that module for why), Poisson
sampling as ``PoissonSampledDpEvent``, repeated rounds as ``SelfComposedDpEvent``. Rounds of
unsampled Gaussian noise are first merged exactly into one Gaussian with
``z^-2 = sum(z_i^-2)`` (Gaussian composition, Dong, Roth and Su 2022); with ``"pld"`` a pure
Gaussian is then converted by the analytic Gaussian formula of Balle and Wang (ICML 2018),
which the PLD accountant only approximates from above. Gaussian releases inside one Poisson
sample (an update and its adaptive-clipping bit) are merged the same way, then sampled once.

Epsilon here is about adding or removing one client's whole contribution to a round (the
neighbouring relation is ADD_OR_REMOVE_ONE): client-level, i.e. user-level, DP.
"""

from __future__ import annotations

import math

from secagg.dp._compose import (
    ACCOUNTANTS,
    Accountant,
    State,
    check_accountant,
    check_delta,
    check_positive,
    check_rate,
    check_rounds,
    epsilon_of,
    real_number,
    split_event,
)
from secagg.dp.events import DpEvent, check_event, round_event
from secagg.errors import BudgetExceededError, ConfigError

__all__ = [
    "ACCOUNTANTS",
    "Accountant",
    "PrivacyLedger",
    "compute_epsilon",
    "noise_multiplier_for",
]

_Z_MIN = 2.0**-6  # search range of noise_multiplier_for
_Z_MAX = 2.0**20


# -- pure functions ---------------------------------------------------------------------------


def compute_epsilon(
    noise_multiplier: float,
    sampling_rate: float,
    rounds: int,
    delta: float,
    accountant: Accountant = "rdp",
) -> float:
    """Epsilon at ``delta`` after ``rounds`` rounds of the (discrete) Gaussian mechanism.

    Args:
        noise_multiplier: ``z = sigma / l2_sensitivity`` (> 0).
        sampling_rate: Poisson sampling rate ``q`` of clients per round, in (0, 1].
        rounds: number of rounds, >= 1.
        delta: target delta, in (0, 1).
        accountant: ``"rdp"`` or ``"pld"``.

    Returns:
        Epsilon (client-level), as a float.

    Raises:
        SecAggTypeError: on a non-numeric argument.
        ConfigError: on an argument out of range, or without the dp-accounting package.
    """
    z = check_positive("noise_multiplier", noise_multiplier, "e.g. 1.0")
    q = check_rate(sampling_rate)
    t = check_rounds(rounds)
    d = check_delta(delta)
    kind = check_accountant(accountant)
    return epsilon_of(round_event(z, q), t, d, kind)


def noise_multiplier_for(
    epsilon: float,
    delta: float,
    sampling_rate: float,
    rounds: int,
    accountant: Accountant = "rdp",
    *,
    rel_tol: float = 1e-3,
) -> float:
    """The smallest noise multiplier (to ``rel_tol``) whose epsilon is at most ``epsilon``.

    Bisection on ``log z`` over [2^-6, 2^20]; the answer errs on the private side:
    ``compute_epsilon(result, ...) <= epsilon``.

    Args:
        epsilon: target epsilon (> 0).
        delta: target delta, in (0, 1).
        sampling_rate: Poisson sampling rate, in (0, 1].
        rounds: number of rounds, >= 1.
        accountant: ``"rdp"`` or ``"pld"``.
        rel_tol: relative precision of the answer, in (0, 0.5].

    Returns:
        The noise multiplier ``z``.

    Raises:
        ConfigError: on an argument out of range, or when no ``z`` in [2^-6, 2^20] reaches
            ``epsilon`` (the message gives the epsilon at the largest).
    """
    eps = check_positive("epsilon", epsilon, "e.g. 1.0 or 8.0")
    d = check_delta(delta)
    q = check_rate(sampling_rate)
    t = check_rounds(rounds)
    kind = check_accountant(accountant)
    tol = real_number("rel_tol", rel_tol)
    if not 0 < tol <= 0.5:
        raise ConfigError(f"rel_tol must be in (0, 0.5], e.g. 1e-3, got {tol}")

    return PrivacyLedger(eps, d, kind).noise_multiplier_for(t, q, rel_tol=tol)


# -- ledger -------------------------------------------------------------------------------------


class PrivacyLedger:
    """Composes the DP events of a run and stops it before the epsilon budget is exceeded.

    Args:
        epsilon_budget: largest epsilon allowed at ``delta``; ``None`` to only track.
        delta: the delta at which epsilon is reported, in (0, 1).
        accountant: ``"rdp"`` or ``"pld"``.

    Raises:
        ConfigError: on an argument out of range.

    Typical use, once per round at the party that adds the noise::

        ledger.check(event)       # before releasing anything
        ledger.charge(event)      # after the round's result is released
    """

    def __init__(
        self,
        epsilon_budget: float | None,
        delta: float,
        accountant: Accountant = "rdp",
    ) -> None:
        if epsilon_budget is not None:
            epsilon_budget = check_positive("epsilon_budget", epsilon_budget, "e.g. 1.0 or 8.0")
        self._budget = epsilon_budget
        self._delta = check_delta(delta)
        self._kind = check_accountant(accountant)
        self._state = State(self._kind)
        self._events: list[DpEvent] = []
        self._history: list[float] = []

    # -- read-only views -----------------------------------------------------------------
    @property
    def epsilon_budget(self) -> float | None:
        """The budget, or ``None`` when the ledger only tracks."""
        return self._budget

    @property
    def delta(self) -> float:
        """The delta at which every epsilon is reported."""
        return self._delta

    @property
    def accountant(self) -> Accountant:
        """``"rdp"`` or ``"pld"``."""
        return self._kind

    @property
    def rounds(self) -> int:
        """Number of rounds charged so far."""
        return len(self._events)

    @property
    def events(self) -> tuple[DpEvent, ...]:
        """The events charged so far, one per round."""
        return tuple(self._events)

    @property
    def history(self) -> tuple[float, ...]:
        """Epsilon after each charged round, in order."""
        return tuple(self._history)

    def epsilon(self) -> float:
        """Epsilon at ``delta`` after all charged rounds (0.0 before the first)."""
        return self._history[-1] if self._history else 0.0

    # -- what-if -------------------------------------------------------------------------
    def _prospect(self, event: DpEvent, rounds: int) -> tuple[State, float]:
        check_event(event)
        state = self._state.plus(split_event(event, 1), rounds)
        return state, state.epsilon(self._delta)

    def epsilon_after(self, event: DpEvent, rounds: int = 1) -> float:
        """Epsilon if ``rounds`` more rounds of ``event`` were charged; nothing is charged.

        Raises:
            SecAggTypeError: if ``event`` is not a secagg.dp event.
            ConfigError: if ``rounds`` < 1.
        """
        return self._prospect(event, check_rounds(rounds))[1]

    def rounds_left(self, event: DpEvent, limit: int = 10_000) -> int:
        """How many more rounds of ``event`` fit in the budget, up to ``limit``.

        Returns ``limit`` when the ledger has no budget.

        Raises:
            SecAggTypeError: if ``event`` is not a secagg.dp event.
            ConfigError: if ``limit`` < 1.
        """
        check_event(event)
        limit = check_rounds(limit, "limit")
        budget = self._budget
        if budget is None:
            return limit
        split = split_event(event, 1)

        def fits(k: int) -> bool:
            return self._state.plus(split, k).epsilon(self._delta) <= budget

        if fits(limit):
            return limit
        lo, hi = 0, limit  # fits(lo) (no more rounds) and not fits(hi)
        step = 1
        while step < hi and fits(step):  # gallop: most calls need few rounds
            lo, step = step, step * 2
        hi = min(hi, step)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if fits(mid):
                lo = mid
            else:
                hi = mid
        return lo

    def noise_multiplier_for(self, rounds: int, sampling_rate: float = 1.0, *,
                             rel_tol: float = 1e-3) -> float:
        """The smallest noise multiplier (to ``rel_tol``) with which ``rounds`` more rounds
        of :func:`secagg.dp.events.round_event` keep this ledger within its budget, counting
        what it has already spent. The one calibration search of secagg.

        Bisection on ``log z`` over [2^-6, 2^20]; the answer errs on the private side:
        ``epsilon_after(round_event(result, sampling_rate), rounds) <= epsilon_budget``.

        Raises:
            BudgetExceededError: the ledger has already spent its budget.
            ConfigError: the ledger has no budget, an argument is out of range, or no ``z``
                in [2^-6, 2^20] fits (the message gives the epsilon at the largest).
        """
        budget = self._budget
        if budget is None:
            raise ConfigError("a ledger without an epsilon budget has no noise multiplier to "
                              "calibrate; give it an epsilon_budget")
        t = check_rounds(rounds)
        q = check_rate(sampling_rate)
        tol = real_number("rel_tol", rel_tol)
        if not 0 < tol <= 0.5:
            raise ConfigError(f"rel_tol must be in (0, 0.5], e.g. 1e-3, got {tol}")
        spent = self.epsilon()
        if spent >= budget:
            raise BudgetExceededError(
                f"privacy budget already spent: epsilon={spent:.4g} at delta={self._delta:g} "
                f"after {self.rounds} recorded round(s), and the budget is epsilon={budget:g}"
            )

        def eps_at(z: float) -> float:
            return self._prospect(round_event(z, q), t)[1]

        hi = 1.0
        while eps_at(hi) > budget:
            if hi >= _Z_MAX:
                already = (f" (already spent {spent:.4g} in {self.rounds} round(s))"
                           if self.rounds else "")
                raise ConfigError(
                    f"epsilon={budget:g} at delta={self._delta:g} is out of reach{already}: "
                    f"even noise multiplier {_Z_MAX:g} gives epsilon={eps_at(_Z_MAX):.4g} "
                    f"after {t} round(s); allow a larger epsilon, fewer rounds or a smaller "
                    "sampling rate"
                )
            hi *= 2.0
        lo = hi / 2.0
        while lo >= _Z_MIN and eps_at(lo) <= budget:
            hi, lo = lo, lo / 2.0
        if lo < _Z_MIN:
            return hi  # already meets the budget at the bottom of the search range
        while hi / lo > 1.0 + tol:
            mid = math.sqrt(lo * hi)
            if eps_at(mid) <= budget:
                hi = mid
            else:
                lo = mid
        return hi

    # -- enforcement ---------------------------------------------------------------------
    def _refuse(self, event: DpEvent, rounds: int, reached: float) -> BudgetExceededError:
        budget = self._budget
        left = 0 if rounds == 1 else self.rounds_left(event, rounds - 1)
        return BudgetExceededError(
            f"privacy budget epsilon={budget:g} at delta={self._delta:g} ({self._kind}) would be "
            f"exceeded: {rounds} more round(s) would reach epsilon={reached:.4g} (now "
            f"{self.epsilon():.4g} after {self.rounds} round(s)); {left} more round(s) of this "
            "kind still fit"
        )

    def check(self, event: DpEvent, rounds: int = 1) -> float:
        """Check that ``rounds`` more rounds of ``event`` stay within the budget.

        Returns:
            The epsilon those rounds would reach.

        Raises:
            BudgetExceededError: naming the budget, the epsilon it would reach and how many
                rounds still fit. The ledger is unchanged.
            SecAggTypeError: if ``event`` is not a secagg.dp event.
            ConfigError: if ``rounds`` < 1.
        """
        rounds = check_rounds(rounds)
        _, eps = self._prospect(event, rounds)
        if self._budget is not None and eps > self._budget:
            raise self._refuse(event, rounds, eps)
        return eps

    def charge(self, event: DpEvent) -> float:
        """Check one round of ``event``, then commit it.

        Returns:
            Epsilon after this round (also appended to :attr:`history`).

        Raises:
            BudgetExceededError: if the round would exceed the budget; nothing is charged.
            SecAggTypeError: if ``event`` is not a secagg.dp event.
        """
        state, eps = self._prospect(event, 1)
        if self._budget is not None and eps > self._budget:
            raise self._refuse(event, 1, eps)
        self._state = state
        self._events.append(event)
        self._history.append(eps)
        return eps
