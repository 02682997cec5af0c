"""The daemon's `[model]` section: validated with clear errors, mapped to one learner config;
unlabelled frames are pooled and shared but never trained on."""

from __future__ import annotations

import numpy as np
import pytest

from peerdata.config import ModelConfig, RoundConfig, config_from_dict
from peerdata.datasets.synthetic import generate
from peerdata.errors import ConfigError
from peerdata.ml.vision import VisionConfig
from peerdata.node.learning import learner_config_for
from peerdata.sharing import LearnerConfig, RobotLearner
from peerdata.sharing.learner import UNLABELLED


@pytest.mark.parametrize(("model", "message"), [
    ({"backbone": "resnet50"}, "model.backbone 'resnet50' is unknown"),
    ({"labels": "some"}, 'model.labels must be a list of class names or "unlabelled"'),
    ({"labels": ["dog"]}, "at least two classes"),
    ({"labels": ["dog", "dog"]}, "distinct"),
    ({"labels": [1, 2]}, "model.labels must be a list"),
    ({"input_size": 8}, "model.input_size must be 0"),
    ({"backbone": "small-cnn", "input_size": 64}, "small-cnn takes 28 x 28 only"),
    ({"head_size": 0}, "model.head_size"),
    ({"detector": "vibes"}, "model.detector 'vibes' is unknown"),
    ({"input_size": "big"}, "model.input_size must be a number"),
    ({"colour": True}, "unknown setting(s) in [model]: colour"),
])
def test_bad_model_settings_are_refused_by_name(model: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_dict({"model": model})
    assert message in str(info.value)


def test_model_section_replaces_the_scenario() -> None:
    cfg = config_from_dict({"model": {"backbone": "efficientnet-lite0",
                                      "labels": ["dog", "cat", "owl"], "input_size": 160,
                                      "head_size": 64}})
    learner = learner_config_for(RoundConfig(scenario="no-such-scenario"), cfg.model)
    assert learner.vision.backbone == "efficientnet-lite0"
    assert learner.vision.image_spec.side == 160 and learner.vision.num_classes == 3
    assert learner.vision.embedding_dim == 64 and learner.detector == "backbone_knn"
    small = learner_config_for(RoundConfig(), ModelConfig(backbone="small-cnn"))
    assert small.vision.image_spec.side == 28 and small.detector == "mc_dropout"
    assert small.vision.num_classes == 2  # unlabelled: a head shape that never trains
    # no backbone: the scenario's model, as before
    assert learner_config_for(RoundConfig(scenario="synthetic-3"), ModelConfig()).vision.width == 8


def test_unlabelled_images_are_pooled_and_shared_but_never_trained() -> None:
    config = LearnerConfig(vision=VisionConfig(num_classes=10, width=4, embedding_dim=8,
                                               epochs=2, fine_tune_epochs=1),
                           detector="energy", calibration_images=20)
    data = generate("bars", 120, seed=0)
    labels = data.labels.copy()
    labels[60:] = UNLABELLED
    learner = RobotLearner("r", config, seed=0)
    learner.bootstrap(data.images, labels, np.full(120, "bars", dtype=object))
    assert len(learner.local_labels) == 100 and (learner.local_labels == UNLABELLED).sum() == 60
    extra = generate("bars", 40, seed=1)
    learner.observe(extra.images, np.full(40, UNLABELLED), np.full(40, "bars", dtype=object))
    picks = learner.select_for_sharing("all", 1.0)
    assert len(picks) == 40 and {p.label for p in picks} == {UNLABELLED}
    learner.fine_tune()  # would raise on a -1 label if unlabelled images reached training
    # the same robot with those images simply absent trains to the same weights
    twin = RobotLearner("r", config, seed=0)
    keep = labels != UNLABELLED
    keep[:20] = True  # the calibration images are the first 20 either way
    twin.bootstrap(data.images[keep], labels[keep], np.full(keep.sum(), "bars", dtype=object))
    fresh = RobotLearner("r", config, seed=0)
    fresh.bootstrap(data.images, labels, np.full(120, "bars", dtype=object))
    assert fresh.model.state_bytes() == twin.model.state_bytes()
