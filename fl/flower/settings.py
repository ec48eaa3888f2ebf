"""The Flower app's run config, its defaults, and what both apps derive from it.

``flwr run`` accepts only run-config keys that the app's ``pyproject.toml`` declares, so
:data:`RUN_CONFIG` is the single list of keys (with their defaults) that
:func:`fl.flower.deploy.write_app` writes under ``[tool.flwr.app.config]``:

================  =========  ==========================================================
key               default    meaning
================  =========  ==========================================================
protocol          secagg+    one of ``protocols.names()``
num-clients       0          cohort size; 0: every SuperNode connected at the start
dim               100        length of each client's update
rounds            2          aggregation rounds in the run
seed              ""         "" (the default): every party draws from OS entropy. An
                             integer: every party derives its generator from it, as
                             :func:`round_root` says (tests and demos: only nodes with
                             node config ``secagg-loopback=true`` accept it)
data-seed         0          seeds :func:`synthetic_input` (a node config may override)
stage-timeout     60.0       seconds a client has to answer each message
node-wait         120.0      seconds to wait for ``num-clients`` SuperNodes to connect
result-dir        ""         if set, the ServerApp writes each round's result there
job-dir           ""         loopback engine only (:mod:`fl.flower.jobs`)
idle-timeout      900.0      loopback engine only: give up after this long without a job
================  =========  ==========================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from secagg.errors import ConfigError
from secagg.rng import Csprng

__all__ = ["RUN_CONFIG", "parse_seed", "round_root", "synthetic_input"]

RUN_CONFIG: dict[str, Any] = {
    "protocol": "secagg+",
    "num-clients": 0,
    "dim": 100,
    "rounds": 2,
    "seed": "",
    "data-seed": 0,
    "stage-timeout": 60.0,
    "node-wait": 120.0,
    "result-dir": "",
    "job-dir": "",
    "idle-timeout": 900.0,
}


def get(run_config: Mapping[str, Any], key: str) -> Any:
    """``run_config[key]``, or its default from :data:`RUN_CONFIG`."""
    return run_config.get(key, RUN_CONFIG[key])


def parse_seed(value: Any) -> int | None:
    """The run seed: None for "" (OS entropy), else a non-negative integer.

    Raises:
        ConfigError: anything else.
    """
    if value is None or value == "":
        return None
    try:
        seed = int(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"seed must be '' (OS entropy) or an integer >= 0, got {value!r}") from None
    if seed < 0 or isinstance(value, bool):
        raise ConfigError(f"seed must be '' (OS entropy) or an integer >= 0, got {value!r}")
    return seed


def round_root(seed: int, round_index: int) -> Csprng:
    """The generator of aggregation round ``round_index`` of a seeded run.

    Every party derives its own from it exactly as :func:`fl.engines.simulation.run_round` does from
    its ``rng``: :func:`protocols.parties.party_rng` (``"server"``, ``"helpers"``,
    ``"enrolment"``, client ``u``); the round's session id is ``spawn("session").bytes(16)``. So
    ``run_round(spec, config, inputs, round_root(seed, r))`` reproduces round ``r``.

    .. warning:: anyone who knows the seed knows every key and mask: tests and demos only.
    """
    return Csprng.from_seed(seed).spawn(f"round/{round_index}")


def synthetic_input(partition_id: int, dim: int, data_seed: int = 0) -> np.ndarray:
    """A client's demo update: ``dim`` values uniform in ``[-1, 1) / sqrt(dim)`` (norm < 1),
    determined by the partition id and the data seed, the same on every machine."""
    if partition_id < 0 or dim < 1:
        raise ConfigError(f"need partition_id >= 0 and dim >= 1, got {partition_id}, {dim}")
    rng = Csprng.from_seed(f"secagg-flower/data/{int(data_seed)}/{int(partition_id)}")
    out: np.ndarray = (rng.random(dim) * 2.0 - 1.0) / np.sqrt(dim)
    return out
