"""DP for training runs: the noise of each round, and the one place its budget is charged.

Two modes (:data:`DP_MODES`), both calibrated to one client's whole encoded contribution
(``EncodingConfig.l2_sensitivity``) and both charged to a :class:`secagg.dp.PrivacyLedger`:

- ``central``: :class:`CentralDPHook` is the :class:`protocols.base.NoiseHook` put in the
  round's ``RoundConfig.noise``. The party that decodes the aggregate (the server for secagg
  and secagg+, the decryptor for ckks and paillier) calls it once, on the exact integer sum,
  before anything leaves that party; it adds discrete Gaussian noise
  (:class:`secagg.dp.CentralDiscreteGaussian`) and returns the mechanism's event, which the
  decoding party puts in its result (``AggregateResult.dp_event``). The hook never sees a
  ledger. That party sees the exact sum before noising; secure aggregation, not DP, keeps it
  from seeing any single client's update.
- ``distributed`` (masking protocols only): every cohort member adds discrete Gaussian noise
  before masking (:class:`secagg.dp.DistributedDiscreteGaussian`, Kairouz et al. 2021), so
  no party ever sees an un-noised sum. The server refuses to release a sum of fewer than the
  planned survivors (``min_clients``), so the noise in any released sum is at least what the
  ledger was checked for; the server's result carries the event of the noise that actually
  survived.

A third mode, ``bolt-on`` (:mod:`fl.privacy.bolt_on`), is central output perturbation calibrated to
the Bolt-on sensitivity of a convex model trained by permutation SGD (example-level DP); it
is set up by :func:`fl.privacy.bolt_on.bolt_on_privacy`, not by :func:`round_privacy`, and charged
the same way.

One DP path, whatever the mode and the engine:

1. before the round, :func:`round_privacy` (or ``bolt_on_privacy``) builds the round's
   :class:`RoundPrivacy` and checks its planned event against the ledger
   (``ledger.check``): a round over budget raises
   :class:`~secagg.errors.BudgetExceededError` before any training or release;
2. the protocol runs; its decoding role returns the event of the noise it released in
   ``AggregateResult.dp_event``;
3. after the round, :meth:`RoundPrivacy.settle` charges the ledger: the released event
   (Poisson-sampled at the cohort's rate), or the planned event for a round that released
   nothing but might have (the noise was drawn) or was skipped. It is the only place in
   ``fl`` that spends budget.

In every mode ``noise_multiplier`` means the noise in the released sum (with the planned
survivors) over one client's sensitivity. :meth:`secagg.dp.PrivacyLedger.noise_multiplier_for`
calibrates it to a budget.

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
from secagg.dp import (
    ACCOUNTANTS,
    CentralDiscreteGaussian,
    DiscreteGaussianEvent,
    DistributedDiscreteGaussian,
    DpEvent,
    PoissonSampledEvent,
    PrivacyLedger,
    client_noise_bound,
    poisson_sampled,
    round_event,
)
from secagg.encoding import EncodingConfig
from secagg.errors import AlreadyFinalized, BudgetExceededError, ConfigError
from secagg.rng import Csprng

__all__ = [
    "DP_MODES",
    "MIN_BUDGET_LEFT",
    "CentralDPHook",
    "RoundPrivacy",
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


class CentralDPHook(NoiseHook):
    """Central noise for one round: the decoding party calls :meth:`add_noise` once.

    The hook holds a mechanism and nothing else: no ledger, nothing secret. The round is
    charged afterwards, from the event it returns (:meth:`RoundPrivacy.settle`).

    Args:
        mechanism: the central discrete Gaussian (or a subclass such as
            :class:`secagg.dp.BoltOnGaussian`); its event is the release's.

    Use :meth:`for_encoding` for the client-level discrete Gaussian of ``secagg run``.
    """

    def __init__(self, mechanism: CentralDiscreteGaussian) -> None:
        self.mechanism = mechanism
        self._used = False

    @classmethod
    def for_encoding(cls, encoding: EncodingConfig, dim: int,
                     noise_multiplier: float) -> CentralDPHook:
        """Client-level central DP: the discrete Gaussian calibrated to one client's whole
        encoded contribution, ``encoding.l2_sensitivity(dim)`` (``dim`` is the length of
        each client's vector; the weight the encoding adds is included).

        Raises:
            ConfigError: parameters the mechanism refuses (``sigma`` out of the sampler's
                range).
        """
        return cls(CentralDiscreteGaussian(float(noise_multiplier), encoding.l2_sensitivity(dim)))

    def add_noise(self, int_sum: np.ndarray, rng: Csprng) -> tuple[np.ndarray, Any]:
        """Noise ``int_sum`` (int64, fixed point) once.

        Returns:
            ``(noised int64 sum, the mechanism's event)``.

        Raises:
            AlreadyFinalized: called a second time (a round releases once).

        .. warning:: ``int_sum`` is the exact aggregate; only the returned value may leave.
        """
        if self._used:
            raise AlreadyFinalized("this round's noise was already added; a round releases once")
        self._used = True
        return self.mechanism.add_noise(int_sum, rng)

    @property
    def used(self) -> bool:
        """Whether the noise was drawn (a noised sum may have left the decoding party)."""
        return self._used


@dataclass
class RoundPrivacy:
    """The DP part of one round: what goes into its config, and how to charge it after.

    Attributes:
        mode: one of :data:`DP_MODES` (or ``"skipped"`` for a round that ran nothing).
        config_kw: keyword arguments for the protocol's ``make_config`` (``noise=`` for
            central DP; ``client_noise=`` and ``min_clients=`` for distributed DP).
        encoding: the round's encoding (distributed DP reserves headroom for the noise).
        sigma: standard deviation of the noise in each coordinate of the released sum, in
            integer units, with the planned survivors.
        event: the planned event (Poisson-sampled at the round's rate) the ledger was
            checked for.
    """

    mode: str
    config_kw: dict[str, Any]
    encoding: EncodingConfig
    sigma: float
    event: DpEvent
    _ledger: PrivacyLedger
    _sampling_rate: float
    _hook: CentralDPHook | None = field(default=None, repr=False)

    @classmethod
    def planned(cls, mode: str, ledger: PrivacyLedger, event: DpEvent, sampling_rate: float,
                config_kw: dict[str, Any], encoding: EncodingConfig,
                sigma: float) -> RoundPrivacy:
        """A round whose ``event`` (unsampled) is checked against ``ledger`` now, before
        anything is trained or released.

        Raises:
            BudgetExceededError: the round would exceed the budget.
        """
        sampled = poisson_sampled(event, sampling_rate)
        ledger.check(sampled)
        hook = config_kw.get("noise")
        return cls(mode, config_kw, encoding, sigma, sampled, ledger, sampling_rate,
                   hook if isinstance(hook, CentralDPHook) else None)

    @classmethod
    def skipped(cls, ledger: PrivacyLedger, noise_multiplier: float, sampling_rate: float,
                encoding: EncodingConfig) -> RoundPrivacy:
        """A round skipped before it ran (a sampled cohort too small to release). Whether a
        round is skipped depends on who was sampled, so :meth:`settle` charges it as a full
        round: the accounting stays an upper bound."""
        return cls("skipped", {}, encoding, 0.0, round_event(noise_multiplier, sampling_rate),
                   ledger, sampling_rate)

    def settle(self, protocol: str, result: AggregateResult | None) -> float:
        """After the round: charge the ledger and return epsilon so far. The one place in
        ``fl`` where budget is spent.

        Charges the event in ``result.dp_event`` (what the decoding party released),
        Poisson-sampled at the round's rate. Without a result it charges the planned event
        if the round was skipped or its central noise was drawn (a noised sum may have left
        the decoding party), and nothing otherwise (nothing was released).

        Raises:
            ConfigError: the protocol released a sum without reporting the noise it was
                configured with (it does not support this DP mode).
            BudgetExceededError: the charge would exceed the budget (the check before the
                round makes this impossible unless the ledger was charged in between).
        """
        if result is None:
            if self.mode == "skipped" or (self._hook is not None and self._hook.used):
                return self._ledger.charge(self.event)
            return self._ledger.epsilon()
        released = result.dp_event
        if not isinstance(released, DiscreteGaussianEvent):
            what = "central DP noise hook" if self._hook is not None else "distributed DP noise"
            raise ConfigError(f"{protocol} released an aggregate without reporting the {what} "
                              f"in it; it cannot run with {self.mode} DP")
        return self._ledger.charge(poisson_sampled(released, self._sampling_rate))


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
                          "fl.privacy.bolt_on.bolt_on_privacy")
    if mode == "central":
        encoding = encoding_for(0)
        hook = CentralDPHook.for_encoding(encoding, dim, noise_multiplier)
        return RoundPrivacy.planned(mode, ledger, round_event(noise_multiplier), sampling_rate,
                                    {"noise": hook}, encoding, hook.mechanism.sigma)
    sensitivity = encoding_for(0).l2_sensitivity(dim)
    per_round = noise_multiplier * math.sqrt(cohort / survivors)
    noise = DistributedDiscreteGaussian(per_round, sensitivity, cohort)
    encoding = encoding_for(cohort * client_noise_bound(noise, dim, cohort))
    return RoundPrivacy.planned(mode, ledger, noise.event_for(survivors, dim + 1), sampling_rate,
                                {"client_noise": noise, "min_clients": survivors}, encoding,
                                noise_multiplier * sensitivity)


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
