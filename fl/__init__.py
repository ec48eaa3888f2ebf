"""Federated learning on top of the secure-aggregation protocols.

Training runs (:class:`RunConfig`, :func:`plan_run`, :func:`run_training` in :mod:`fl.run`),
engines (:func:`make_engine`, :func:`register_engine` in :mod:`fl.engine`), drivers
(:mod:`fl.simulation`, the in-process default), data (:mod:`fl.data`), torch models and
model<->vector (:mod:`fl.models`, :mod:`fl.model`), local training and FedAvg (:mod:`fl.train`),
and the ``secagg`` command line (:mod:`fl.cli`).

Names are re-exported lazily, so ``import fl`` (and the CLI) does not pay for importing torch
until a torch-based name is used.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "RunConfig": "fl.runconfig", "RunResult": "fl.runconfig", "RoundRecord": "fl.runconfig",
    "plan_run": "fl.run", "run_training": "fl.run",
    "engine_names": "fl.engine", "make_engine": "fl.engine", "register_engine": "fl.engine",
    "RoundReport": "fl.simulation", "run_round": "fl.simulation",
    "plan_dropouts": "fl.simulation",
    "DATASETS": "fl.data", "Dataset": "fl.data", "Shard": "fl.data",
    "load_dataset": "fl.data", "make_synthetic": "fl.data",
    "make_model": "fl.models",
    "ModelVector": "fl.model", "num_params": "fl.model",
    "local_train": "fl.train", "evaluate": "fl.train", "fedavg_step": "fl.train",
    "cap_weights": "fl.train", "sample_clients": "fl.train",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'fl' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return __all__
