"""A real Flower app that trains a torch model with secure aggregation and DP.

- :mod:`fl.flower.example.task`: the model (logistic regression on the bundled
  ``breast_cancer`` dataset, or an MLP on ``digits``), partitions, local training, evaluation;
- :mod:`fl.flower.example.client_app`: a standard Flower ClientApp (``@app.train()`` returns
  the trained model and ``num-examples``) with ``mods=[secagg_mod]``: the only change;
- :mod:`fl.flower.example.server_app`: a ServerApp with a FedAvg strategy whose rounds run
  through :class:`fl.flower.workflow.SecAggWorkflow`: the other change.

Each SuperNode trains on partition ``partition-id`` of ``num-partitions`` (node config).
Write its ``pyproject.toml`` with ``python -m fl.flower example DIR`` and run it with
``flwr run DIR <connection>`` (README, "Beyond one machine: Flower").
"""
