"""FedAvg (McMahan et al., 2017): the sample-count weighted mean of the peers' models.

Rule: a peer's weight is its sample count and nothing else; it is the baseline every other rule
is measured against.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from peerdata.ml.aggregate.base import (
    ClientUpdate,
    StateDict,
    combine,
    sample_weights,
    weighted_mean,
)


@dataclass(frozen=True)
class FedAvg:
    """Sample-count weighted average of every float parameter."""

    name: str = "fedavg"

    def aggregate(self, updates: Sequence[ClientUpdate]) -> StateDict:
        """Return sum_i (n_i / n) * w_i for each parameter."""
        weights = sample_weights(updates)
        return combine(updates, lambda stack: weighted_mean(stack, weights))
