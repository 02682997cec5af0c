"""OoD detectors on a backbone's features (`VisionModel.features`, `.pyramid`), for pretrained
backbones.

Rule: these detectors read only the backbone's features, which for a pretrained backbone are its
frozen ImageNet features: no local training changes them. They are calibrated exactly like the
detectors of `peerdata.ml.ood` (the `tpr` quantile of in-distribution scores) and built by name
through `peerdata.ml.ood.build_detector` (`backbone_knn`, `backbone_mahalanobis`). `backbone_knn`
also learns from the images peers sent, when it is given them (`peer_images`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from peerdata.errors import ConfigError, DataError
from peerdata.ml.ood import (
    BACKBONE_DETECTORS,
    DEFAULT_TPR,
    KnnDetector,
    MahalanobisDetector,
    _CalibratedDetector,
    _unit,
)
from peerdata.ml.vision import VisionModel

PEER_MINIMUM = 20  # fewer own or peer images than this: the k-NN distance votes alone


def own_vs_peers(own: torch.Tensor, peers: torch.Tensor, ridge: float = 1e-3
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """A linear score (weights, bias) that is high on `peers`' features and low on `own`'s:
    class-balanced logistic regression with an L2 penalty `ridge`, fitted by L-BFGS."""
    x = torch.cat([own, peers]).double()
    y = torch.cat([torch.zeros(len(own)), torch.ones(len(peers))]).double()
    weight = torch.where(y > 0, len(own) / len(peers), 1.0).double()
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=200, line_search_fn="strong_wolfe")

    def loss() -> torch.Tensor:
        opt.zero_grad()
        value = F.binary_cross_entropy_with_logits(x @ w + b, y, weight=weight)
        value = value + ridge * (w * w).sum()
        value.backward()
        return value

    with torch.enable_grad():
        opt.step(loss)
    return w.detach().float(), b.detach().float()


class BackboneKnnDetector(KnnDetector):
    """Deep k-NN on the backbone's features (`VisionModel.features`), sharpened by the images
    peers sent: for a pretrained backbone these are its frozen ImageNet features, which no local
    training can collapse.

    With a frozen pretrained trunk the reference is every own image the robot has: the held-out
    calibration images plus its `reference_images` (its training images, labelled or not; the
    last `max_reference` of them at most). That is valid because training never
    touches these features, so a pool image is as unseen to them as a held-out one. A larger
    reference covers a mixed robot's rare domain far better than ~100 calibration images.
    For a backbone trained from scratch the features are the trained embedding, which its
    training images would flatter: they are ignored.

    `peer_images`: images peers sent (unlabelled as to where they come from: some look like
    the robot's own, some do not). With at least `PEER_MINIMUM` of them and of own training
    images, a linear score own-vs-peers is fitted on the trunk's whole feature pyramid
    (`VisionModel.pyramid`: style statistics of every stage plus the pooled features; positive-
    unlabelled learning: on a mixture, the score still ranks images by how unlike the robot's
    own they are; Katz-Samuels et al. 2022 train OoD detectors on such "wild" data). A distance
    treats every feature direction alike; this score learns which directions, at which depth,
    tell the robot's own looks from others', which no distance finds (offline, the pyramid
    raised the worst (robot, foreign look) AUROC of pacs-4-like mixes from 0.93 to 0.96 and of
    weather-4-like mixes from 0.90 to 0.97 over the pooled features alone). The vote is then
    the sum of the two scores,
    each standardised on the held-out calibration images (median, IQR / 1.349), which the
    linear score never saw; the threshold is calibrated on them. Without peer images
    (bootstrap) the k-NN distance votes alone, with leave-one-out calibration over the whole
    reference.
    """

    name = "backbone_knn"
    max_reference = 4096  # bounds the k-NN cost of a daemon whose pool keeps growing
    max_peers = 2048  # bounds the linear fit: the newest peer images

    def __init__(self, tpr: float = DEFAULT_TPR, k: int = 5) -> None:
        super().__init__(tpr, k)
        self.contrast: tuple[torch.Tensor, torch.Tensor] | None = None
        self.location, self.scale = np.zeros(2), np.ones(2)
        self._held_out = 0
        self._peers: np.ndarray | None = None

    def fit(
        self,
        model: VisionModel,
        in_dist_images: np.ndarray,
        reference_images: np.ndarray | None = None,
        peer_images: np.ndarray | None = None,
    ) -> None:
        """Calibrate on `in_dist_images` plus, for a frozen pretrained trunk, the robot's
        `reference_images` and the `peer_images` it received (see the class)."""
        self._held_out = len(in_dist_images)
        frozen = model.trunk is not None
        self._peers = None
        if frozen and peer_images is not None and len(peer_images) >= PEER_MINIMUM:
            self._peers = peer_images[-self.max_peers:]
        pool = reference_images
        if pool is not None and len(pool) and frozen:
            keep = max(self.max_reference - len(in_dist_images), 0)
            in_dist_images = np.concatenate([in_dist_images, pool[len(pool) - keep:]])
        super().fit(model, in_dist_images)
        self._peers = None  # the fitted score keeps no images

    def _fit_reference(self, model: VisionModel, in_dist_images: np.ndarray) -> np.ndarray:
        self.reference = _unit(model.features(in_dist_images))
        distance = self._kth(self.reference, skip_self=True)  # leave-one-out
        self.contrast, held = None, min(self._held_out, len(self.reference))
        if self._peers is None or len(self.reference) - held < PEER_MINIMUM:
            return distance
        w, b = own_vs_peers(model.pyramid(in_dist_images[held:]), model.pyramid(self._peers))
        self.contrast = (w, b)
        raw = np.stack([distance[:held], (model.pyramid(in_dist_images[:held]) @ w + b).numpy()])
        q25, q50, q75 = np.quantile(raw, [0.25, 0.5, 0.75], axis=1)
        self.location = q50
        self.scale = np.maximum((q75 - q25) / 1.349, 1e-6 * np.maximum(np.abs(q50), 1.0))
        return self._combined(raw)

    def _combined(self, raw: np.ndarray) -> np.ndarray:
        return ((raw - self.location[:, None]) / self.scale[:, None]).sum(axis=0)

    def score(self, model: VisionModel, images: np.ndarray) -> np.ndarray:
        if self.reference is None:
            raise DataError("backbone_knn detector used before fit()")
        vectors = _unit(model.features(images))
        distance = self._kth(vectors, skip_self=False)
        if self.contrast is None:
            return distance
        w, b = self.contrast
        return self._combined(np.stack([distance, (model.pyramid(images) @ w + b).numpy()]))


class BackboneMahalanobisDetector(MahalanobisDetector):
    """Mahalanobis distance on the backbone's features to the nearest predicted-class mean; the
    ridge is scaled by the covariance's mean variance (features of a pretrained backbone have
    far more dimensions than a robot has calibration images)."""

    name = "backbone_mahalanobis"

    def __init__(self, tpr: float = DEFAULT_TPR, ridge: float = 1e-1) -> None:
        super().__init__(tpr, ridge)

    def _vectors(self, model: VisionModel, images: np.ndarray) -> torch.Tensor:
        return model.features(images)

    def _ridge(self, cov: torch.Tensor) -> float:
        return self.ridge * (float(cov.diagonal().mean()) or 1.0)


def build_backbone_detector(name: str, tpr: float = DEFAULT_TPR) -> _CalibratedDetector:
    """A fresh backbone detector by name (one of `peerdata.ml.ood.BACKBONE_DETECTORS`)."""
    if name == "backbone_knn":
        return BackboneKnnDetector(tpr)
    if name == "backbone_mahalanobis":
        return BackboneMahalanobisDetector(tpr)
    raise ConfigError(f"unknown backbone OoD detector {name!r}; known: "
                      f"{', '.join(BACKBONE_DETECTORS)}")
