"""The example's job without secagg, for side-by-side round times (``secagg bench
--deployment``): the same model, data, partitions and local training.

- ``fedavg_server`` / ``fedavg_client``: plain Flower FedAvg (``strategy.start``), no secure
  aggregation: one train message per node per round;
- ``secaggplus_server`` / ``secaggplus_client``: Flower 1.41's own SecAgg+
  (``DefaultWorkflow(fit_workflow=SecAggPlusWorkflow(...))`` with the legacy FedAvg, and
  ``secaggplus_mod`` around a ``NumPyClient`` that trains the same model).
- ``secagg_server``: :class:`fl.flower.workflow.SecAggWorkflow` without DP and without
  evaluation (its ClientApp is :mod:`fl.flower.example.client_app`).

Every ServerApp prints one ``[bench] round R end T`` line per round (``T`` from
``time.monotonic()``, and a ``[bench] start T`` line before the first), so the bench reads
the seconds per round of each from the run's log. Run config: ``num-server-rounds``,
``min-nodes``, ``protocol`` and ``registry`` (``secagg_server`` only), ``num-shares`` and
``reconstruction-threshold`` (``secaggplus_server`` only), ``local-epochs``, ``lr``.
"""

from __future__ import annotations

import time
from typing import Any

from flwr.app import ArrayRecord, Context, Message
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

__all__ = ["RUN_CONFIG", "fedavg_client", "fedavg_server", "secagg_server",
           "secaggplus_client", "secaggplus_server"]

RUN_CONFIG: dict[str, Any] = {
    "protocol": "secagg+", "num-server-rounds": 3, "min-nodes": 3, "local-epochs": 2,
    "lr": 0.5, "num-shares": 3, "reconstruction-threshold": 2, "stage-timeout": 180.0,
    "dataset": "breast_cancer", "registry": "",
}


def _mark(what: str) -> None:
    print(f"[bench] {what} {time.monotonic():.6f}", flush=True)


def _cfg(context: Context) -> dict[str, Any]:
    return {**RUN_CONFIG, **dict(context.run_config)}


# -- plain FedAvg ---------------------------------------------------------------------------
fedavg_client = ClientApp()


@fedavg_client.train()
def _fedavg_train(msg: Message, context: Context) -> Message:
    from fl.flower.example.client_app import train

    return train(msg, context)


fedavg_server = ServerApp()


@fedavg_server.main()
def _fedavg_main(grid: Grid, context: Context) -> None:
    from flwr.serverapp.strategy import FedAvg

    from fl.flower.example import task

    cfg = _cfg(context)
    n = int(cfg["min-nodes"])

    class Timed(FedAvg):
        def aggregate_train(self, server_round: int, replies: Any) -> Any:
            out = super().aggregate_train(server_round, replies)
            _mark(f"round {server_round} end")
            return out

    strategy = Timed(fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=n,
                     min_available_nodes=n)
    _mark("start")
    strategy.start(grid, ArrayRecord(task.make_net(str(cfg["dataset"])).state_dict()),
                   num_rounds=int(cfg["num-server-rounds"]))


# -- Flower's own SecAgg+ -------------------------------------------------------------------
def _numpy_client(context: Context) -> Any:
    from flwr.client import NumPyClient

    from fl.flower.example import task

    cfg = _cfg(context)
    dataset = str(cfg["dataset"])

    class Client(NumPyClient):
        def fit(self, parameters: Any, config: Any) -> tuple[list[Any], int, dict[str, Any]]:
            import torch

            net = task.make_net(dataset)
            state = dict(zip(net.state_dict().keys(), parameters))
            net.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
            shard = task.load_partition(int(context.node_config["partition-id"]),
                                        int(context.node_config["num-partitions"]), dataset)
            task.train(net, shard, int(cfg["local-epochs"]), float(cfg["lr"]))
            return [v.detach().numpy() for v in net.state_dict().values()], len(shard), {}

    return Client().to_client()


def _make_secaggplus_client() -> Any:
    from flwr.client import ClientApp as LegacyClientApp
    from flwr.client.mod import secaggplus_mod

    return LegacyClientApp(client_fn=_numpy_client, mods=[secaggplus_mod])


secaggplus_client = _make_secaggplus_client()
secaggplus_server = ServerApp()


@secaggplus_server.main()
def _secaggplus_main(grid: Grid, context: Context) -> None:
    from flwr.common import ndarrays_to_parameters
    from flwr.server import LegacyContext, ServerConfig
    from flwr.server.strategy import FedAvg as LegacyFedAvg
    from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow

    from fl.flower.example import task

    cfg = _cfg(context)
    n = int(cfg["min-nodes"])
    net = task.make_net(str(cfg["dataset"]))

    class Timed(LegacyFedAvg):
        def aggregate_fit(self, server_round: int, results: Any, failures: Any) -> Any:
            out = super().aggregate_fit(server_round, results, failures)
            _mark(f"round {server_round} end")
            return out

    strategy = Timed(fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=n,
                     min_evaluate_clients=0, min_available_clients=n,
                     initial_parameters=ndarrays_to_parameters(
                         [v.detach().numpy() for v in net.state_dict().values()]))
    legacy = LegacyContext(context=context,
                           config=ServerConfig(num_rounds=int(cfg["num-server-rounds"])),
                           strategy=strategy)
    workflow = DefaultWorkflow(fit_workflow=SecAggPlusWorkflow(
        num_shares=int(cfg["num-shares"]),
        reconstruction_threshold=int(cfg["reconstruction-threshold"]), max_weight=1000.0,
        timeout=float(cfg["stage-timeout"])))
    _mark("start")
    workflow(grid, legacy)


# -- secagg's workflow, timed the same way ------------------------------------------------
secagg_server = ServerApp()


@secagg_server.main()
def _secagg_main(grid: Grid, context: Context) -> None:
    from flwr.serverapp.strategy import FedAvg

    from fl.flower.example import task
    from fl.flower.workflow import SecAggWorkflow

    cfg = _cfg(context)
    n = int(cfg["min-nodes"])
    strategy = FedAvg(fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=n,
                      min_available_nodes=n)

    def log(text: str) -> None:
        print(f"[secagg] {text}", flush=True)
        if text.startswith("round "):
            _mark(f"round {text.split(':', 1)[0].split()[1]} end")

    wf = SecAggWorkflow(str(cfg["protocol"]), clip=1.0, max_weight=1000.0,
                        stage_timeout=float(cfg["stage-timeout"]), log=log,
                        registry=str(cfg["registry"]) or None)
    _mark("start")
    wf(grid, strategy, ArrayRecord(task.make_net(str(cfg["dataset"])).state_dict()),
       num_rounds=int(cfg["num-server-rounds"]))
