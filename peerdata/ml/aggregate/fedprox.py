"""FedProx (Li et al., 2020): FedAvg aggregation plus a client-side proximal term.

Rule: the server side is FedAvg unchanged; the heterogeneity correction lives in each peer's
local loss, `mu/2 * ||w - w_global||^2`, which keeps a data-poor or skewed peer from drifting far
from the model it started the round with.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch

from peerdata.ml.aggregate.base import AggregationError, ClientUpdate, StateDict
from peerdata.ml.aggregate.fedavg import FedAvg


def proximal_term(
    params: Iterable[torch.Tensor], global_params: Iterable[torch.Tensor], mu: float
) -> torch.Tensor:
    """Return `mu/2 * sum ||p - g||^2` (differentiable in `params`, constant in `global_params`).

    Raises:
        AggregationError: the two parameter lists differ in length or shapes.
    """
    params, global_params = list(params), list(global_params)
    if len(params) != len(global_params):
        raise AggregationError(
            f"proximal term: {len(params)} parameters vs {len(global_params)} global ones"
        )
    total = torch.zeros(())
    for p, g in zip(params, global_params, strict=True):
        if p.shape != g.shape:
            raise AggregationError(f"proximal term: shape {tuple(p.shape)} vs {tuple(g.shape)}")
        total = total + (p - g.detach()).pow(2).sum()
    return 0.5 * mu * total


@dataclass(frozen=True)
class FedProx:
    """FedAvg on the server, `mu`-weighted proximal term on the client."""

    mu: float = 0.01
    name: str = "fedprox"

    def __post_init__(self) -> None:
        if self.mu < 0:
            raise AggregationError(f"FedProx mu must be >= 0, got {self.mu}")

    def loss_term(
        self, params: Iterable[torch.Tensor], global_params: Iterable[torch.Tensor]
    ) -> torch.Tensor:
        """The term a peer adds to its local loss each step."""
        return proximal_term(params, global_params, self.mu)

    def aggregate(self, updates: Sequence[ClientUpdate]) -> StateDict:
        """Sample-weighted mean, exactly as FedAvg."""
        return FedAvg().aggregate(updates)
