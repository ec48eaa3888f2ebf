"""Engines: what runs one secure-aggregation round for the training loop of :mod:`fl.training.loop`.

The round loop never moves protocol messages itself. It hands an :class:`Engine` the
protocol, the round's configuration, the cohort's input vectors and weights, and a
generator; the engine runs the protocol's sans-IO roles over whatever transport it owns and
gives back an :class:`EngineRound`: the released :class:`~protocols.base.AggregateResult`
(or why there is none) and what the round cost. Anything that has such a ``run_round``
method is an engine.

- ``simulation`` (:class:`SimulationEngine`): every role in this process, through
  :func:`fl.engines.simulation.run_round`; ``dropout`` makes a fraction of each cohort fall silent
  at random stages of the protocol.
- Further engines register a factory with :func:`register_engine`. An engine known by name
  whose code lives in an optional module (``flower`` lives in ``fl.flower``) is imported on
  first use by :func:`make_engine`; importing that module must register it (or define
  ``register_engines()``, which :func:`make_engine` then calls).

Every factory is called with keyword arguments only: ``dropout`` (the fraction of each
cohort to drop, in ``[0, 1)``; an engine whose dropouts are real may ignore it). If the
engine object has a ``close()`` method, :func:`fl.training.loop.run_training` calls it once at the
end, also after an error.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from fl.engines.simulation import plan_dropouts, run_round
from protocols.base import AggregateResult, ProtocolSpec, RoundConfig, stages_of
from secagg.errors import ConfigError
from secagg.rng import Csprng

__all__ = [
    "Engine",
    "EngineFactory",
    "EngineRound",
    "RoundCost",
    "SimulationEngine",
    "engine_names",
    "make_engine",
    "register_engine",
]


@dataclass(frozen=True, slots=True)
class RoundCost:
    """What one round cost, as the engine measured it.

    Attributes:
        upload_bytes_per_client: median over contributors of the bytes one client sent.
        download_bytes_per_client: median over contributors of the bytes one client got.
        client_seconds: median over contributors of one client's protocol compute.
        server_seconds: the server's protocol compute for the round.
        server_peak_bytes: the server's peak retained state (0 when not measured).
    """

    upload_bytes_per_client: int
    download_bytes_per_client: int
    client_seconds: float
    server_seconds: float
    server_peak_bytes: int = 0


@dataclass(frozen=True, slots=True)
class EngineRound:
    """The outcome of one secure-aggregation round.

    Attributes:
        result: what the decoding party released (noised if the config carries a noise
            hook), or ``None`` when the round aborted.
        error: why the round aborted (``"DropoutError: ..."``), or ``None``.
        dropped: how many cohort members dropped out during the round.
        cost: bytes and seconds.
    """

    result: AggregateResult | None
    error: str | None
    dropped: int
    cost: RoundCost


@runtime_checkable
class Engine(Protocol):
    """Runs one secure-aggregation round: the only thing :mod:`fl.training.loop` asks of an
    engine."""

    name: str

    def run_round(
        self,
        spec: ProtocolSpec,
        config: RoundConfig,
        inputs: Sequence[np.ndarray],
        weights: Sequence[float],
        rng: Csprng,
    ) -> EngineRound:
        """Aggregate ``inputs`` (client ``u`` of the cohort holds ``inputs[u]`` with weight
        ``weights[u]``) under ``spec`` and ``config``.

        A round that aborts (too many dropouts) is returned with ``result=None`` and
        ``error`` set, not raised. Errors in the arguments raise
        :class:`~secagg.errors.ConfigError`.
        """
        ...


EngineFactory = Callable[..., Engine]


class SimulationEngine:
    """The in-process engine: every role in this process, messages through the wire codec.

    Args:
        dropout: fraction of each cohort that falls silent, ``round(dropout * k)`` clients
            spread over the protocol's stages, in ``[0, 1)``.
        measure_memory: also measure the server's peak retained state (slower).

    Raises:
        ConfigError: a dropout fraction outside ``[0, 1)``.
    """

    name = "simulation"

    def __init__(self, *, dropout: float = 0.0, measure_memory: bool = False) -> None:
        if not (isinstance(dropout, (int, float)) and 0.0 <= float(dropout) < 1.0):
            raise ConfigError(f"dropout must be a fraction in [0, 1), got {dropout!r}")
        self.dropout = float(dropout)
        self.measure_memory = measure_memory

    def run_round(
        self,
        spec: ProtocolSpec,
        config: RoundConfig,
        inputs: Sequence[np.ndarray],
        weights: Sequence[float],
        rng: Csprng,
    ) -> EngineRound:
        """See :meth:`Engine.run_round`."""
        drop = plan_dropouts(len(inputs), self.dropout, stages_of(spec, config),
                             rng.spawn("dropouts"))
        report = run_round(
            spec, config, inputs, rng.spawn("round"), weights=weights, drop_at=drop,
            measure_memory=self.measure_memory,
        )
        cost = RoundCost(
            upload_bytes_per_client=report.upload_bytes_per_client,
            download_bytes_per_client=report.download_bytes_per_client,
            client_seconds=report.client_seconds,
            server_seconds=report.server_seconds + report.helper_seconds,
            server_peak_bytes=report.server_peak_bytes,
        )
        return EngineRound(report.result, report.error, len(report.dropped), cost)


_FACTORIES: dict[str, EngineFactory] = {"simulation": SimulationEngine}

#: Engines that live in optional modules: name -> module that registers it when imported.
_PLUGINS: dict[str, str] = {"flower": "fl.flower"}


def register_engine(name: str, factory: EngineFactory) -> None:
    """Make ``make_engine(name, ...)`` call ``factory``.

    Raises:
        ConfigError: ``name`` is already taken by another factory.
    """
    if name in _FACTORIES and _FACTORIES[name] is not factory:
        raise ConfigError(f"engine name {name!r} is already registered")
    _FACTORIES[name] = factory


def engine_names() -> tuple[str, ...]:
    """Every engine :func:`make_engine` knows by name (registered or importable on demand)."""
    return tuple(sorted(set(_FACTORIES) | set(_PLUGINS)))


def _available() -> str:
    return ", ".join(sorted(_FACTORIES))


def make_engine(name: str, **options: Any) -> Engine:
    """Build the engine called ``name`` with ``options`` (``dropout=...``).

    Raises:
        ConfigError: an unknown name, or an engine whose module cannot be imported here
            (both name the engines that are available).
    """
    if name not in _FACTORIES and name in _PLUGINS:
        module = _PLUGINS[name]
        try:
            plugin = importlib.import_module(module)
            register = getattr(plugin, "register_engines", None)
            if name not in _FACTORIES and callable(register):
                register()  # a module imported earlier, before fl.engines was
        except ImportError as exc:
            missing = getattr(exc, "name", None) or str(exc)
            where = (f"its module {module} is not part of this installation"
                     if missing == module else f"it needs {missing}, which cannot be imported")
            raise ConfigError(
                f"engine {name!r} is not available: {where}; available engines: {_available()}"
            ) from None
        if name not in _FACTORIES:
            raise ConfigError(
                f"engine {name!r} is not available: {module} did not register it; "
                f"available engines: {_available()}"
            )
    factory = _FACTORIES.get(name)
    if factory is None:
        raise ConfigError(f"unknown engine {name!r}; choose one of: {', '.join(engine_names())}")
    return factory(**options)
