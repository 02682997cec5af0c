"""Robust aggregation: a weighted geometric median (RFA: Pillutla, Kakade and Harchaoui, 2019)
as the centre, then the weighted mean of the models near it.

Rule: the centre is the point `z` minimising `sum_i a_i * ||w_i - z||` over the peers' whole
models (all float parameters as one vector, smoothed Weiszfeld), where `a_i` is the peer's
sample share capped at `max_share` (so no single peer, honest or lying about its count, can hold
the majority a median needs). A peer farther from `z` than `outlier_factor` times the median
distance is left out, and the rest are averaged with the same capped sample weights: as long as
the peers that behave hold more than half the weight, a scaled or random update is dropped
however far it goes, unlike a mean, which it drags anywhere; and unlike a coordinate median the
result keeps the sample weighting non-IID fleets need (a robot with 20 images is not the median
robot's equal). `outlier_factor = 0` returns the geometric median itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from peerdata.ml.aggregate.base import (
    AggregationError,
    ClientUpdate,
    StateDict,
    check_updates,
    is_float,
)


def flat(state: StateDict, floats: Sequence[str]) -> torch.Tensor:
    """The float parameters `floats` of `state` as one float64 vector."""
    if not floats:
        return torch.zeros(0, dtype=torch.float64)
    return torch.cat([state[k].detach().to(torch.float64).flatten() for k in floats])


def unflat(vector: torch.Tensor, keys: Sequence[str], floats: Sequence[str],
           like: StateDict) -> StateDict:
    """A state dict shaped like `like`: floats from `vector` (as `flat` laid them out), every
    other tensor copied from `like`."""
    out: StateDict = {}
    offset = 0
    wanted = set(floats)
    for k in keys:
        ref = like[k]
        if k in wanted:
            size = ref.numel()
            out[k] = vector[offset : offset + size].reshape(ref.shape).to(ref.dtype)
            offset += size
        else:
            out[k] = ref.detach().clone()
    return out


def capped_shares(counts: Sequence[int], max_share: float) -> torch.Tensor:
    """Sample shares, each capped at `max_share` with the excess spread over the others
    (water-filling); all equal when the cap cannot be met."""
    n = len(counts)
    share = torch.tensor([float(c) for c in counts], dtype=torch.float64)
    share = share / share.sum()
    if max_share * n <= 1:
        return torch.full((n,), 1.0 / n, dtype=torch.float64)
    for _ in range(n):
        over = share > max_share
        if not bool(over.any()):
            break
        excess = float((share[over] - max_share).sum())
        share[over] = max_share
        under = ~over & (share < max_share)
        share[under] += excess * share[under] / share[under].sum()
    return share


def weiszfeld(points: torch.Tensor, weights: torch.Tensor, iterations: int = 50,
              eps: float = 1e-8, tol: float = 1e-7) -> torch.Tensor:
    """The weighted geometric median of the rows of `points` (smoothed Weiszfeld, float64)."""
    z = (weights[:, None] * points).sum(dim=0)
    for _ in range(iterations):
        dist = (points - z).norm(dim=1).clamp_min(eps)
        beta = weights / dist
        new = (beta[:, None] * points).sum(dim=0) / beta.sum()
        if float((new - z).norm()) <= tol * max(1.0, float(z.norm())):
            return new
        z = new
    return z


@dataclass(frozen=True)
class GeometricMedian:
    """Sample-weighted geometric median of the peers' models (robust aggregation, RFA)."""

    max_share: float = 0.3
    outlier_factor: float = 3.0
    iterations: int = 50
    name: str = "geomed"

    def __post_init__(self) -> None:
        if not 0 < self.max_share <= 1:
            raise AggregationError("geomed: max_share must be in (0, 1]")
        if self.outlier_factor < 0:
            raise AggregationError("geomed: outlier_factor must be >= 0")
        if self.iterations < 1:
            raise AggregationError("geomed: iterations must be >= 1")

    def aggregate(self, updates: Sequence[ClientUpdate]) -> StateDict:
        """Return the geometric median of every float parameter taken together."""
        keys = check_updates(updates)
        floats = [k for k in keys if is_float(updates[0].state[k])]
        points = torch.stack([flat(u.state, floats) for u in updates])
        shares = capped_shares([u.num_samples for u in updates], self.max_share)
        median = weiszfeld(points, shares, self.iterations)
        if self.outlier_factor > 0 and len(updates) > 2:
            dist = (points - median).norm(dim=1)
            keep = dist <= self.outlier_factor * dist.median().clamp_min(1e-12)
            kept = shares * keep
            median = (kept[:, None] * points).sum(dim=0) / kept.sum()
        return unflat(median, keys, floats, updates[0].state)
