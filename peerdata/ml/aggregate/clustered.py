"""Clustered FL (Sattler et al., 2020; Ghosh et al., 2020): one model per group of similar peers.

Rule: peers are grouped either by a configured task tag or by the cosine similarity of their
updates (`state - reference`), with deterministic average-linkage merging; each cluster gets the
FedAvg of its members, and the global model is the FedAvg of everyone, so a peer can always fall
back to it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from peerdata.ml.aggregate.base import (
    AggregationError,
    ClientUpdate,
    StateDict,
    check_updates,
    flatten_delta,
)
from peerdata.ml.aggregate.fedavg import FedAvg

_GROUPINGS = ("similarity", "tag")


@dataclass(frozen=True)
class ClusterResult:
    """Which cluster each peer is in, one model per cluster, and the global model."""

    assignment: Mapping[str, int]
    cluster_models: tuple[StateDict, ...]
    global_model: StateDict

    def model_for(self, peer: str) -> StateDict:
        """The cluster model `peer` should start its next round from."""
        return self.cluster_models[self.assignment[peer]]


def cosine_matrix(vectors: torch.Tensor) -> torch.Tensor:
    """Pairwise cosine similarity of the rows of `vectors` (zero rows are similar to nothing)."""
    norms = vectors.norm(dim=1, keepdim=True)
    unit = torch.where(norms > 0, vectors / norms.clamp_min(1e-12), torch.zeros_like(vectors))
    return unit @ unit.T


def cluster_by_similarity(
    similarity: torch.Tensor, threshold: float, max_clusters: int
) -> list[int]:
    """Average-linkage agglomerative clustering on a similarity matrix.

    Merges the most similar pair of clusters while their mean similarity is >= `threshold`, or
    while there are more than `max_clusters` clusters. Returns a cluster index per row, numbered
    by first appearance so the result is deterministic.
    """
    n = similarity.shape[0]
    clusters: list[list[int]] = [[i] for i in range(n)]
    while len(clusters) > 1:
        best, pair = -2.0, (0, 1)
        for a in range(len(clusters)):
            for b in range(a + 1, len(clusters)):
                s = float(similarity[clusters[a]][:, clusters[b]].mean())
                if s > best:
                    best, pair = s, (a, b)
        if best < threshold and len(clusters) <= max_clusters:
            break
        a, b = pair
        clusters[a] = sorted(clusters[a] + clusters[b])
        del clusters[b]
    clusters.sort(key=min)
    labels = [0] * n
    for index, members in enumerate(clusters):
        for i in members:
            labels[i] = index
    return labels


@dataclass(frozen=True)
class Clustered:
    """Group peers (by `grouping`), then FedAvg within each group and across everyone.

    `threshold` is the cosine similarity of updates above which groups merge; `max_clusters`
    caps the number of groups.
    """

    grouping: str = "similarity"
    threshold: float = 0.3
    max_clusters: int = 3
    name: str = "clustered"

    def __post_init__(self) -> None:
        if self.grouping not in _GROUPINGS:
            raise AggregationError(f"clustered: grouping must be one of {_GROUPINGS}")
        if self.max_clusters < 1:
            raise AggregationError("clustered: max_clusters must be >= 1")
        if not -1 <= self.threshold <= 1:
            raise AggregationError("clustered: threshold must be in [-1, 1]")

    def assign(
        self,
        updates: Sequence[ClientUpdate],
        reference: Mapping[str, torch.Tensor] | None,
        starts: Mapping[str, Mapping[str, torch.Tensor]] | None = None,
    ) -> list[int]:
        """Return a cluster index per update.

        Updates are `state - reference`, or `state - starts[peer]` when peers started the round
        from different (cluster) models.
        """
        keys = check_updates(updates)
        if self.grouping == "tag":
            if any(u.tag is None for u in updates):
                raise AggregationError("clustered by tag: every update needs a tag")
            order = sorted({u.tag for u in updates if u.tag is not None})
            return [order.index(u.tag) for u in updates if u.tag is not None]
        if starts is None:
            if reference is None:
                raise AggregationError("clustered by similarity needs the round's reference")
            starts = {u.peer: reference for u in updates}
        deltas = torch.stack([flatten_delta(u.state, starts[u.peer], keys) for u in updates])
        return cluster_by_similarity(cosine_matrix(deltas), self.threshold, self.max_clusters)

    def aggregate_clusters(
        self,
        updates: Sequence[ClientUpdate],
        reference: Mapping[str, torch.Tensor] | None = None,
        starts: Mapping[str, Mapping[str, torch.Tensor]] | None = None,
    ) -> ClusterResult:
        """Return the clusters, a FedAvg model per cluster, and the global FedAvg model."""
        labels = self.assign(updates, reference, starts)
        fedavg = FedAvg()
        models = tuple(
            fedavg.aggregate([u for u, c in zip(updates, labels, strict=True) if c == index])
            for index in range(max(labels) + 1)
        )
        return ClusterResult(
            assignment={u.peer: c for u, c in zip(updates, labels, strict=True)},
            cluster_models=models,
            global_model=fedavg.aggregate(updates),
        )

    def aggregate(self, updates: Sequence[ClientUpdate]) -> StateDict:
        """The global model (FedAvg over everyone); use `aggregate_clusters` for the rest."""
        return FedAvg().aggregate(updates)
