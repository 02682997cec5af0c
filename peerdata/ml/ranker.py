"""The global-utility (GU) ranker θshare: predicts how valuable an image is to the peers.

Rule: the ranker sees only what the robot's own vision model says about an image (embedding,
softmax probabilities, entropy) and learns from utilities its peers reported; it never sees a
dataset name or a ground-truth domain. Until its first fit it ranks at random, as in the paper.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from peerdata.errors import DataError
from peerdata.ml.vision import Prediction


@dataclass(frozen=True)
class RankerConfig:
    """Shape and training schedule of the GU ranker."""

    hidden: int = 32
    epochs: int = 300  # full-batch steps per retrain
    learning_rate: float = 1e-2
    weight_decay: float = 1e-2


# Floor on the per-feature std used for scaling. Softmax columns of classes that never occur in
# the feedback have a std near 0; dividing by it would blow a new image's tiny probability for
# such a class up into a huge input and scramble the ranking (measured: precision 0.86 -> 0.98).
STD_FLOOR = 0.1


def ranker_features(prediction: Prediction) -> np.ndarray:
    """Ranker input per image: [view, softmax probabilities, predictive entropy].

    The view is the frozen pretrained trunk's descriptor where there is one, else the
    embedding. Peers vote on what a frozen trunk sees, and the head's embedding is trained to
    ignore exactly that (a photo and a painting of one class should embed alike): measured on
    pacs-4, the ranker separated a robot's rare images from its common ones at AUROC 0.60-0.83
    on the embedding and 0.86-0.93 on the descriptor, with the same feedback.
    """
    view = prediction.embedding if prediction.descriptor is None else prediction.descriptor
    return np.concatenate(
        [view, prediction.probabilities, prediction.entropy[:, None]], axis=1
    ).astype(np.float32)


def feature_dim(embedding_dim: int, num_classes: int, descriptor_dim: int = 0) -> int:
    """Length of a `ranker_features` row (`descriptor_dim` > 0: the descriptor replaces the
    embedding)."""
    return (descriptor_dim or embedding_dim) + num_classes + 1


class GlobalUtilityRanker:
    """MLP features -> predicted utility û in [0, 1]; retrained from scratch on all feedback."""

    def __init__(self, in_features: int, config: RankerConfig | None = None, seed: int = 0) -> None:
        self.in_features = in_features
        self.config = config or RankerConfig()
        self.seed = seed
        self.trained = False
        self.fits = 0
        self._random_calls = 0
        self._build()

    def _build(self) -> None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed + 7919 * self.fits)
            self.net = nn.Sequential(
                nn.Linear(self.in_features, self.config.hidden),
                nn.ReLU(),
                nn.Linear(self.config.hidden, 1),
            )
        self.register_mean = torch.zeros(self.in_features)
        self.register_std = torch.ones(self.in_features)

    def _check(self, features: np.ndarray) -> torch.Tensor:
        if features.ndim != 2 or features.shape[1] != self.in_features:
            raise DataError(f"ranker expects N x {self.in_features} features, got {features.shape}")
        return (torch.from_numpy(features.astype(np.float32)) - self.register_mean) / (
            self.register_std
        )

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Predicted utility per row, in [0, 1]; seeded uniform noise while untrained."""
        if not self.trained:
            self._check(features)
            rng = np.random.default_rng([self.seed, self._random_calls])
            self._random_calls += 1
            return rng.random(len(features))
        with torch.no_grad():
            return torch.sigmoid(self.net(self._check(features))).squeeze(1).double().numpy()

    def fit(self, features: np.ndarray, utilities: np.ndarray) -> float:
        """Retrain from scratch on every (features, utility) pair so far; returns final loss.

        Utilities are soft targets in [0, 1] (fraction of peers that found the image novel).
        """
        if len(features) != len(utilities) or len(features) == 0:
            raise DataError(
                f"ranker fit needs equal, non-zero counts: {len(features)} features, "
                f"{len(utilities)} utilities"
            )
        if np.any((utilities < 0) | (utilities > 1)) or not np.all(np.isfinite(utilities)):
            raise DataError("utilities must lie in [0, 1]")
        self.fits += 1
        self._build()
        raw = torch.from_numpy(features.astype(np.float32))
        self.register_mean = raw.mean(0)
        self.register_std = raw.std(0, unbiased=False).clamp_min(STD_FLOOR)
        x, y = self._check(features), torch.from_numpy(utilities.astype(np.float32))
        optimizer = torch.optim.Adam(
            self.net.parameters(),
            lr=self.config.learning_rate,
            weight_decay=self.config.weight_decay,
        )
        loss = torch.zeros(())
        for _ in range(self.config.epochs):
            loss = F.binary_cross_entropy_with_logits(self.net(x).squeeze(1), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        self.trained = True
        return float(loss.detach())

    def state_bytes(self) -> bytes:
        """Weights, feature scaling and training status as bytes (torch.save)."""
        buffer = io.BytesIO()
        torch.save(
            {
                "net": self.net.state_dict(),
                "mean": self.register_mean,
                "std": self.register_std,
                "trained": self.trained,
                "fits": self.fits,
            },
            buffer,
        )
        return buffer.getvalue()

    def load_state_bytes(self, data: bytes) -> None:
        """Restore from `state_bytes` of a ranker with the same input size."""
        try:
            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
            self.net.load_state_dict(state["net"])
            self.register_mean, self.register_std = state["mean"], state["std"]
            self.trained, self.fits = bool(state["trained"]), int(state["fits"])
        except Exception as exc:  # bad bytes or mismatched shapes
            raise DataError(f"ranker state does not fit this ranker: {exc}") from None


def select_covering(
    utilities: np.ndarray,
    embeddings: np.ndarray,
    limit: int,
    min_utility: float = 0.0,
    keep: float = 0.0,
    spread_above: float = 0.0,
) -> np.ndarray:
    """Pick up to `limit` rows that peers need *and* that cover different things.

    Greedy utility-weighted facility location (Nemhauser et al.: a (1 - 1/e) approximation):
    every candidate i with utility u_i >= `min_utility` stands for a need of weight u_i, and a
    chosen image j covers it by the cosine similarity of their embeddings. Each step adds the
    image that raises sum_i u_i * max_{j in S} sim(i, j) the most. Unlike the top-`limit` by
    utility, which can be all alike (one or two look-alike classes that seem most novel), the
    choice spreads over the clusters of wanted images.

    `keep` bounds what coverage may cost: the chosen set's summed utility stays >= `keep` times
    that of the top-`limit` (each step only admits images after which that is still reachable).
    Unbounded (0), late steps favour isolated images, whose own need is still uncovered, even
    when they are much less wanted (measured: 8-23% of a budget on common images); near 1,
    coverage only decides among images of nearly equal utility.

    `spread_above` (> 0): when more than `limit` rows reach this utility, only they are
    candidates and coverage alone chooses among them (`keep` is ignored): the budget then spreads
    over everything wanted in proportion to how much of it there is, not only over the most
    wanted (measured on paper-3: those are the most foreign-looking classes of a rare domain, and
    the receivers got a skewed class mix). With fewer such rows, `keep` applies as above.

    Returns indices into the rows, in the order chosen (at most `limit`, only candidates).
    """
    if len(utilities) != len(embeddings):
        raise DataError(f"{len(utilities)} utilities but {len(embeddings)} embeddings")
    if not 0.0 <= keep <= 1.0:
        raise DataError(f"keep must lie in [0, 1], got {keep}")
    if spread_above > 0.0 and int((utilities >= spread_above).sum()) > limit > 0:
        min_utility, keep = max(min_utility, spread_above), 0.0
    candidates = np.flatnonzero(utilities >= min_utility)
    by_utility = candidates[np.argsort(-utilities[candidates], kind="stable")]
    if limit <= 0 or len(candidates) <= limit:
        return by_utility[: max(limit, 0)]
    x = embeddings[by_utility].astype(np.float64)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-8)
    similarity = np.clip(x @ x.T, 0.0, 1.0)  # need i (rows) covered by image j (columns)
    weight = utilities[by_utility].astype(np.float64)
    target = keep * weight[:limit].sum() - 1e-9
    covered = np.zeros(len(by_utility))
    chosen: list[int] = []
    available = np.ones(len(by_utility), bool)
    total = 0.0
    for step in range(limit):
        gain = weight @ np.maximum(similarity - covered[:, None], 0.0)
        # best total reachable after taking j: j plus the best `rest` other available images
        rest = limit - step - 1
        idx = np.flatnonzero(available)  # still sorted by utility
        best = np.concatenate([[0.0], np.cumsum(weight[idx])])
        others = np.where(
            np.arange(len(idx)) < rest, best[min(rest + 1, len(idx))] - weight[idx], best[rest]
        )
        admissible = np.full(len(by_utility), False)
        admissible[idx] = total + weight[idx] + others >= target
        gain[~admissible] = -1.0
        j = int(np.argmax(gain))  # ties: the higher-utility image (rows are sorted by it)
        chosen.append(j)
        available[j] = False
        total += weight[j]
        covered = np.maximum(covered, similarity[:, j])
    return by_utility[np.asarray(chosen, np.int64)]
