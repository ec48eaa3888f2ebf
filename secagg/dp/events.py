"""DP events: frozen descriptions of what a mechanism released, for the ledger to account.

Compatibility promise: an event says *what* was released (a discrete Gaussian with noise
multiplier ``z``, Poisson-sampled at rate ``q``, composed ...), never how to account for it.
Accountants interpret events; new accountants never require changing an event. Fields used
for reports only (``sigma``, ``l2_sensitivity``) take no part in equality or accounting.

Events mirror the ones of the ``dp-accounting`` package; :func:`to_dp_accounting` converts.
A discrete Gaussian becomes a ``GaussianDpEvent`` with the same noise multiplier
``z = sigma / Delta``. Canonne, Kamath and Steinke, "The Discrete Gaussian for Differential
Privacy" (NeurIPS 2020, section 2) show that ``N_Z(0, sigma^2)`` added to an integer query of
L2 sensitivity ``Delta`` satisfies ``Delta^2 / (2 sigma^2)``-concentrated DP, the same Renyi
curve as the continuous Gaussian, and that its (epsilon, delta) guarantee matches the
continuous Gaussian's up to a negligible term. Under Poisson sampling we use the sampled
Gaussian analysis for it, as Kairouz, Liu and Steinke (ICML 2021) do for the distributed
discrete Gaussian.
"""

from __future__ import annotations

import importlib.util
import math
import sys
import types
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from secagg.errors import ConfigError, SecAggTypeError

__all__ = [
    "ComposedEvent",
    "DiscreteGaussianEvent",
    "DpEvent",
    "PoissonSampledEvent",
    "SelfComposedEvent",
    "poisson_sampled",
    "round_event",
    "to_dp_accounting",
]


def _positive(name: str, value: float, hint: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SecAggTypeError(f"{name} must be a number, got {type(value).__name__}")
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{name} must be finite and > 0, got {value}; {hint}")


@dataclass(frozen=True, slots=True)
class DiscreteGaussianEvent:
    """One release of the discrete Gaussian mechanism on one client's clipped contribution.

    Attributes:
        noise_multiplier: ``sigma / l2_sensitivity`` (> 0). The only field accounted.
        sigma: the noise standard deviation in integer units (report only).
        l2_sensitivity: one client's L2 sensitivity in integer units (report only).

    Raises:
        ConfigError: if ``noise_multiplier`` is not finite and positive.
    """

    noise_multiplier: float
    sigma: float | None = field(default=None, compare=False)
    l2_sensitivity: float | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        _positive("noise_multiplier", self.noise_multiplier, "e.g. 0.5 to 5 is typical")


@dataclass(frozen=True, slots=True)
class PoissonSampledEvent:
    """``event`` run on a Poisson sample: each client takes part independently with rate ``q``.

    Raises:
        ConfigError: if ``sampling_rate`` is not in (0, 1].
    """

    sampling_rate: float
    event: DpEvent

    def __post_init__(self) -> None:
        q = self.sampling_rate
        if isinstance(q, bool) or not isinstance(q, (int, float)):
            raise SecAggTypeError(f"sampling_rate must be a number, got {type(q).__name__}")
        if not (math.isfinite(q) and 0 < q <= 1):
            raise ConfigError(f"sampling_rate must be in (0, 1], e.g. 0.01 or 1.0, got {q}")
        check_event(self.event)


@dataclass(frozen=True, slots=True)
class ComposedEvent:
    """Several events released about the same data (e.g. the update and the clip-quantile bit).

    Raises:
        ConfigError: if ``events`` is empty.
    """

    events: tuple[DpEvent, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.events, tuple) or not self.events:
            raise ConfigError("ComposedEvent needs a non-empty tuple of events")
        for e in self.events:
            check_event(e)


@dataclass(frozen=True, slots=True)
class SelfComposedEvent:
    """``event`` repeated ``count`` times (``count`` rounds).

    Raises:
        ConfigError: if ``count`` < 1.
    """

    event: DpEvent
    count: int

    def __post_init__(self) -> None:
        if isinstance(self.count, bool) or not isinstance(self.count, int):
            raise SecAggTypeError(f"count must be an int, got {type(self.count).__name__}")
        if self.count < 1:
            raise ConfigError(f"count must be >= 1, got {self.count}")
        check_event(self.event)


DpEvent: TypeAlias = DiscreteGaussianEvent | PoissonSampledEvent | ComposedEvent | SelfComposedEvent

_EVENT_TYPES = (DiscreteGaussianEvent, PoissonSampledEvent, ComposedEvent, SelfComposedEvent)


def poisson_sampled(event: DpEvent, sampling_rate: float) -> DpEvent:
    """``event`` run on a Poisson sample at ``sampling_rate``; ``event`` itself when the rate
    is 1 (every client takes part).

    Raises:
        ConfigError: a sampling rate outside (0, 1].
        SecAggTypeError: ``event`` is not a secagg.dp event.
    """
    if sampling_rate == 1:
        check_event(event)
        return event
    return PoissonSampledEvent(float(sampling_rate), event)


def round_event(noise_multiplier: float, sampling_rate: float = 1.0) -> DpEvent:
    """The event of one round of the discrete Gaussian with ``noise_multiplier``, on a
    Poisson sample at ``sampling_rate`` (1: no sampling). What planning (the budget check,
    the calibration) assumes a round releases.

    Raises:
        ConfigError: a noise multiplier or sampling rate out of range.
    """
    return poisson_sampled(DiscreteGaussianEvent(float(noise_multiplier)), sampling_rate)


def check_event(event: object) -> None:
    """Raise SecAggTypeError unless ``event`` is a secagg.dp event."""
    if not isinstance(event, _EVENT_TYPES):
        raise SecAggTypeError(f"expected a secagg.dp event, got {type(event).__name__}")


def to_dp_accounting(event: DpEvent) -> Any:
    """The equivalent ``dp_accounting.DpEvent``.

    Args:
        event: a secagg.dp event.

    Returns:
        A ``dp_accounting`` event: ``GaussianDpEvent`` for a discrete Gaussian (see the module
        docstring), ``PoissonSampledDpEvent`` (dropped when ``q == 1``), ``ComposedDpEvent`` or
        ``SelfComposedDpEvent``.

    Raises:
        SecAggTypeError: if ``event`` is not a secagg.dp event.
        ConfigError: if the ``dp-accounting`` package is missing.
    """
    dpa = import_dp_accounting()
    check_event(event)
    if isinstance(event, DiscreteGaussianEvent):
        return dpa.GaussianDpEvent(float(event.noise_multiplier))
    if isinstance(event, PoissonSampledEvent):
        inner = to_dp_accounting(event.event)
        if event.sampling_rate == 1:
            return inner
        return dpa.PoissonSampledDpEvent(float(event.sampling_rate), inner)
    if isinstance(event, ComposedEvent):
        return dpa.ComposedDpEvent([to_dp_accounting(e) for e in event.events])
    return dpa.SelfComposedDpEvent(to_dp_accounting(event.event), event.count)


class _OnFirstUse(types.ModuleType):
    """A module whose code runs when one of its attributes is first looked up.

    It is the module object the import system would make (same spec, ``__path__``, name),
    placed in ``sys.modules`` before anyone imports it; the first lookup of a name it does
    not hold yet (any name its code defines, ``__all__`` among them) turns it into a plain
    module and runs its code in place, so every reference taken earlier sees the
    loaded module. Unlike ``importlib.util.LazyLoader``, looking up ``__spec__`` (which the
    import system does on every ``import`` of a module already loaded) does not load it.
    """

    def __getattr__(self, name: str) -> Any:
        spec = self.__spec__
        if spec is None or spec.loader is None:  # _defer only wraps modules that have both
            raise ConfigError(f"module {self.__name__!r} was deferred without a loader; "
                              "import it normally")
        module: types.ModuleType = self
        module.__class__ = types.ModuleType
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(spec.name, None)  # as a failed import leaves it
            raise
        return getattr(module, name)


#: Imported by ``dp_accounting`` at start-up for its PLD accountant only (``scipy.signal``
#: rewrites its functions' docstrings at import: 0.3-0.5 s of dp-accounting's import here),
#: and loaded on first use.
_DEFERRED = ("scipy.signal",)


def _defer(name: str) -> None:
    if name in sys.modules:
        return
    try:
        spec = importlib.util.find_spec(name)
    except ImportError:
        return
    if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
        return
    module = importlib.util.module_from_spec(spec)
    module.__class__ = _OnFirstUse
    sys.modules[name] = module


def import_dp_accounting() -> Any:
    """The ``dp_accounting`` module, or a ConfigError naming the extra that provides it.

    The first call defers ``scipy.signal`` (see :class:`_OnFirstUse`): the RDP accountant
    never touches it, and a PLD computation loads it when it first calls into it.
    """
    if "dp_accounting" not in sys.modules:
        for name in _DEFERRED:
            _defer(name)
    try:
        import dp_accounting
    except ImportError as exc:  # pragma: no cover - the dp extra is installed in CI
        raise ConfigError(
            "privacy accounting needs the dp-accounting package: pip install 'secagg[dp]'"
        ) from exc
    return dp_accounting
