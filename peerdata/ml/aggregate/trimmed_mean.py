"""Coordinate-wise trimmed mean (Yin et al., 2018): drop the extremes, average the rest.

Rule: for every coordinate the `floor(trim * n)` largest and smallest values are discarded and the
rest averaged, unweighted; a configuration that would discard everything is refused.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from peerdata.ml.aggregate.base import AggregationError, ClientUpdate, StateDict, combine


def trimmed(stack: torch.Tensor, trim: float) -> torch.Tensor:
    """Mean over the leading axis after dropping `floor(trim * n)` values at each end."""
    n = stack.shape[0]
    k = math.floor(trim * n)
    if n - 2 * k < 1:
        raise AggregationError(f"trimmed mean: trimming {k} of {n} from each end leaves nothing")
    ordered, _ = torch.sort(stack, dim=0)
    return ordered[k : n - k].mean(dim=0)


@dataclass(frozen=True)
class TrimmedMean:
    """Coordinate-wise trimmed mean; `trim` is the fraction cut from each end (0 <= trim < 0.5)."""

    trim: float = 0.2
    name: str = "trimmed_mean"

    def __post_init__(self) -> None:
        if not 0 <= self.trim < 0.5:
            raise AggregationError(f"trimmed mean: trim must be in [0, 0.5), got {self.trim}")

    def aggregate(self, updates: Sequence[ClientUpdate]) -> StateDict:
        """Return the per-coordinate trimmed mean of every float parameter."""
        return combine(updates, lambda stack: trimmed(stack, self.trim))
