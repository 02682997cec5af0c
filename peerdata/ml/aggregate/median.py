"""Coordinate-wise median (Yin et al., 2018): robust to a minority of bad peers.

Rule: every coordinate is the median of the peers' values for it, unweighted (a weight would let
a liar who claims many samples move the result); with an even count it is the mean of the two
middle values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from peerdata.ml.aggregate.base import ClientUpdate, StateDict, combine


def coordinate_median(stack: torch.Tensor) -> torch.Tensor:
    """Median over the leading axis; the mean of the two middle values when it is even."""
    n = stack.shape[0]
    ordered, _ = torch.sort(stack, dim=0)
    if n % 2 == 1:
        return ordered[n // 2]
    return 0.5 * (ordered[n // 2 - 1] + ordered[n // 2])


@dataclass(frozen=True)
class CoordinateMedian:
    """Coordinate-wise median of the peers' models."""

    name: str = "median"

    def aggregate(self, updates: Sequence[ClientUpdate]) -> StateDict:
        """Return the per-coordinate median of every float parameter."""
        return combine(updates, coordinate_median)
