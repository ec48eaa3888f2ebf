"""Flower (1.41, Message API) as the distributed engine for every secagg protocol.

- :mod:`fl.flower.server_app`: a ``ServerApp`` whose ``main(grid, context)`` drives the
  server core (and, for ckks and paillier, the decryptor, as a separate object in the same
  process) of any protocol in ``protocols.names()`` over Flower messages;
- :mod:`fl.flower.client_app`: :func:`secagg_mod`, a ClientApp mod that hosts the client core
  of a node, and a ``ClientApp`` that uses it with a synthetic input;
- :mod:`fl.flower.driver`: the routing, per-message deadlines and dropout rules (a node that
  answers with an error, or not within ``stage-timeout``, has dropped: the core hears it from
  ``close_round()``);
- :mod:`fl.flower.deploy`: a real SuperLink and SuperNodes on 127.0.0.1, started and stopped
  as subprocesses; :mod:`fl.flower.engine`: :class:`FlowerEngine`, ``secagg run --engine
  flower``. Only wire frames (:mod:`secagg.wire`) cross Flower; nothing is pickled.

Try it on one machine (3 SuperNodes on 127.0.0.1, 2 rounds of secagg+; a minute or two)::

    python -m fl.flower demo --nodes 3 --protocol secagg+ --rounds 2

Running across machines
-----------------------
The same ServerApp and ClientApp run unchanged on a multi-machine Flower deployment. Every
host needs ``pip install 'secagg[flower]'`` (the same version everywhere). Flower 1.41 serves
the SuperLink's Fleet, Control and runtime APIs on one HTTP port (8000 by default; older
Flower releases used 9091-9093)::

    # server host: the SuperLink (use --ssl-certfile/--ssl-keyfile/--ssl-ca-certfile, not
    # --insecure, outside a trusted network)
    flower-superlink --insecure --host 0.0.0.0 --port 8000

    # client host i of N (i = 0 .. N-1): one SuperNode per client
    flower-supernode --insecure --superlink SERVER_HOST:8000 \\
        --node-config "partition-id=i num-partitions=N secagg-protocol='secagg+'"

    # any machine that reaches SERVER_HOST:8000: write the app, name the connection, run
    python -m fl.flower app ./secagg-app          # writes ./secagg-app/pyproject.toml
    cat >> ~/.flwr/config.toml <<EOF
    [superlink.cluster]
    address = "SERVER_HOST:8000"
    insecure = true
    EOF
    flwr run ./secagg-app cluster --stream \\
        --run-config "protocol='secagg+' num-clients=N dim=1000 rounds=3"

Client ``u`` of the cohort is the node with ``partition-id = u`` (otherwise nodes are taken in
node-id order). Each node's input comes from its ClientApp: the bundled one contributes a
synthetic vector determined by its partition id and ``data-seed``. To aggregate real model
updates, write a ClientApp with ``ClientApp(mods=[secagg_mod])`` whose ``@app.train()``
function returns the update, and name it as ``clientapp`` in the app's ``pyproject.toml``.
Leave ``seed`` empty: every party then draws its keys from OS entropy, and a real node (one
without node config ``secagg-loopback=true``, which only the loopback test deployments set)
refuses a seeded run outright. The ServerApp logs each round; with ``result-dir`` it also
writes them on the SuperLink's host. Run-config keys: :mod:`fl.flower.settings`.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

#: public name -> the submodule that defines it; imported on first use (PEP 562), so that
#: a ClientApp process, which imports ``fl.flower.client_app`` for every message, pays for
#: nothing else (no engine, no simulator, no deployment code).
_EXPORTS = {
    "DeploymentError": "fl.flower.deploy", "LocalDeployment": "fl.flower.deploy",
    "write_app": "fl.flower.deploy",
    "RoundOutcome": "fl.flower.driver", "assign_clients": "fl.flower.driver",
    "drive_round": "fl.flower.driver",
    "FlowerEngine": "fl.flower.engine",
    "SimulatedDropout": "fl.flower.client_app", "secagg_mod": "fl.flower.client_app",
    "DPOptions": "fl.flower.workflow", "SecAggWorkflow": "fl.flower.workflow",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'fl.flower' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return __all__


def make_flower_engine(**options: Any) -> Any:
    """``make_engine("flower", ...)``: a :class:`~fl.flower.engine.FlowerEngine` with
    ``trains_on_nodes=True``, so that :func:`fl.training.loop.run_training` hands the whole run to
    :func:`fl.flower.training.run_deployed` (the clients train on their SuperNodes)."""
    from fl.flower.engine import FlowerEngine

    return FlowerEngine(trains_on_nodes=True, **options)


def register_engines() -> None:
    """Register ``flower`` with :mod:`fl.engines` (what ``make_engine("flower")`` calls)."""
    from fl.engines import register_engine

    register_engine("flower", make_flower_engine)


if "fl.engines" in sys.modules:  # imported by make_engine: register now
    register_engines()
