"""The torch models (``mlp``, ``cnn``) and their training and evaluation loops.

Imported only when a run builds one of these models, so a run on a linear model
(:mod:`fl.training.linear`) never loads torch. :mod:`fl.training.model` builds them and
:mod:`fl.training.fedavg` trains them; use those.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

__all__ = ["CNN", "MLP", "evaluate", "sgd"]


class MLP(nn.Module):
    """A multilayer perceptron with ReLU between fully connected layers."""

    def __init__(self, n_features: int, hidden: Sequence[int], n_classes: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = n_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, n_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x)
        return out


class CNN(nn.Module):
    """3x3 convolutions (ReLU, then 2x2 max-pooling while the image is large enough)
    followed by one linear layer, for one-channel images given as flattened rows."""

    def __init__(
        self, image_shape: tuple[int, int], channels: Sequence[int], n_classes: int
    ) -> None:
        super().__init__()
        self.image_shape = image_shape
        height, width = image_shape
        layers: list[nn.Module] = []
        prev = 1
        for c in channels:
            layers += [nn.Conv2d(prev, c, kernel_size=3, padding=1), nn.ReLU()]
            if height >= 2 and width >= 2:
                layers.append(nn.MaxPool2d(2))
                height, width = height // 2, width // 2
            prev = c
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(prev * height * width, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.features(x.view(-1, 1, *self.image_shape))
        out: torch.Tensor = self.head(z.flatten(1))
        return out


def _tensors(x: NDArray[np.float32], y: NDArray[np.int64]) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` and ``y`` as tensors, sharing memory where the arrays are writable (torch warns
    on read-only arrays, which are copied)."""
    tx = torch.from_numpy(x) if x.flags.writeable else torch.tensor(x)
    ty = torch.from_numpy(y) if y.flags.writeable else torch.tensor(y)
    return tx, ty


class _SGD:
    """Plain SGD with optional momentum, the update of ``torch.optim.SGD`` (no dampening,
    no weight decay, not Nesterov) for a parameter list.

    Not ``torch.optim.SGD`` itself: its first construction imports ``torch._dynamo``, which
    costs seconds of start-up for nothing a small model needs. The arithmetic is the same:
    ``p -= lr * g``, or with momentum ``b = g`` on the first step, then ``b = momentum * b +
    g`` and ``p -= lr * b`` (tests/test_fl_fedavg.py checks it against torch bit for bit).
    """

    def __init__(self, params: list[torch.Tensor], lr: float, momentum: float) -> None:
        self.params, self.lr, self.momentum = params, lr, momentum
        self.buffers: list[torch.Tensor | None] = [None] * len(params)

    @torch.no_grad()
    def __call__(self) -> None:
        for i, p in enumerate(self.params):
            g = p.grad
            if g is None:
                continue
            if self.momentum != 0.0:
                buf = self.buffers[i]
                if buf is None:
                    buf = self.buffers[i] = torch.clone(g).detach()
                else:
                    buf.mul_(self.momentum).add_(g)
                g = buf
            p.add_(g, alpha=-self.lr)


def sgd(net: nn.Module, x: NDArray[np.float32], y: NDArray[np.int64],
        orders: list[NDArray[np.int64]], *, lr: float, batch_size: int,
        momentum: float) -> tuple[float, int]:
    """Minibatch SGD on ``net`` in place, one pass per entry of ``orders``, with the
    cross-entropy loss; ``net`` is left in the mode it was in.

    Returns:
        ``(loss_sum, correct)`` over the last pass's batches, before each step.
    """
    tx, ty = _tensors(x, y)
    was_training = net.training
    net.train()
    params: list[torch.Tensor] = [p for p in net.parameters() if p.requires_grad]
    step = _SGD(params, lr, momentum)
    loss_fn = nn.CrossEntropyLoss()
    loss_sum, correct = 0.0, 0
    for order in orders:
        perm = torch.from_numpy(order)
        loss_sum, correct = 0.0, 0
        for lo in range(0, len(order), batch_size):
            idx = perm[lo : lo + batch_size]
            xb, yb = tx[idx], ty[idx]
            for p in params:
                p.grad = None
            logits = net(xb)
            loss = loss_fn(logits, yb)
            loss.backward()
            step()
            loss_sum += float(loss.detach()) * int(idx.shape[0])
            correct += int((logits.detach().argmax(dim=1) == yb).sum())
    net.train(was_training)
    return loss_sum, correct


def evaluate(net: nn.Module, x: NDArray[np.float32], y: NDArray[np.int64],
             batch_size: int) -> tuple[float, int]:
    """``(loss_sum, correct)`` of ``net`` on ``(x, y)`` in eval mode, without gradients;
    ``net`` is left in the mode it was in."""
    tx, ty = _tensors(x, y)
    was_training = net.training
    net.eval()
    loss_sum, correct = 0.0, 0
    with torch.no_grad():
        for lo in range(0, len(ty), batch_size):
            xb, yb = tx[lo : lo + batch_size], ty[lo : lo + batch_size]
            logits = net(xb)
            loss_sum += float(nn.functional.cross_entropy(logits, yb, reduction="sum"))
            correct += int((logits.argmax(dim=1) == yb).sum())
    net.train(was_training)
    return loss_sum, correct
