"""OoD detectors on a backbone's features (`VisionModel.features`), for pretrained backbones.

Rule: these detectors read only the backbone's features, which for a pretrained backbone are its
frozen ImageNet features: no local training changes them. They are calibrated exactly like the
detectors of `peerdata.ml.ood` (the `tpr` quantile of in-distribution scores) and built by name
through `peerdata.ml.ood.build_detector` (`backbone_knn`, `backbone_mahalanobis`).
"""

from __future__ import annotations

import numpy as np
import torch

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


class BackboneKnnDetector(KnnDetector):
    """Deep k-NN on the backbone's features (`VisionModel.features`): for a pretrained backbone
    these are its frozen ImageNet features, which no local training can collapse.

    With a frozen pretrained trunk the reference is every own image the robot has: the held-out
    calibration images plus its `reference_images` (its training images, labelled or not; the
    last `max_reference` of them at most). That is valid because training never
    touches these features, so a pool image is as unseen to them as a held-out one, and the
    threshold comes from leave-one-out distances over the whole reference. A larger reference
    covers a mixed robot's rare domain far better than ~100 calibration images (the pool
    raised pacs-4's worst (robot, foreign domain) AUROC from ~0.80 to ~0.86 offline). For a
    backbone trained from scratch the features are the trained embedding, which its training
    images would flatter: they are ignored.
    """

    name = "backbone_knn"
    max_reference = 4096  # bounds the k-NN cost of a daemon whose pool keeps growing

    def fit(
        self,
        model: VisionModel,
        in_dist_images: np.ndarray,
        reference_images: np.ndarray | None = None,
    ) -> None:
        """Calibrate on `in_dist_images` plus, for a frozen pretrained trunk, the robot's
        `reference_images` (leave-one-out over both)."""
        pool = reference_images
        if pool is not None and len(pool) and model.trunk is not None:
            keep = max(self.max_reference - len(in_dist_images), 0)
            in_dist_images = np.concatenate([in_dist_images, pool[len(pool) - keep:]])
        super().fit(model, in_dist_images)

    def _fit_reference(self, model: VisionModel, in_dist_images: np.ndarray) -> np.ndarray:
        self.reference = _unit(model.features(in_dist_images))
        return self._kth(self.reference, skip_self=True)

    def score(self, model: VisionModel, images: np.ndarray) -> np.ndarray:
        if self.reference is None:
            raise DataError("backbone_knn detector used before fit()")
        return self._kth(_unit(model.features(images)), skip_self=False)


class BackboneMahalanobisDetector(MahalanobisDetector):
    """Mahalanobis distance on the backbone's features to the nearest predicted-class mean; the
    ridge is scaled by the covariance's mean variance (features of a pretrained backbone have
    far more dimensions than a robot has calibration images)."""

    name = "backbone_mahalanobis"

    def __init__(self, tpr: float = DEFAULT_TPR, ridge: float = 1e-1) -> None:
        super().__init__(tpr, ridge)

    def _fit_reference(self, model: VisionModel, in_dist_images: np.ndarray) -> np.ndarray:
        emb = model.features(in_dist_images).double()
        labels = torch.from_numpy(model.predict(in_dist_images).labels)
        classes = labels.unique()
        self.means = torch.stack([emb[labels == c].mean(0) for c in classes])
        centred = emb - self.means[torch.searchsorted(classes, labels)]
        cov = centred.T @ centred / len(emb)
        scale = float(cov.diagonal().mean()) or 1.0
        cov += self.ridge * scale * torch.eye(cov.shape[0], dtype=cov.dtype)
        self.precision = torch.linalg.inv(cov)
        return self.score(model, in_dist_images)

    def score(self, model: VisionModel, images: np.ndarray) -> np.ndarray:
        if self.means is None or self.precision is None:
            raise DataError("backbone_mahalanobis detector used before fit()")
        diff = model.features(images).double()[:, None, :] - self.means[None, :, :]
        dist = torch.einsum("nkd,de,nke->nk", diff, self.precision, diff)
        return dist.min(dim=1).values.float().numpy()


def build_backbone_detector(name: str, tpr: float = DEFAULT_TPR) -> _CalibratedDetector:
    """A fresh backbone detector by name (one of `peerdata.ml.ood.BACKBONE_DETECTORS`)."""
    if name == "backbone_knn":
        return BackboneKnnDetector(tpr)
    if name == "backbone_mahalanobis":
        return BackboneMahalanobisDetector(tpr)
    raise ConfigError(f"unknown backbone OoD detector {name!r}; known: "
                      f"{', '.join(BACKBONE_DETECTORS)}")
