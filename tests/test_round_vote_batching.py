"""A robot's OoD verdict on an image never depends on the images it is voted with.

The daemon votes on images in the groups they arrive in (whatever the network batched), the
simulator in the groups its seeded delivery order makes: the two agree only if each image's
verdict and score are a function of that image alone. MC-dropout used to draw one set of masks
per call, so an image's score moved with its batch.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from peerdata.datasets.synthetic import generate
from peerdata.ml.ood import DETECTORS, build_detector
from peerdata.ml.vision import VisionConfig, VisionModel

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def model() -> VisionModel:
    data = generate("spots", 600, seed=0)
    m = VisionModel(VisionConfig(num_classes=10, width=8, embedding_dim=16), seed=0)
    m.train(data.images, data.labels, epochs=3, seed=0)
    return m


@pytest.mark.parametrize("name", [d for d in DETECTORS if not d.startswith("backbone")])
def test_verdict_and_score_do_not_depend_on_batching(model: VisionModel, name: str) -> None:
    detector = build_detector(name, tpr=0.8, seed=7)
    detector.fit(model, generate("spots", 120, seed=2).images)
    # familiar and foreign images together, so that verdicts of both kinds are at stake
    images = np.concatenate([generate("spots", 24, seed=3).images,
                             generate("rings", 24, seed=3).images])
    whole = detector.vote(model, images)
    assert 0 < whole.novel.sum() < len(images)  # the verdicts are not all alike
    order = np.random.default_rng(1).permutation(len(images))
    shuffled = detector.vote(model, images[order])
    halves = [detector.vote(model, images[:17]), detector.vote(model, images[17:])]
    alone = [detector.vote(model, images[i:i + 1]) for i in range(len(images))]
    unshuffled = np.empty_like(whole.score)
    unshuffled[order] = shuffled.score
    assert np.array_equal(unshuffled, whole.score)
    assert np.array_equal(np.concatenate([h.score for h in halves]), whole.score)
    assert np.array_equal(np.concatenate([a.score for a in alone]), whole.score)
    assert np.array_equal(np.concatenate([a.novel for a in alone]), whole.novel)
    # and the same image twice in one batch gets the same score both times
    twice = detector.vote(model, images[[5, 30, 5]])
    assert twice.score[0] == twice.score[2] == whole.score[5]
