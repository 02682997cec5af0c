"""Out-of-distribution detectors: does this image look novel to *my* model?

Rule: a detector is calibrated on the robot's own held-out in-distribution images, so that a
stated fraction of them (the true-positive rate, default 95%) is accepted as familiar; anything
scoring above that threshold is voted novel. Higher score always means more novel.

Detectors: `mc_dropout` (the paper's Bayesian uncertainty: predictive entropy or mutual
information over MC-dropout samples), `energy` (negative free energy of the logits), `knn`
(distance to the k-th nearest in-distribution embedding) and `mahalanobis` (distance to the
nearest class mean under a shared covariance); `backbone_knn` and `backbone_mahalanobis` do the
same on the backbone's features (`VisionModel.features`: a pretrained backbone's frozen ImageNet
features), the detectors that work best with a pretrained backbone; they live in
`peerdata.ml.ood_backbone` and are built by name here like every other.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from peerdata.errors import ConfigError, DataError
from peerdata.ml.vision import VisionModel

DEFAULT_TPR = 0.95


@dataclass(frozen=True)
class OodVote:
    """One robot's verdict on a batch of images: `novel[i]` iff `score[i] > threshold`."""

    novel: np.ndarray  # bool, N
    score: np.ndarray  # float, N
    threshold: float


class OodDetector(Protocol):
    """Fit on in-distribution images, then vote on new ones."""

    name: str

    def fit(
        self,
        model: VisionModel,
        in_dist_images: np.ndarray,
        reference_images: np.ndarray | None = None,
        peer_images: np.ndarray | None = None,
    ) -> None: ...

    def score(self, model: VisionModel, images: np.ndarray) -> np.ndarray: ...

    def vote(self, model: VisionModel, images: np.ndarray) -> OodVote: ...


class _CalibratedDetector:
    """Shared calibration: threshold = the `tpr` quantile of in-distribution scores."""

    name = "base"

    def __init__(self, tpr: float = DEFAULT_TPR) -> None:
        if not 0.0 < tpr < 1.0:
            raise ConfigError(f"OoD true-positive rate must lie in (0, 1), got {tpr}")
        self.tpr = tpr
        self.threshold: float | None = None
        self.reference_images: np.ndarray | None = None

    def _fit_reference(self, model: VisionModel, in_dist_images: np.ndarray) -> np.ndarray:
        """Prepare detector state; return calibration scores of the in-distribution images."""
        return self.score(model, in_dist_images)

    def score(self, model: VisionModel, images: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def fit(
        self,
        model: VisionModel,
        in_dist_images: np.ndarray,
        reference_images: np.ndarray | None = None,
        peer_images: np.ndarray | None = None,
    ) -> None:
        """Calibrate on held-out in-distribution images (at least 10).

        `reference_images`: the robot's own training images, for detectors that compare an image
        with a reference set (kNN); the held-out images are then scored against them. Without
        it the held-out images are their own reference (leave-one-out). `peer_images`: images
        peers sent, for detectors that learn from them (`backbone_knn`); others ignore them.
        """
        if len(in_dist_images) < 10:
            raise DataError(f"OoD calibration needs >= 10 images, got {len(in_dist_images)}")
        self.reference_images = reference_images
        scores = self._fit_reference(model, in_dist_images)
        self.threshold = float(np.quantile(scores, self.tpr))

    def vote(self, model: VisionModel, images: np.ndarray) -> OodVote:
        """Score the images and mark those above the calibrated threshold as novel.

        Each image is scored alone: its verdict never depends on the images it arrived with
        (a batch's float reductions, and its dropout masks, would differ with its grouping).
        """
        if self.threshold is None:
            raise DataError(f"{self.name} detector used before fit()")
        score = np.array([self.score(model, images[i:i + 1])[0] for i in range(len(images))],
                         np.float64).reshape(len(images))
        return OodVote(score > self.threshold, score, self.threshold)


class McDropoutDetector(_CalibratedDetector):
    """The paper's Bayesian detector: uncertainty over MC-dropout samples of the classifier."""

    name = "mc_dropout"

    def __init__(
        self,
        tpr: float = DEFAULT_TPR,
        samples: int = 20,
        measure: str = "entropy",
        seed: int = 0,
    ) -> None:
        super().__init__(tpr)
        if measure not in ("entropy", "mutual_information"):
            raise ConfigError(f"measure must be 'entropy' or 'mutual_information', not {measure!r}")
        self.samples, self.measure, self.seed = samples, measure, seed

    def image_seed(self, image: np.ndarray) -> int:
        """The dropout seed of one image: from the detector's seed and the image's pixels, so
        its masks are the same whatever it is scored with."""
        digest = hashlib.blake2b(np.ascontiguousarray(image).tobytes(), digest_size=8,
                                 key=self.seed.to_bytes(8, "big", signed=True)).digest()
        return int.from_bytes(digest, "big") >> 1

    def score(self, model: VisionModel, images: np.ndarray) -> np.ndarray:
        if not len(images):
            return np.zeros(0)
        probs = np.concatenate([  # S x N x C, each image with its own masks
            model.sample_probabilities(images[i:i + 1], self.samples, self.image_seed(images[i]))
            for i in range(len(images))], axis=1)
        mean = probs.mean(axis=0)
        predictive = -(mean * np.log(np.clip(mean, 1e-12, 1))).sum(axis=1)
        if self.measure == "entropy":
            return predictive
        expected = -(probs * np.log(np.clip(probs, 1e-12, 1))).sum(axis=2).mean(axis=0)
        return predictive - expected


class EnergyDetector(_CalibratedDetector):
    """Energy score (Liu et al. 2020): -T * logsumexp(logits / T); high energy = novel."""

    name = "energy"

    def __init__(self, tpr: float = DEFAULT_TPR, temperature: float = 1.0) -> None:
        super().__init__(tpr)
        self.temperature = temperature

    def score(self, model: VisionModel, images: np.ndarray) -> np.ndarray:
        logits = torch.from_numpy(model.predict(images).logits)
        t = self.temperature
        return (-t * torch.logsumexp(logits / t, dim=1)).numpy()


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-8)


class KnnDetector(_CalibratedDetector):
    """Deep k-NN (Sun et al. 2022): distance to the k-th nearest normalized reference embedding."""

    name = "knn"

    def __init__(self, tpr: float = DEFAULT_TPR, k: int = 5) -> None:
        super().__init__(tpr)
        self.k = k
        self.reference: torch.Tensor | None = None

    def _kth(self, queries: torch.Tensor, skip_self: bool) -> np.ndarray:
        assert self.reference is not None
        k = min(self.k + int(skip_self), len(self.reference))
        dist = torch.cdist(queries, self.reference)
        return dist.topk(k, dim=1, largest=False).values[:, -1].numpy()

    def _vectors(self, model: VisionModel, images: np.ndarray) -> torch.Tensor:
        return _unit(model.embed(images))

    def _fit_reference(self, model: VisionModel, in_dist_images: np.ndarray) -> np.ndarray:
        held_out = self._vectors(model, in_dist_images)
        if self.reference_images is None or len(self.reference_images) < self.k:
            self.reference = held_out
            return self._kth(held_out, skip_self=True)  # leave-one-out calibration
        # the robot's training images as reference (Sun et al. use the training set): a denser
        # picture of its own data than the held-out images alone; those are scored as queries
        self.reference = self._vectors(model, self.reference_images)
        return self._kth(held_out, skip_self=False)

    def score(self, model: VisionModel, images: np.ndarray) -> np.ndarray:
        if self.reference is None:
            raise DataError(f"{self.name} detector used before fit()")
        return self._kth(self._vectors(model, images), skip_self=False)


class MahalanobisDetector(_CalibratedDetector):
    """Mahalanobis distance (Lee et al. 2018) to the nearest predicted-class mean embedding."""

    name = "mahalanobis"

    def __init__(self, tpr: float = DEFAULT_TPR, ridge: float = 1e-2) -> None:
        super().__init__(tpr)
        self.ridge = ridge
        self.means: torch.Tensor | None = None
        self.precision: torch.Tensor | None = None

    def _vectors(self, model: VisionModel, images: np.ndarray) -> torch.Tensor:
        """The vectors the distance is measured on: the model's embeddings."""
        return model.embed(images)

    def _ridge(self, cov: torch.Tensor) -> float:
        """What is added to the covariance's diagonal before inverting it."""
        return self.ridge

    def _fit_reference(self, model: VisionModel, in_dist_images: np.ndarray) -> np.ndarray:
        emb = self._vectors(model, in_dist_images).double()
        labels = torch.from_numpy(model.predict(in_dist_images).labels)
        classes = labels.unique()
        self.means = torch.stack([emb[labels == c].mean(0) for c in classes])
        centred = emb - self.means[torch.searchsorted(classes, labels)]
        cov = centred.T @ centred / len(emb)
        cov += self._ridge(cov) * torch.eye(cov.shape[0], dtype=cov.dtype)
        self.precision = torch.linalg.inv(cov)
        return self.score(model, in_dist_images)

    def score(self, model: VisionModel, images: np.ndarray) -> np.ndarray:
        if self.means is None or self.precision is None:
            raise DataError(f"{self.name} detector used before fit()")
        diff = self._vectors(model, images).double()[:, None, :] - self.means[None, :, :]
        dist = torch.einsum("nkd,de,nke->nk", diff, self.precision, diff)
        return dist.min(dim=1).values.float().numpy()


class CombinedDetector(_CalibratedDetector):
    """A calibrated vote of several detectors: the mean of their standardized scores.

    Each part is fitted on the same in-distribution images and its scores on them give a robust
    location and scale (median, IQR / 1.349). A new image's score is the mean over parts of
    (score - median) / scale, so every part speaks in "in-distribution spreads above typical",
    whatever its units; the combined threshold is then calibrated like any single detector's.
    A shift one detector is blind to (energy on some domains, Mahalanobis when one class-mean
    model covers two domains) is then outvoted by the others instead of deciding the vote.
    """

    def __init__(
        self, parts: Sequence[_CalibratedDetector], tpr: float = DEFAULT_TPR, rule: str = "mean"
    ) -> None:
        super().__init__(tpr)
        if rule not in ("mean", "max"):
            raise ConfigError(f"combination rule must be 'mean' or 'max', not {rule!r}")
        self.rule = rule
        if len(parts) < 2:
            raise ConfigError("a combined detector needs at least two parts")
        self.parts = list(parts)
        self.name = "+".join(p.name for p in self.parts)
        self.location = np.zeros(len(self.parts))
        self.scale = np.ones(len(self.parts))

    def _standardized(self, raw: np.ndarray) -> np.ndarray:
        z = (raw - self.location[:, None]) / self.scale[:, None]
        return z.mean(axis=0) if self.rule == "mean" else z.max(axis=0)

    def _fit_reference(self, model: VisionModel, in_dist_images: np.ndarray) -> np.ndarray:
        for part in self.parts:
            part.reference_images = self.reference_images
        raw = np.stack([p._fit_reference(model, in_dist_images) for p in self.parts])
        q25, q50, q75 = np.quantile(raw, [0.25, 0.5, 0.75], axis=1)
        self.location = q50
        self.scale = np.maximum((q75 - q25) / 1.349, 1e-6 * np.maximum(np.abs(q50), 1.0))
        return self._standardized(raw)

    def score(self, model: VisionModel, images: np.ndarray) -> np.ndarray:
        return self._standardized(np.stack([p.score(model, images) for p in self.parts]))


BACKBONE_DETECTORS: tuple[str, ...] = ("backbone_knn", "backbone_mahalanobis")  # ood_backbone
SINGLE_DETECTORS: tuple[str, ...] = (
    "mc_dropout",
    "energy",
    "knn",
    "mahalanobis",
    *BACKBONE_DETECTORS,
)
COMBINED = "combined"  # the default combination, see `COMBINED_PARTS`
COMBINED_PARTS: tuple[str, ...] = ("mc_dropout", "knn")
DETECTORS: tuple[str, ...] = (*SINGLE_DETECTORS, COMBINED)


def build_detector(name: str, tpr: float = DEFAULT_TPR, seed: int = 0) -> _CalibratedDetector:
    """A fresh detector by name: one of `DETECTORS`, or parts joined by '+' ("knn+energy")."""
    if name == COMBINED:
        name = "+".join(COMBINED_PARTS)
    if "+" in name:
        parts = [build_detector(part, tpr, seed) for part in name.split("+")]
        return CombinedDetector(parts, tpr)
    if name == "mc_dropout":
        return McDropoutDetector(tpr, seed=seed)
    if name == "energy":
        return EnergyDetector(tpr)
    if name == "knn":
        return KnnDetector(tpr)
    if name == "mahalanobis":
        return MahalanobisDetector(tpr)
    if name in BACKBONE_DETECTORS:
        from peerdata.ml.ood_backbone import build_backbone_detector  # imports this module

        return build_backbone_detector(name, tpr)
    raise ConfigError(f"unknown OoD detector {name!r}; known: {', '.join(DETECTORS)}")


def auroc(in_dist_scores: np.ndarray, novel_scores: np.ndarray) -> float:
    """Area under the ROC curve for separating novel (positive) from in-distribution scores.

    The probability that a random novel image scores above a random in-distribution one, ties
    counting one half (Mann-Whitney U).
    """
    if len(in_dist_scores) == 0 or len(novel_scores) == 0:
        return float("nan")
    both = np.concatenate([in_dist_scores, novel_scores]).astype(np.float64)
    order = both.argsort(kind="mergesort")
    ranks = np.empty(len(both))
    sorted_scores = both[order]
    # average ranks over ties
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_scores)) + 1]
    ends = np.r_[starts[1:], len(both)]
    for s, e in zip(starts, ends, strict=True):
        ranks[order[s:e]] = (s + e - 1) / 2.0 + 1
    n_pos, n_neg = len(novel_scores), len(in_dist_scores)
    u = ranks[n_neg:].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))
