"""The example's ServerApp: FedAvg, the initial model, central evaluation, and
:class:`~fl.flower.workflow.SecAggWorkflow` for the rounds.

Run config keys (``[tool.flwr.app.config]`` of the app written by ``python -m fl.flower
example DIR``; see :data:`RUN_CONFIG`): ``protocol``, ``num-server-rounds``, ``min-nodes``,
``dataset``, ``local-epochs``, ``lr``, ``clip``, ``max-weight``, ``dp`` (bool), ``dp-mode``,
``epsilon``, ``delta``, ``noise-multiplier`` (0: calibrate to ``epsilon``),
``sampling-rate``, ``registry`` (the ``registry.json`` of ``secagg enroll``, on the
SuperLink's host, for the protocols that authenticate clients: ``NAME-active``,
``NAME:enrolled``, ``ckks``, ``paillier``; "" for none), ``stage-timeout`` (seconds a node has for each protocol message, the
first including its local training and a fresh process's imports: generous, since only a
dead node should hit it), ``result-dir`` ("" for none), ``ledger-path`` (a
privacy ledger file on the SuperLink's host, "" for none).
"""

from __future__ import annotations

from typing import Any

from flwr.app import ArrayRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from fl.flower.workflow import DPOptions, SecAggWorkflow

__all__ = ["RUN_CONFIG", "app", "main"]

#: the example's run-config keys and defaults.
RUN_CONFIG: dict[str, Any] = {
    "protocol": "secagg+", "num-server-rounds": 3, "min-nodes": 3,
    "dataset": "breast_cancer", "local-epochs": 2, "lr": 0.5, "clip": 1.0,
    "max-weight": 200.0, "dp": True, "dp-mode": "central", "epsilon": 3.0, "delta": 1e-5,
    "noise-multiplier": 0.0, "sampling-rate": 1.0, "stage-timeout": 180.0, "result-dir": "",
    "ledger-path": "", "registry": "",
}

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Train ``num-server-rounds`` rounds with secure aggregation."""
    from fl.flower.example import task

    cfg = {**RUN_CONFIG, **dict(context.run_config)}
    dataset = str(cfg["dataset"])
    n = int(cfg["min-nodes"])
    net = task.make_net(dataset)
    test = task.test_set(dataset)

    def central_evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        model = task.make_net(dataset)
        model.load_state_dict(arrays.to_torch_state_dict())
        m = task.evaluate(model, test)
        return MetricRecord({"accuracy": m["accuracy"], "loss": m["loss"]})

    dp = None
    if bool(cfg["dp"]):
        z = float(cfg["noise-multiplier"])
        dp = DPOptions(mode=str(cfg["dp-mode"]), epsilon=float(cfg["epsilon"]),
                       delta=float(cfg["delta"]), noise_multiplier=z if z > 0 else None,
                       sampling_rate=float(cfg["sampling-rate"]),
                       ledger_path=str(cfg["ledger-path"]) or None)
    strategy = FedAvg(fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=n,
                      min_available_nodes=n)
    workflow = SecAggWorkflow(str(cfg["protocol"]), clip=float(cfg["clip"]),
                              max_weight=float(cfg["max-weight"]), dp=dp,
                              stage_timeout=float(cfg["stage-timeout"]),
                              result_dir=str(cfg["result-dir"]) or None, label=dataset,
                              registry=str(cfg["registry"]) or None)
    workflow(grid, strategy, ArrayRecord(net.state_dict()),
             num_rounds=int(cfg["num-server-rounds"]), evaluate_fn=central_evaluate)
