"""Local training and evaluation of one robot's copy of the shared model.

Rule: pure torch, seeded, no I/O. The architecture is the project's vision model
(`peerdata.ml.vision.VisionNet`); this module only adds what federated training needs that a
plain fine-tune lacks: SGD from a given starting state, and FedProx's proximal term.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from peerdata.ml.aggregate import FedProx, StateDict
from peerdata.ml.vision import VisionConfig, VisionNet, as_tensor


@dataclass(frozen=True)
class LocalTraining:
    """The local optimiser: plain SGD with momentum, as in FedAvg/FedProx papers."""

    learning_rate: float = 0.05
    momentum: float = 0.9
    batch_size: int = 32


def new_state(config: VisionConfig, seed: int) -> StateDict:
    """Initial weights of the shared model (identical on every robot for the same seed)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return {k: v.clone() for k, v in VisionNet(config).state_dict().items()}


def local_seed(seed: int, step: int, index: int) -> int:
    """Robot `index`'s training seed at `step` of run `seed` (in process, in modelled time and
    in the real-process swarm alike)."""
    return seed * 100_003 + step * 101 + index


def train_from(
    config: VisionConfig, start: Mapping[str, torch.Tensor], images: np.ndarray,
    labels: np.ndarray, *, epochs: int, training: LocalTraining, seed: int,
    prox: FedProx | None = None, trainable: Callable[[str], bool] | None = None,
) -> StateDict:
    """Train a copy of `start` for `epochs` passes over the robot's data; return its weights.

    With `prox`, every step adds `mu/2 * ||w - start||^2` to the loss. With `trainable`, only
    the parameters it accepts (by name) are trained; the rest stay frozen, bit for bit.
    """
    net = VisionNet(config)
    net.load_state_dict(start)
    if trainable is not None:
        for name, p in net.named_parameters():
            p.requires_grad_(trainable(name))
    if epochs <= 0 or len(labels) == 0:
        return {k: v.detach().clone() for k, v in net.state_dict().items()}
    anchor = [p.detach().clone() for p in net.parameters()]
    x, y = as_tensor(images), torch.from_numpy(labels.astype(np.int64))
    optimizer = torch.optim.SGD([p for p in net.parameters() if p.requires_grad],
                                lr=training.learning_rate,
                                momentum=training.momentum)
    generator = torch.Generator().manual_seed(seed)
    net.train()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # dropout masks, if the config has dropout
        for _ in range(epochs):
            order = torch.randperm(len(y), generator=generator)
            for begin in range(0, len(y), training.batch_size):
                batch = order[begin : begin + training.batch_size]
                logits, _ = net(x[batch])
                loss = F.cross_entropy(logits, y[batch])
                if prox is not None:
                    loss = loss + prox.loss_term(net.parameters(), anchor)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


@torch.no_grad()
def accuracy(config: VisionConfig, state: Mapping[str, torch.Tensor], images: np.ndarray,
             labels: np.ndarray, batch_size: int = 1000) -> float:
    """Fraction of `images` the model with weights `state` labels correctly."""
    net = VisionNet(config)
    net.load_state_dict(state)
    net.eval()
    correct = 0
    for begin in range(0, len(labels), batch_size):
        logits, _ = net(as_tensor(images[begin : begin + batch_size]))
        correct += int((logits.argmax(dim=1).numpy() == labels[begin : begin + batch_size]).sum())
    return correct / max(len(labels), 1)
