"""Multi-tier FL (MTF-Grasp): data-rich peers train seed models for data-poor ones.

Rule: peers are ranked by an importance score `lambda_dds * DDS + lambda_dqs * DQS`, computed from
label counts only (never from images); the top `top_tier` peers train `et` epochs and each hands
its seed model to the low-tier peers assigned to it, who fine-tune `er` epochs and send it back;
aggregation runs first inside each top-tier group, then across the top tier. Every peer sends and
receives one model per round, the same as FedAvg.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from peerdata.ml.aggregate.base import AggregationError, ClientUpdate, StateDict, check_updates
from peerdata.ml.aggregate.fedavg import FedAvg


@dataclass(frozen=True)
class MultiTierConfig:
    """Weights of the two scores, size of the top tier, and the two epoch counts."""

    lambda_dds: float = 0.5
    lambda_dqs: float = 0.5
    top_tier: int = 3
    et: int = 2
    er: int = 1

    def __post_init__(self) -> None:
        if self.lambda_dds < 0 or self.lambda_dqs < 0 or self.lambda_dds + self.lambda_dqs == 0:
            raise AggregationError("multi-tier: lambdas must be >= 0 and not both 0")
        if self.top_tier < 1:
            raise AggregationError("multi-tier: top_tier must be >= 1")
        if self.et < 1 or self.er < 0:
            raise AggregationError("multi-tier: et must be >= 1 and er >= 0")


@dataclass(frozen=True)
class TierPlan:
    """The round's tiers: top-tier peers (best first) and the top peer each low peer follows."""

    scores: Mapping[str, float]
    top: tuple[str, ...]
    leader: Mapping[str, str]  # low-tier peer -> its top-tier peer

    def group(self, top_peer: str) -> tuple[str, ...]:
        """`top_peer` followed by the low-tier peers assigned to it."""
        return (top_peer,) + tuple(p for p, t in sorted(self.leader.items()) if t == top_peer)


def data_distribution_score(label_counts: Sequence[int]) -> float:
    """Normalised entropy of the label histogram: 1 for balanced classes, 0 for a single one."""
    total = sum(label_counts)
    if total <= 0 or len(label_counts) < 2:
        return 0.0
    entropy = -sum((c / total) * math.log(c / total) for c in label_counts if c > 0)
    return entropy / math.log(len(label_counts))


def data_quantity_score(num_samples: int, max_samples: int) -> float:
    """A peer's sample count relative to the largest peer's, in [0, 1]."""
    return 0.0 if max_samples <= 0 else min(1.0, num_samples / max_samples)


def importance_scores(
    label_counts: Mapping[str, Sequence[int]], cfg: MultiTierConfig
) -> dict[str, float]:
    """`lambda_dds * DDS + lambda_dqs * DQS` for every peer, from its label histogram."""
    biggest = max((sum(c) for c in label_counts.values()), default=0)
    return {
        peer: cfg.lambda_dds * data_distribution_score(counts)
        + cfg.lambda_dqs * data_quantity_score(sum(counts), biggest)
        for peer, counts in label_counts.items()
    }


def plan_tiers(label_counts: Mapping[str, Sequence[int]], cfg: MultiTierConfig) -> TierPlan:
    """Rank peers and assign every low-tier peer to a top-tier one.

    The best `top_tier` peers form the top tier (ties broken by peer ID, so every peer computes
    the same plan); low-tier peers, best first, are dealt round-robin so each group mixes strong
    and weak followers.
    """
    if not label_counts:
        raise AggregationError("multi-tier: no peers to rank")
    scores = importance_scores(label_counts, cfg)
    ranked = sorted(scores, key=lambda p: (-scores[p], p))
    top = tuple(ranked[: min(cfg.top_tier, len(ranked))])
    low = ranked[len(top) :]
    leader = {peer: top[i % len(top)] for i, peer in enumerate(low)}
    return TierPlan(scores=scores, top=top, leader=leader)


@dataclass(frozen=True)
class TwoStepResult:
    """One model per top-tier group, and the global model built from them."""

    group_models: Mapping[str, StateDict]
    group_samples: Mapping[str, int]
    global_model: StateDict


@dataclass(frozen=True)
class MultiTier:
    """Two-step aggregation over a `TierPlan`."""

    config: MultiTierConfig = MultiTierConfig()
    name: str = "multitier"

    @staticmethod
    def group_model(members: Sequence[ClientUpdate]) -> tuple[StateDict, int]:
        """Step 1, at a top-tier peer: FedAvg over its group's models, and their sample count."""
        return FedAvg().aggregate(members), sum(u.num_samples for u in members)

    @staticmethod
    def global_model(groups: Sequence[ClientUpdate]) -> StateDict:
        """Step 2, at the aggregator: FedAvg across the groups' models."""
        return FedAvg().aggregate(groups)

    def aggregate_two_step(self, updates: Sequence[ClientUpdate], plan: TierPlan) -> TwoStepResult:
        """Both steps in one place (the in-process experiment); the daemons play them across
        the network (`peerdata.federated.tiers`) with the same two functions.

        A group whose members all missed the round is left out of step 2.
        """
        check_updates(updates)
        by_peer = {u.peer: u for u in updates}
        unknown = sorted(set(by_peer) - set(plan.top) - set(plan.leader))
        if unknown:
            raise AggregationError(f"multi-tier: updates from peers not in the plan: {unknown}")
        models: dict[str, StateDict] = {}
        samples: dict[str, int] = {}
        for top_peer in plan.top:
            members = [by_peer[p] for p in plan.group(top_peer) if p in by_peer]
            if members:
                models[top_peer], samples[top_peer] = self.group_model(members)
        step_two = [ClientUpdate(t, models[t], samples[t]) for t in models]
        return TwoStepResult(models, samples, self.global_model(step_two))

    def aggregate(self, updates: Sequence[ClientUpdate]) -> StateDict:
        """Without a plan every update is its own group: plain FedAvg."""
        return FedAvg().aggregate(updates)
