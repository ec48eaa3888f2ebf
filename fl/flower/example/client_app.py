"""The example's ClientApp: a standard Flower PyTorch ClientApp plus ``mods=[secagg_mod]``.

``train`` is what a Flower app without secure aggregation has: load the global model from
``msg.content["arrays"]``, train on this node's partition, return the trained model and
``num-examples``. :func:`fl.flower.client_app.secagg_mod` turns that into the clipped update
and runs the protocol; the trained model never leaves the node. torch is imported inside the
functions: the protocol's later messages (each a fresh process) never need it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from fl.flower.client_app import secagg_mod

app = ClientApp(mods=[secagg_mod])


def _setup(msg: Message, context: Context):  # type: ignore[no-untyped-def]
    from fl.flower.example import task

    dataset = str(context.run_config.get("dataset", "breast_cancer"))
    net = task.make_net(dataset)
    net.load_state_dict(cast(ArrayRecord, msg.content["arrays"]).to_torch_state_dict())
    shard = task.load_partition(int(context.node_config["partition-id"]),
                                int(context.node_config["num-partitions"]), dataset)
    return task, net, shard


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Train the received model on this node's partition."""
    task, net, shard = _setup(msg, context)
    cfg: Mapping[str, Any] = msg.content["config"] if "config" in msg.content.config_records else {}
    loss = task.train(net, shard, epochs=int(context.run_config.get("local-epochs", 2)),
                      lr=float(context.run_config.get("lr", 0.5)),
                      seed=int(cfg.get("server-round", 0)))
    return Message(RecordDict({"arrays": ArrayRecord(net.state_dict()),
                               "metrics": MetricRecord({"train_loss": loss,
                                                        "num-examples": len(shard)})}),
                   reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """Evaluate the received model on this node's partition."""
    task, net, shard = _setup(msg, context)
    m = task.evaluate(net, shard)
    return Message(RecordDict({"metrics": MetricRecord(m)}), reply_to=msg)
