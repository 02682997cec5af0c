"""Robust aggregation from the round's starting model: FedAvg over the updates that agree.

Rule: with the round's reference model `g`, each peer's update is `d_i = w_i - g`. The robust
direction is the geometric median of the updates with sample shares capped at `max_share`
(`peerdata.ml.aggregate.geomed`), so no peer, honest or lying about its count, outweighs the
rest; a peer is left out when its update points away from it (cosine <= `min_cosine`: a scaled
`-10x` update points against every honest one) or is longer than `max_norm_factor` times the
sample-weighted median length (noise). The rest are averaged with their real sample weights,
so a fleet where one robot holds most of the data keeps FedAvg's accuracy. Without a reference
it falls back to the capped geometric median with outlier removal.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from peerdata.ml.aggregate.base import ClientUpdate, StateDict, check_updates, is_float
from peerdata.ml.aggregate.geomed import GeometricMedian, capped_shares, flat, unflat, weiszfeld


def _weighted_median(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    order = torch.argsort(values)
    cum = torch.cumsum(weights[order], dim=0)
    return values[order][int(torch.searchsorted(cum, cum[-1] / 2))]


@dataclass(frozen=True)
class AgreeingMean:
    """FedAvg over the updates whose direction agrees with the capped-weight median update."""

    max_share: float = 0.3
    min_cosine: float = 0.0
    max_norm_factor: float = 10.0
    name: str = "agree"

    def aggregate(self, updates: Sequence[ClientUpdate]) -> StateDict:
        """Without the round's reference: the capped geometric median, outliers removed."""
        return GeometricMedian(self.max_share).aggregate(updates)

    def aggregate_from(self, updates: Sequence[ClientUpdate],
                       reference: Mapping[str, torch.Tensor]) -> StateDict:
        """Aggregate `updates` of models that all started the round from `reference`."""
        keys = check_updates(updates)
        floats = [k for k in keys if is_float(updates[0].state[k])]
        if not floats:
            return GeometricMedian(self.max_share).aggregate(updates)
        base = flat(dict(reference), floats)
        deltas = torch.stack([flat(u.state, floats) - base for u in updates])
        counts = torch.tensor([float(u.num_samples) for u in updates], dtype=torch.float64)
        direction = weiszfeld(deltas, capped_shares([u.num_samples for u in updates],
                                                    self.max_share))
        norms = deltas.norm(dim=1)
        cosine = (deltas @ direction) / (norms * direction.norm()).clamp_min(1e-12)
        typical = _weighted_median(norms, counts / counts.sum())
        keep = (cosine > self.min_cosine) & (norms <= self.max_norm_factor * typical)
        if not bool(keep.any()):
            keep = cosine >= cosine.max()
        weights = counts * keep
        merged = base + (weights[:, None] * deltas).sum(dim=0) / weights.sum()
        return unflat(merged, keys, floats, updates[0].state)
