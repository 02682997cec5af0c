"""Backbone OoD detectors: k-NN on a frozen pretrained trunk's features references the robot's
whole own pool (training images are as unseen to frozen features as held-out ones), and images
peers sent teach it which feature directions tell its own looks from others'."""

from __future__ import annotations

import numpy as np
import torch

from peerdata.ml.ood import auroc, build_detector
from peerdata.ml.ood_backbone import PEER_MINIMUM, BackboneKnnDetector
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


def _scenes(n: int, striped: bool, seed: int) -> np.ndarray:
    """Blocky colour scenes; `striped` adds faint bright rows: a subtle look of another camera."""
    rng = np.random.default_rng(seed)
    blocks = np.kron(rng.integers(0, 256, (n, SIDE // 8, SIDE // 8, 3)), np.ones((1, 8, 8, 1)))
    x = 0.7 * blocks + 0.3 * rng.integers(0, 256, (n, SIDE, SIDE, 3))
    if striped:
        x[:, ::6] = 0.6 * x[:, ::6] + 0.4 * 255
    return x.astype(np.uint8)


def test_peer_images_teach_the_vote_a_look_that_distance_alone_misses() -> None:
    model = VisionModel(PRETRAINED, seed=0)
    calibration, pool = _scenes(30, False, 0), _scenes(60, False, 1)
    # what peers sent: half looks like my own images, half is another camera's look
    peers = np.concatenate([_scenes(20, False, 2), _scenes(20, True, 3)])
    mine, theirs = _scenes(30, False, 4), _scenes(30, True, 5)
    alone = BackboneKnnDetector()
    alone.fit(model, calibration, pool)
    taught = BackboneKnnDetector()
    taught.fit(model, calibration, pool, peers)
    assert alone.contrast is None and taught.contrast is not None
    before = auroc(alone.score(model, mine), alone.score(model, theirs))
    after = auroc(taught.score(model, mine), taught.score(model, theirs))
    assert after > before + 0.1 and after > 0.9
    # still calibrated on held-out own images: few of mine are novel, most of theirs are
    assert taught.vote(model, mine).novel.mean() <= 0.2
    assert taught.vote(model, theirs).novel.mean() >= 0.5 > alone.vote(model, theirs).novel.mean()


def test_too_few_peer_images_or_a_scratch_backbone_leave_the_distance_alone() -> None:
    model = VisionModel(PRETRAINED, seed=0)
    calibration, pool = _scenes(30, False, 0), _scenes(60, False, 1)
    few = _scenes(PEER_MINIMUM - 1, True, 3)
    plain, with_few = BackboneKnnDetector(), BackboneKnnDetector()
    plain.fit(model, calibration, pool)
    with_few.fit(model, calibration, pool, few)
    probe = _scenes(8, True, 6)
    assert with_few.contrast is None
    assert np.array_equal(with_few.score(model, probe), plain.score(model, probe))
    scratch = VisionModel(VisionConfig(num_classes=3, embedding_dim=16), seed=0)
    gray = np.random.default_rng(0).integers(0, 255, (60, 28, 28)).astype(np.uint8)
    detector = BackboneKnnDetector()
    detector.fit(scratch, gray[:15], gray[15:30], gray[30:])  # trained embedding: no contrast
    assert detector.contrast is None
