"""Backbone OoD detectors: k-NN on a frozen pretrained trunk's features references the robot's
whole own pool (training images are as unseen to frozen features as held-out ones)."""

from __future__ import annotations

import numpy as np
import torch

from peerdata.ml.ood import build_detector
from peerdata.ml.ood_backbone import BackboneKnnDetector
from peerdata.ml.vision import VisionConfig, VisionModel

torch.set_num_threads(1)
SIDE = 64
PRETRAINED = VisionConfig(backbone="efficientnet-lite0", input_side=SIDE, num_classes=3,
                          embedding_dim=16)


def _images(n: int, bright: bool, seed: int) -> np.ndarray:
    """Dark noise, or bright noise with stripes: two looks a backbone tells apart."""
    x = np.random.default_rng(seed).integers(0, 60, (n, SIDE, SIDE, 3)).astype(np.uint8)
    if bright:
        x += 180
        x[:, ::4] = 255
    return x


def test_the_pool_joins_the_reference_of_a_frozen_trunk() -> None:
    model = VisionModel(PRETRAINED, seed=0)
    calibration, pool = _images(20, bright=False, seed=0), _images(20, bright=True, seed=1)
    later_bright = _images(10, bright=True, seed=2)
    alone = build_detector("backbone_knn")
    alone.fit(model, calibration)
    pooled = build_detector("backbone_knn")
    pooled.fit(model, calibration, pool)
    assert isinstance(pooled, BackboneKnnDetector) and pooled.reference is not None
    assert len(pooled.reference) == 40
    assert alone.vote(model, later_bright).novel.all()  # a look only the pool had is novel...
    assert not pooled.vote(model, later_bright).novel.any()  # ...unless the pool counts
    assert not pooled.vote(model, _images(10, bright=False, seed=3)).novel.all()


def test_the_reference_is_bounded_and_keeps_the_newest_pool_images() -> None:
    model = VisionModel(PRETRAINED, seed=0)
    detector = BackboneKnnDetector()
    detector.max_reference = 30
    calibration = _images(20, bright=False, seed=0)
    pool = np.concatenate([_images(20, bright=False, seed=4), _images(10, bright=True, seed=5)])
    detector.fit(model, calibration, pool)
    assert detector.reference is not None and len(detector.reference) == 30
    assert not detector.vote(model, _images(10, bright=True, seed=6)).novel.any()


def test_a_backbone_trained_from_scratch_ignores_the_pool() -> None:
    model = VisionModel(VisionConfig(num_classes=3, embedding_dim=16), seed=0)
    gray = np.random.default_rng(0).integers(0, 255, (30, 28, 28)).astype(np.uint8)
    detector = build_detector("backbone_knn")
    detector.fit(model, gray[:15], gray[15:])  # the embedding is trained on the pool: unused
    assert isinstance(detector, BackboneKnnDetector) and detector.reference is not None
    assert len(detector.reference) == 15
