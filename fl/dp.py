"""DP for training runs: the noise of each round, and the budget it is charged to.

Two modes (:data:`DP_MODES`), both calibrated to one client's whole encoded contribution
(``EncodingConfig.l2_sensitivity``) and both charged to a :class:`secagg.dp.PrivacyLedger`:

- ``central``: :class:`CentralDPHook` is the :class:`protocols.base.NoiseHook` put in the
  round's ``RoundConfig.noise``. The party that decodes the aggregate (the server for secagg
  and secagg+, the decryptor for ckks and paillier) calls it once, on the exact integer sum,
  before anything leaves that party. The hook first charges the round's event, then adds
  discrete Gaussian noise (:class:`secagg.dp.CentralDiscreteGaussian`): a round over budget
  is refused with :class:`~secagg.errors.BudgetExceededError` and releases nothing. That
  party sees the exact sum before noising; secure aggregation, not DP, keeps it from seeing
  any single client's update.
- ``distributed`` (masking protocols only): every cohort member adds discrete Gaussian noise
  before masking (:class:`secagg.dp.DistributedDiscreteGaussian`, Kairouz et al. 2021), so
  no party ever sees an un-noised sum. The server refuses to release a sum of fewer than the
  planned survivors (``min_clients``), so the noise in any released sum is at least what the
  ledger was checked for; the event of the noise that actually survived is charged after.

A third mode, ``bolt-on`` (:mod:`fl.bolt_on`), is central output perturbation calibrated to
the Bolt-on sensitivity of a convex model trained by permutation SGD (example-level DP); it
is set up by :func:`fl.bolt_on.bolt_on_privacy`, not by :func:`round_privacy`.

:func:`round_privacy` sets up either mode for one round. In both, ``noise_multiplier`` means
the noise in the released sum (with the planned survivors) over one client's sensitivity.

What the epsilon means: client-level DP (adding or removing one client's whole contribution
to every round) for whoever sees the released aggregates and the models built from them
(and, in distributed mode, for the server too). Amplification by Poisson sampling
(``sampling_rate < 1``) assumes the cohort is secret; the server of a masking protocol
learns who contributed, so against the server the unamplified figure (``sampling_rate =
1``) is the honest one.

A ledger may persist in a small JSON file (:func:`load_ledger`, :func:`save_ledger`) so that
successive runs on the same clients spend one budget. The file holds only noise multipliers,
sampling rates, delta and the accountant's name: nothing about any client.

.. warning::
   Noise drawn from a seeded generator (``--seed``) can be reproduced and subtracted; it
   protects nobody. Seeds are for experiments.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from protocols.base import AggregateResult, NoiseHook
from protocols.secagg.config import client_noise_bound
from secagg.dp import (
    ACCOUNTANTS,
    CentralDiscreteGaussian,
    DiscreteGaussianEvent,
    DistributedDiscreteGaussian,
    DpEvent,
    PoissonSampledEvent,
    PrivacyLedger,
)
from secagg.encoding import EncodingConfig
from secagg.errors import AlreadyFinalized, BudgetExceededError, ConfigError
from secagg.rng import Csprng

__all__ = [
    "DP_MODES",
    "MIN_BUDGET_LEFT",
    "CentralDPHook",
    "RoundPrivacy",
    "calibrate_noise_multiplier",
    "load_ledger",
    "round_event",
    "round_privacy",
    "save_ledger",
]

#: Values accepted for the DP mode of a run.
DP_MODES: tuple[str, ...] = ("central", "distributed", "bolt-on")

_LEDGER_FORMAT = "secagg-ledger/1"

#: A ledger counts as spent once less than this share of its budget is left: a calibrated
#: run spends all but about 0.1% of its budget, and what little is left could only pay for
#: rounds drowned in noise (noise multipliers in the thousands).
MIN_BUDGET_LEFT = 0.05


def round_event(noise_multiplier: float, sampling_rate: float = 1.0) -> DpEvent:
    """The DP event of one round: the discrete Gaussian, Poisson-sampled when ``q < 1``.

    Raises:
        ConfigError: a noise multiplier or sampling rate out of range.
    """
    return _sampled(DiscreteGaussianEvent(float(noise_multiplier)), sampling_rate)


def _sampled(event: DpEvent, sampling_rate: float) -> DpEvent:
    return event if sampling_rate == 1 else PoissonSampledEvent(float(sampling_rate), event)


class CentralDPHook(NoiseHook):
    """Central discrete Gaussian noise for one round, charged to a ledger before release.

    One hook serves one round: the decoding party calls :meth:`add_noise` once.

    Args:
        encoding: the round's encoding; its ``l2_sensitivity(dim)`` (one client's clipped,
            weighted, encoded contribution in integer units) calibrates the noise.
        dim: the length of each client's vector (the encoded one carries one more value,
            the weight, which the sensitivity includes).
        noise_multiplier: ``sigma / l2_sensitivity``.
        ledger: where the round's event is charged.
        sampling_rate: Poisson sampling rate of the cohort, for the event (1: no sampling).

    Raises:
        ConfigError: parameters the mechanism refuses (``sigma`` out of the sampler's range).
    """

    def __init__(
        self,
        encoding: EncodingConfig,
        dim: int,
        noise_multiplier: float,
        ledger: PrivacyLedger,
        sampling_rate: float = 1.0,
    ) -> None:
        self.mechanism = CentralDiscreteGaussian(
            float(noise_multiplier), encoding.l2_sensitivity(dim)
        )
        self.ledger = ledger
        self.event = round_event(noise_multiplier, sampling_rate)
        self.epsilon: float | None = None  # after this round, once charged
        self._used = False

    def add_noise(self, int_sum: np.ndarray, rng: Csprng) -> tuple[np.ndarray, Any]:
        """Charge the round to the ledger, then noise ``int_sum`` (int64, fixed point).

        Returns:
            ``(noised int64 sum, the event charged)``.

        Raises:
            BudgetExceededError: the round would exceed the budget; nothing is charged and
                nothing released.
            AlreadyFinalized: called a second time.

        .. warning:: ``int_sum`` is the exact aggregate; only the returned value may leave.
        """
        if self._used:
            raise AlreadyFinalized("this round's noise was already added; a round releases once")
        self._used = True
        self.epsilon = self.ledger.charge(self.event)
        noised, _ = self.mechanism.add_noise(int_sum, rng)
        return noised, self.event

    @property
    def used(self) -> bool:
        """Whether the decoding party has called :meth:`add_noise`."""
        return self._used


@dataclass
class RoundPrivacy:
    """The DP part of one round: what goes into its config, and how to settle the ledger.

    Attributes:
        config_kw: keyword arguments for the protocol's ``make_config`` (``noise=`` for
            central DP; ``client_noise=`` and ``min_clients=`` for distributed DP).
        encoding: the round's encoding (distributed DP reserves headroom for the noise).
        sigma: standard deviation of the noise in each coordinate of the released sum, in
            integer units, with the planned survivors.
    """

    mode: str
    config_kw: dict[str, Any]
    encoding: EncodingConfig
    sigma: float
    _ledger: PrivacyLedger
    _sampling_rate: float
    _hook: CentralDPHook | None = field(default=None, repr=False)

    def settle(self, protocol: str, result: AggregateResult) -> float:
        """After a round released ``result``: make sure its noise was added, charge the
        ledger if the decoding party did not, and return epsilon so far.

        Raises:
            ConfigError: the protocol released a sum without the noise it was configured
                with (it does not support this DP mode).
        """
        if self._hook is not None:
            if not self._hook.used:
                raise ConfigError(f"{protocol} released an aggregate without calling the "
                                  "central DP noise hook; it cannot run with DP")
            return self._ledger.epsilon()
        if not isinstance(result.dp_event, DiscreteGaussianEvent):
            raise ConfigError(f"{protocol} released an aggregate without reporting the "
                              "distributed DP noise in it; it cannot run with distributed DP")
        return self._ledger.charge(_sampled(result.dp_event, self._sampling_rate))


def round_privacy(
    mode: str,
    ledger: PrivacyLedger,
    noise_multiplier: float,
    *,
    dim: int,
    cohort: int,
    survivors: int,
    sampling_rate: float,
    encoding_for: Callable[[int], EncodingConfig],
) -> RoundPrivacy:
    """Set up one round's DP and check it against the budget, before anything is released.

    Args:
        mode: one of :data:`DP_MODES`.
        noise_multiplier: noise in the released sum over one client's sensitivity.
        dim: the length of each client's vector.
        cohort: the clients in the round.
        survivors: the fewest contributors a release may have (distributed DP adds noise
            so that this many clients' noise gives ``noise_multiplier``).
        sampling_rate: the Poisson rate of the cohort (1: no sampling).
        encoding_for: builds the round's encoding given a ``noise_bound``.

    Raises:
        BudgetExceededError: the round would exceed the budget.
        ConfigError: an unknown mode, or settings the mechanism refuses.
    """
    if mode not in DP_MODES:
        raise ConfigError(f"unknown DP mode {mode!r}; choose one of: {', '.join(DP_MODES)}")
    if mode == "bolt-on":
        raise ConfigError("bolt-on DP needs the Bolt-on sensitivity: set it up with "
                          "fl.bolt_on.bolt_on_privacy")
    if mode == "central":
        encoding = encoding_for(0)
        hook = CentralDPHook(encoding, dim, noise_multiplier, ledger, sampling_rate)
        ledger.check(hook.event)
        return RoundPrivacy(mode, {"noise": hook}, encoding, hook.mechanism.sigma, ledger,
                            sampling_rate, hook)
    sensitivity = encoding_for(0).l2_sensitivity(dim)
    per_round = noise_multiplier * math.sqrt(cohort / survivors)
    noise = DistributedDiscreteGaussian(per_round, sensitivity, cohort)
    encoding = encoding_for(cohort * client_noise_bound(noise, dim, cohort))
    ledger.check(_sampled(noise.event_for(survivors, dim + 1), sampling_rate))
    return RoundPrivacy(mode, {"client_noise": noise, "min_clients": survivors}, encoding,
                        noise_multiplier * sensitivity, ledger, sampling_rate)


def calibrate_noise_multiplier(
    ledger: PrivacyLedger, epsilon: float, rounds: int, sampling_rate: float = 1.0,
    *, rel_tol: float = 1e-3,
) -> float:
    """The smallest noise multiplier (to ``rel_tol``) with which ``rounds`` more rounds keep
    the ledger at or under ``epsilon``, counting what it has already spent.

    Raises:
        BudgetExceededError: the ledger has already spent ``epsilon``.
        ConfigError: no noise multiplier up to 2^20 fits.
    """
    spent = ledger.epsilon()
    if spent >= epsilon:
        raise BudgetExceededError(
            f"privacy budget already spent: epsilon={spent:.4g} at delta={ledger.delta:g} after "
            f"{ledger.rounds} recorded round(s), and --epsilon is {epsilon:g}"
        )

    def fits(z: float) -> bool:
        return ledger.epsilon_after(round_event(z, sampling_rate), rounds) <= epsilon

    hi = 1.0
    while not fits(hi):
        hi *= 2.0
        if hi > 2.0**20:
            raise ConfigError(
                f"no noise multiplier up to 2^20 keeps {rounds} round(s) within epsilon="
                f"{epsilon:g} (already spent {spent:.4g}); allow a larger --epsilon or fewer "
                "--rounds"
            )
    lo = hi / 2.0
    while lo > 2.0**-6 and fits(lo):
        hi, lo = lo, lo / 2.0
    while hi / lo > 1.0 + rel_tol:
        mid = math.sqrt(lo * hi)
        if fits(mid):
            hi = mid
        else:
            lo = mid
    return hi


def load_ledger(
    path: str | os.PathLike[str] | None, epsilon_budget: float | None, delta: float,
    accountant: str = "rdp",
) -> PrivacyLedger:
    """A ledger with the budget, holding the rounds already recorded in ``path`` (if any).

    Raises:
        ConfigError: an unreadable file, or one kept at another delta or accountant.
        BudgetExceededError: the recorded rounds have already spent the budget, or all but
            less than :data:`MIN_BUDGET_LEFT` of it.
    """
    if accountant not in ACCOUNTANTS:
        raise ConfigError(f"unknown accountant {accountant!r}; choose one of: "
                          f"{', '.join(ACCOUNTANTS)}")
    ledger = PrivacyLedger(None, delta, accountant)
    events: list[DpEvent] = []
    if path is not None and Path(path).exists():
        try:
            data = json.loads(Path(path).read_text())
            if data.get("format") != _LEDGER_FORMAT:
                raise ValueError(f"format is {data.get('format')!r}, not {_LEDGER_FORMAT!r}")
            kept_delta, kept_acc = float(data["delta"]), str(data["accountant"])
            events = [round_event(float(e["noise_multiplier"]), float(e["sampling_rate"]))
                      for e in data["rounds"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"cannot read the privacy ledger {path}: {exc}") from None
        if kept_delta != delta or kept_acc != accountant:
            raise ConfigError(
                f"the privacy ledger {path} is kept at delta={kept_delta:g} with the "
                f"{kept_acc} accountant; run with --delta {kept_delta:g} --accountant {kept_acc}"
            )
    for event in events:
        ledger.charge(event)
    spent = ledger.epsilon()
    if epsilon_budget is not None and ledger.rounds and (
        spent >= epsilon_budget * (1.0 - MIN_BUDGET_LEFT)
    ):
        left = max(epsilon_budget - spent, 0.0)
        raise BudgetExceededError(
            f"privacy budget already spent: {path} records {ledger.rounds} round(s) at "
            f"epsilon={spent:.4g} (delta={delta:g}) of the budget --epsilon "
            f"{epsilon_budget:g}, leaving {left:.2g} (under {MIN_BUDGET_LEFT:.0%} of it: no "
            f"round it could pay for would carry signal); to spend more, raise the total "
            f"budget with --epsilon (e.g. --epsilon {spent + epsilon_budget:.3g})"
        )
    out = PrivacyLedger(epsilon_budget, delta, accountant)
    for event in events:
        out.charge(event)
    return out


def save_ledger(path: str | os.PathLike[str], ledger: PrivacyLedger) -> None:
    """Write every round ``ledger`` has charged to ``path`` (atomically replaced)."""
    rounds = []
    for event in ledger.events:
        q = event.sampling_rate if isinstance(event, PoissonSampledEvent) else 1.0
        inner = event.event if isinstance(event, PoissonSampledEvent) else event
        if not isinstance(inner, DiscreteGaussianEvent):
            raise ConfigError(f"cannot record a {type(inner).__name__} in a ledger file")
        rounds.append({"noise_multiplier": inner.noise_multiplier, "sampling_rate": q})
    data = {"format": _LEDGER_FORMAT, "delta": ledger.delta, "accountant": ledger.accountant,
            "epsilon": ledger.epsilon(), "rounds": rounds}
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, target)
