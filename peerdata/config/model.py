"""The [model] section: the daemon's own vision model."""

from __future__ import annotations

from dataclasses import dataclass

from peerdata.errors import ConfigError

# = peerdata.ml.backbones.BACKBONES and peerdata.ml.ood.DETECTORS (a test checks it); named here
# so that validating a config does not import torch.
BACKBONE_NAMES: tuple[str, ...] = ("small-cnn", "efficientnet-lite0")
DETECTOR_NAMES: tuple[str, ...] = (
    "mc_dropout", "energy", "knn", "mahalanobis", "backbone_knn", "backbone_mahalanobis",
    "combined",
)


@dataclass(frozen=True)
class ModelConfig:
    """The daemon's own model ([model]); without `backbone` the model comes from
    `round.scenario` as before.

    `labels` names the classes a sidecar's `label` indexes (label k = labels[k]); "unlabelled"
    (or none) means frames carry no labels: they are still ranked, filtered, shared and voted
    on, and only labelled ones (a sidecar with a label) train the head.
    """

    backbone: str = ""  # small-cnn | efficientnet-lite0; "" = round.scenario's model
    labels: tuple[str, ...] | str = "unlabelled"
    input_size: int = 0  # square input side in pixels; 0 = the backbone's default
    head_size: int = 128  # width of the trainable head (the embedding the ranker sees)
    fine_tune_last_block: bool = False
    detector: str = ""  # OoD detector; "" = backbone_knn for a pretrained backbone, else mc_dropout
    calibration_images: int = 100  # first frames kept to calibrate the OoD detector
    epochs: int = 30
    fine_tune_epochs: int = 5

    @property
    def label_names(self) -> tuple[str, ...]:
        """The class names, () when unlabelled."""
        return () if isinstance(self.labels, str) else self.labels

    def __post_init__(self) -> None:
        def bad(msg: str) -> ConfigError:
            return ConfigError(f"model.{msg}")

        if self.backbone and self.backbone not in BACKBONE_NAMES:
            raise bad(f"backbone {self.backbone!r} is unknown; known: "
                      f"{', '.join(BACKBONE_NAMES)}")
        if isinstance(self.labels, str) and self.labels != "unlabelled":
            raise bad('labels must be a list of class names or "unlabelled"')
        names = self.label_names
        if len(set(names)) != len(names) or any(not n for n in names):
            raise bad("labels must be distinct, non-empty names")
        if len(names) == 1:
            raise bad("labels needs at least two classes (or \"unlabelled\")")
        if self.input_size and not 32 <= self.input_size <= 1024:
            raise bad(f"input_size must be 0 (the backbone's) or in 32..1024, got "
                      f"{self.input_size}")
        if self.input_size and self.backbone == "small-cnn":
            raise bad("input_size: small-cnn takes 28 x 28 only; leave input_size = 0")
        if not 1 <= self.head_size <= 4096:
            raise bad(f"head_size must be in 1..4096, got {self.head_size}")
        if self.detector and self.detector not in DETECTOR_NAMES:
            raise bad(f"detector {self.detector!r} is unknown; known: {', '.join(DETECTOR_NAMES)}")
        if self.calibration_images < 10:
            raise bad("calibration_images must be >= 10")
        if self.epochs < 1 or self.fine_tune_epochs < 1:
            raise bad("epochs and fine_tune_epochs must be >= 1")
