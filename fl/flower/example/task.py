"""Model, data partitions, training and evaluation of the example app (plain torch)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from fl.training.data import Shard, load_dataset
from fl.training.model import make_model

__all__ = ["evaluate", "load_partition", "make_net", "test_set", "train"]

SPLIT_SEED = 2024


def make_net(dataset: str = "breast_cancer", seed: int = 0) -> nn.Module:
    """The example's model, a torch module: the dataset's default (``breast_cancer``:
    logistic regression, as ``nn.Linear`` with the weights ``secagg run`` starts from)."""
    model = make_model(dataset, seed=seed)
    if isinstance(model, nn.Module):
        return model
    net = nn.Linear(model.n_features, model.n_classes)  # secagg's numpy linear model, in torch
    with torch.no_grad():
        net.weight.copy_(torch.from_numpy(model.weight))
        net.bias.copy_(torch.from_numpy(model.bias))
    return net


def load_partition(partition_id: int, num_partitions: int,
                   dataset: str = "breast_cancer") -> Shard:
    """This node's share of the training set (an IID split, the same on every host)."""
    shards = load_dataset(dataset).split_iid(num_partitions, seed=SPLIT_SEED)
    return shards[partition_id]


def test_set(dataset: str = "breast_cancer") -> Shard:
    """The held-out test set the server evaluates on."""
    return load_dataset(dataset).test


def train(net: nn.Module, shard: Shard, epochs: int, lr: float, batch_size: int = 32,
          seed: int = 0) -> float:
    """Local SGD on ``shard``; returns the mean loss of the last epoch."""
    gen = torch.Generator().manual_seed(seed)
    x, y = torch.from_numpy(np.asarray(shard.x)), torch.from_numpy(np.asarray(shard.y))
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    net.train()
    last = 0.0
    for _ in range(epochs):
        perm = torch.randperm(len(y), generator=gen)
        total, count = 0.0, 0
        for i in range(0, len(y), batch_size):
            idx = perm[i:i + batch_size]
            opt.zero_grad()
            loss = loss_fn(net(x[idx]), y[idx])
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
            count += len(idx)
        last = total / max(count, 1)
    return last


def evaluate(net: nn.Module, shard: Shard) -> dict[str, Any]:
    """Loss and accuracy of ``net`` on ``shard``."""
    x, y = torch.from_numpy(np.asarray(shard.x)), torch.from_numpy(np.asarray(shard.y))
    net.eval()
    with torch.no_grad():
        logits = net(x)
        loss = float(nn.functional.cross_entropy(logits, y))
        acc = float((logits.argmax(1) == y).float().mean())
    return {"loss": loss, "accuracy": acc, "num-examples": int(len(y))}
