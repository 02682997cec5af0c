"""Types every aggregation rule shares, and the checks they all run first.

Rule: an aggregation rule is a pure function of the updates it is handed. Nothing here does
I/O, touches the network, or knows about wire messages; validation of what a peer *sent* happens
before an update reaches this package (see `peerdata.federated.validate`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch

from peerdata.errors import PeerdataError

StateDict = dict[str, torch.Tensor]


class AggregationError(PeerdataError):
    """The updates handed to a rule cannot be combined (our misuse, not a peer's fault)."""


@dataclass(frozen=True)
class ClientUpdate:
    """One peer's model after local training, with how many samples it trained on.

    `tag` is an optional task label (e.g. "kitchen", "warehouse") used by clustered FL.
    """

    peer: str
    state: Mapping[str, torch.Tensor]
    num_samples: int
    tag: str | None = field(default=None)


class AggregationRule(Protocol):
    """A strategy that turns the round's updates into one model (Flower: `aggregate_fit`)."""

    @property
    def name(self) -> str:
        """The strategy's configuration name, e.g. "fedavg"."""
        ...

    def aggregate(self, updates: Sequence[ClientUpdate]) -> StateDict:
        """Combine `updates` into one state dict."""
        ...


def check_updates(updates: Sequence[ClientUpdate]) -> tuple[str, ...]:
    """Return the shared key order after checking that the updates can be combined.

    Raises:
        AggregationError: no updates, a non-positive sample count, or mismatched keys/shapes.
    """
    if not updates:
        raise AggregationError("nothing to aggregate: no updates")
    first = updates[0].state
    keys = tuple(first)
    for u in updates:
        if u.num_samples <= 0:
            raise AggregationError(f"update from {u.peer} has num_samples={u.num_samples}")
        if tuple(u.state) != keys:
            raise AggregationError(f"update from {u.peer} has different parameter names")
        for k in keys:
            if u.state[k].shape != first[k].shape:
                raise AggregationError(
                    f"update from {u.peer}: {k} has shape {tuple(u.state[k].shape)}, "
                    f"expected {tuple(first[k].shape)}"
                )
    return keys


def stacked(updates: Sequence[ClientUpdate], key: str) -> torch.Tensor:
    """Stack one parameter of every update along a new leading axis, as float32."""
    return torch.stack([u.state[key].detach().to(torch.float32) for u in updates])


def is_float(t: torch.Tensor) -> bool:
    """Floating-point tensors are averaged; integer buffers (BN step counts) are copied."""
    return torch.is_floating_point(t)


def combine(
    updates: Sequence[ClientUpdate],
    reduce: Callable[[torch.Tensor], torch.Tensor],
) -> StateDict:
    """Apply `reduce(stack [n, ...]) -> tensor` to every float parameter.

    Non-float buffers are taken from the first update; each result keeps its input dtype.
    """
    keys = check_updates(updates)
    out: StateDict = {}
    for k in keys:
        ref = updates[0].state[k]
        if is_float(ref):
            out[k] = reduce(stacked(updates, k)).to(ref.dtype)
        else:
            out[k] = ref.detach().clone()
    return out


def sample_weights(updates: Sequence[ClientUpdate]) -> torch.Tensor:
    """Normalised sample-count weights, shape [n]."""
    counts = torch.tensor([float(u.num_samples) for u in updates], dtype=torch.float64)
    return (counts / counts.sum()).to(torch.float32)


def weighted_mean(stack: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weighted mean over the leading axis of `stack`."""
    shape = (-1,) + (1,) * (stack.dim() - 1)
    return (stack * weights.view(shape)).sum(dim=0)


def flatten_delta(state: Mapping[str, torch.Tensor], reference: Mapping[str, torch.Tensor],
                  keys: Sequence[str]) -> torch.Tensor:
    """Concatenate `state - reference` over the float parameters into one vector."""
    parts = [
        (state[k].detach().to(torch.float32) - reference[k].detach().to(torch.float32)).flatten()
        for k in keys
        if is_float(state[k])
    ]
    return torch.cat(parts) if parts else torch.zeros(0)
