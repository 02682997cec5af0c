"""The daemon's learner settings from its own `[model]` config section (no scenario needed).

Rule: one mapping, `learner_config_of_model`; everything not named in `[model]` keeps the
defaults of `LearnerConfig` (ranker, OoD true-positive rate, class-balanced training).
"""

from __future__ import annotations

from peerdata.config import ModelConfig
from peerdata.errors import ConfigError
from peerdata.ml.vision import VisionConfig
from peerdata.sharing.learner import LearnerConfig

UNLABELLED_CLASSES = 2  # the head of a robot without labels still needs a shape; it never trains


def learner_config_of_model(model: ModelConfig) -> LearnerConfig:
    """The learner a `[model]` section describes.

    Raises:
        ConfigError: `model.backbone` is empty (the model then comes from `round.scenario`).
    """
    if not model.backbone:
        raise ConfigError("[model] names no backbone")
    pretrained = model.backbone != "small-cnn"
    vision = VisionConfig(
        backbone=model.backbone,
        input_side=model.input_size,
        fine_tune_last_block=model.fine_tune_last_block,
        num_classes=max(UNLABELLED_CLASSES, len(model.label_names)),
        embedding_dim=model.head_size,
        epochs=model.epochs,
        fine_tune_epochs=model.fine_tune_epochs,
    )
    detector = model.detector or ("backbone_knn" if pretrained else "mc_dropout")
    return LearnerConfig(vision=vision, detector=detector,
                         calibration_images=model.calibration_images)
