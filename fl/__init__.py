"""Federated learning on top of the secure-aggregation protocols.

The folders follow one training run's data:

- :mod:`fl.training`: the run itself. :mod:`~fl.training.config` (:class:`RunConfig`, the
  records), :mod:`~fl.training.data` and :mod:`~fl.training.anonymity` (the clients' shards),
  :mod:`~fl.training.model` (the numpy linear model of :mod:`~fl.training.linear`, the torch
  nets of :mod:`~fl.training.nets`, model <-> vector), :mod:`~fl.training.fedavg`
  (local training, weights, sampling, the FedAvg step), :mod:`~fl.training.payload` (the one
  layout of what a client puts into the secure sum), :mod:`~fl.training.loop`
  (:func:`plan_run`, :func:`run_training`) and :mod:`~fl.training.report` (the report folder).
- :mod:`fl.privacy`: the DP of each round (noise hooks, the ledger check before a round and
  its charge after it) and Bolt-on DP.
- :mod:`fl.engines`: what runs one secure-aggregation round (:func:`make_engine`,
  :func:`register_engine`); :mod:`~fl.engines.simulation` is the in-process default.
- :mod:`fl.flower`: the Flower engine and apps; :mod:`fl.audit`: the canary audit;
  :mod:`fl.cli`: the ``secagg`` command line.

Names are re-exported lazily, so ``import fl`` (and the CLI) does not pay for importing torch
until a torch-based name is used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

_EXPORTS = {
    "RunConfig": "fl.training.config", "RunResult": "fl.training.config",
    "RoundRecord": "fl.training.config",
    "plan_run": "fl.training.loop", "run_training": "fl.training.loop",
    "Engine": "fl.engines", "EngineRound": "fl.engines", "SimulationEngine": "fl.engines",
    "engine_names": "fl.engines", "make_engine": "fl.engines", "register_engine": "fl.engines",
    "RoundReport": "fl.engines.simulation", "run_round": "fl.engines.simulation",
    "plan_dropouts": "fl.engines.simulation",
    "DATASETS": "fl.training.data", "Dataset": "fl.training.data", "Shard": "fl.training.data",
    "load_dataset": "fl.training.data", "make_synthetic": "fl.training.data",
    "make_model": "fl.training.model", "ModelVector": "fl.training.model",
    "num_params": "fl.training.model",
    "local_train": "fl.training.fedavg", "evaluate": "fl.training.fedavg",
    "fedavg_step": "fl.training.fedavg", "cap_weights": "fl.training.fedavg",
    "sample_clients": "fl.training.fedavg",
}

__all__ = sorted(_EXPORTS)


def _lazy(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any],
                                                             Callable[[], list[str]]]:
    """A package's ``__getattr__`` and ``__dir__`` that import ``exports[name]`` (a module)
    on first use of ``name``, so importing the package itself stays light."""
    names = sorted(exports)

    def getattr_(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module), name)

    def dir_() -> list[str]:
        return names

    return getattr_, dir_


__getattr__, __dir__ = _lazy("fl", _EXPORTS)
