"""Engines: what runs one secure-aggregation round for the training loop.

- :mod:`fl.engines.registry`: the :class:`Engine` interface, what a round gives back
  (:class:`EngineRound`, :class:`RoundCost`), the built-in :class:`SimulationEngine` and the
  registry (:func:`make_engine`, :func:`register_engine`, :func:`engine_names`);
- :mod:`fl.engines.simulation`: the in-process driver of one round, with simulated dropouts;
- :mod:`fl.engines.pool`: the process pool a driver hands the HE clients.

The Flower engine lives in :mod:`fl.flower` and registers itself when imported.
"""

from __future__ import annotations

from fl.engines.registry import (
    Engine,
    EngineFactory,
    EngineRound,
    RoundCost,
    SimulationEngine,
    engine_names,
    make_engine,
    register_engine,
)

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
