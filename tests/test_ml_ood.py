"""OoD detectors: AUROC arithmetic, calibration at the stated TPR, and separation of domains."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from peerdata.datasets.synthetic import generate
from peerdata.errors import ConfigError, DataError
from peerdata.ml.ood import (
    COMBINED,
    COMBINED_PARTS,
    DETECTORS,
    CombinedDetector,
    KnnDetector,
    McDropoutDetector,
    auroc,
    build_detector,
)
from peerdata.ml.vision import VisionConfig, VisionModel

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def spots_model() -> VisionModel:
    data = generate("spots", 1000, seed=0)
    model = VisionModel(VisionConfig(num_classes=10, width=8, embedding_dim=16), seed=0)
    model.train(data.images, data.labels, epochs=5, seed=0)
    assert model.accuracy(data.images[:200], data.labels[:200]) > 0.8
    return model


def test_auroc_known_values() -> None:
    assert auroc(np.array([0.0, 1.0]), np.array([2.0, 3.0])) == 1.0
    assert auroc(np.array([2.0, 3.0]), np.array([0.0, 1.0])) == 0.0
    assert auroc(np.array([1.0, 1.0]), np.array([1.0, 1.0])) == 0.5
    assert np.isnan(auroc(np.array([]), np.array([1.0])))


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.integers(0, 5), min_size=1, max_size=12),
    st.lists(st.integers(0, 5), min_size=1, max_size=12),
)
def test_auroc_matches_pairwise_definition(neg: list[int], pos: list[int]) -> None:
    pairs = [(p > n) + 0.5 * (p == n) for p in pos for n in neg]
    assert auroc(np.array(neg, float), np.array(pos, float)) == pytest.approx(np.mean(pairs))


@pytest.mark.parametrize("name", DETECTORS)
def test_detector_calibrates_at_tpr_and_flags_foreign_family(
    spots_model: VisionModel, name: str
) -> None:
    calibration = generate("spots", 300, seed=2).images
    detector = build_detector(name, tpr=0.9)
    detector.fit(spots_model, calibration)
    familiar = detector.vote(spots_model, generate("spots", 400, seed=6).images)
    # the threshold is the 90% quantile of in-distribution scores: ~10% of fresh ones exceed it
    assert 0.03 <= familiar.novel.mean() <= 0.2
    own = detector.score(spots_model, generate("spots", 200, seed=3).images)
    foreign = detector.score(spots_model, generate("rings", 200, seed=3).images)
    assert auroc(own, foreign) > 0.9, name
    vote = detector.vote(spots_model, generate("rings", 50, seed=4).images)
    assert vote.novel.dtype == bool and vote.score.shape == (50,)


def test_mutual_information_measure_and_misuse(spots_model: VisionModel) -> None:
    detector = McDropoutDetector(measure="mutual_information", samples=10)
    images = generate("spots", 40, seed=5).images
    with pytest.raises(DataError, match="before fit"):
        detector.vote(spots_model, images)
    detector.fit(spots_model, images)
    assert np.all(detector.score(spots_model, images) >= -1e-6)
    with pytest.raises(ConfigError):
        McDropoutDetector(measure="variance")
    with pytest.raises(ConfigError):
        build_detector("odin")
    with pytest.raises(ConfigError):
        build_detector("energy", tpr=1.0)


class _Scaled(KnnDetector):
    """kNN distances in other units: a combination must not care."""

    name = "knn_scaled"

    def _fit_reference(self, model: VisionModel, in_dist_images: np.ndarray) -> np.ndarray:
        return 1000.0 * super()._fit_reference(model, in_dist_images) + 7.0

    def score(self, model: VisionModel, images: np.ndarray) -> np.ndarray:
        return 1000.0 * super().score(model, images) + 7.0


def test_combined_detector_standardizes_its_parts(spots_model: VisionModel) -> None:
    calibration = generate("spots", 300, seed=2).images
    probe = generate("rings", 60, seed=4).images
    plain = CombinedDetector([KnnDetector(), build_detector("energy")])
    scaled = CombinedDetector([_Scaled(), build_detector("energy")])
    for detector in (plain, scaled):
        detector.fit(spots_model, calibration)
    assert np.allclose(plain.score(spots_model, probe), scaled.score(spots_model, probe), atol=1e-4)
    assert plain.threshold == pytest.approx(scaled.threshold, abs=1e-4)
    default = build_detector(COMBINED)
    assert isinstance(default, CombinedDetector) and default.name == "+".join(COMBINED_PARTS)
    assert build_detector("knn+energy").name == "knn+energy"
    with pytest.raises(ConfigError):
        build_detector("knn+odin")
    with pytest.raises(ConfigError, match="two parts"):
        CombinedDetector([KnnDetector()])


@pytest.mark.parametrize("name", ["knn", COMBINED])
def test_knn_compares_with_training_images_and_stays_calibrated(
    spots_model: VisionModel, name: str
) -> None:
    training = generate("spots", 600, seed=7).images
    calibration = generate("spots", 300, seed=2).images
    detector = build_detector(name, tpr=0.9)
    detector.fit(spots_model, calibration, training)
    parts = detector.parts if isinstance(detector, CombinedDetector) else [detector]
    knn = next(p for p in parts if isinstance(p, KnnDetector))
    assert knn.reference is not None and len(knn.reference) == len(training)
    # held-out images are scored against the training images: still ~10% above the threshold
    familiar = detector.vote(spots_model, generate("spots", 400, seed=6).images)
    assert 0.03 <= familiar.novel.mean() <= 0.2
    own = detector.score(spots_model, generate("spots", 200, seed=3).images)
    foreign = detector.score(spots_model, generate("rings", 200, seed=3).images)
    assert auroc(own, foreign) > 0.9
    detector.fit(spots_model, calibration)  # without training images: leave-one-out again
    assert knn.reference is not None and len(knn.reference) == len(calibration)
