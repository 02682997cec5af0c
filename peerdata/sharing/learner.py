"""One robot's learning state and the pure steps it performs in a sharing round.

Rule: a `RobotLearner` only changes its own state. It never calls another robot; whatever moves
images between robots (in-process here, libp2p in the daemon) is a `Delivery` that calls `vote`
and `accept` on the receiving side and hands `Feedback` back to `learn_from_feedback`.

Round, seen from one robot: `observe` new local images -> `select_for_sharing` (rank and cache the
top budget) -> [delivery: peers `vote` and `accept`] -> `learn_from_feedback` -> `fine_tune`.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from peerdata.errors import ConfigError, DataError
from peerdata.ml.ood import DEFAULT_TPR, OodVote, build_detector
from peerdata.ml.ranker import (
    GlobalUtilityRanker,
    RankerConfig,
    feature_dim,
    ranker_features,
    select_covering,
)
from peerdata.ml.vision import VisionConfig, VisionModel
from peerdata.sharing.feedback import Feedback

if TYPE_CHECKING:
    from peerdata.scenario import Scenario

POLICIES: tuple[str, ...] = ("gu", "random", "oracle", "all", "none")
UNLABELLED = -1  # the label of a local image nobody labelled: ranked and shared, never trained on
_ARRAYS = (
    "local_images",
    "local_labels",
    "calibration_images",
    "received_images",
    "received_labels",
    "pending",
    "feedback_ids",
    "feedback_utilities",
)


@dataclass(frozen=True)
class LearnerConfig:
    """Everything a robot's learning needs; one object, shared by the simulation and the daemon."""

    vision: VisionConfig = field(default_factory=VisionConfig)
    ranker: RankerConfig = field(default_factory=RankerConfig)
    detector: str = "combined"
    ood_tpr: float = DEFAULT_TPR
    calibration_images: int = 300
    # gu only: once the ranker is trained, do not send images whose predicted utility is below
    # this, even if the budget allows (0 = always fill the budget, as the paper does).
    min_utility: float = 0.0
    # gu only: choose the budget to cover the embedding space of the wanted images (greedy
    # facility location), not just the top predicted utilities, which can all be alike.
    diverse: bool = True
    # gu, diverse, trained ranker: the covering choice keeps at least this share of the summed
    # predicted utility of the top budget (coverage decides only among near-equally wanted).
    cover_keep: float = 0.99
    # gu, diverse, trained ranker: when more images than the budget reach this predicted utility
    # (on the ranker's scale, the share of peers expected to want an image), coverage alone
    # chooses among those, so the budget spreads over everything wanted rather than the most
    # foreign-looking few (0 = off; see `select_covering`). 0.8 ("nearly all peers") kept rare
    # precision on paper-3 (r2 96%); 0.5 spread more but let in unwanted images (r2 92%).
    spread_above: float = 0.8
    # own training images (a seeded sample) the kNN vote compares with; 0 = calibration images
    detector_reference: int = 2000

    @classmethod
    def of_scenario(cls, scenario: Scenario) -> LearnerConfig:
        """The learner settings a scenario implies (the one mapping, for every runner)."""
        return cls(
            vision=scenario.vision,
            ranker=scenario.ranker,
            detector=scenario.detector,
            ood_tpr=scenario.ood_tpr,
            calibration_images=scenario.calibration_images,
            min_utility=scenario.min_utility,
        )


@dataclass(frozen=True)
class ShareCandidate:
    """An image a robot offers its peers: labelled, with the ranker's predicted utility."""

    sender: str
    image_id: int
    image: np.ndarray  # uint8, the model's image spec (28 x 28 gray, 224 x 224 x 3 RGB, ...)
    label: int  # unified label space; UNLABELLED (-1) for a frame without a label
    predicted_utility: float


def budget_count(budget: float, available: int) -> int:
    """How many of `available` new images a budget fraction allows (rounded down)."""
    if not 0.0 < budget <= 1.0:
        raise ConfigError(f"budget must lie in (0, 1], got {budget}")
    return min(available, int(budget * available + 1e-9))


class RobotLearner:
    """A robot's vision model, OoD detector, GU ranker, local and received training data."""

    def __init__(self, name: str, config: LearnerConfig, seed: int) -> None:
        self.name, self.config, self.seed = name, config, seed
        self.model = VisionModel(config.vision, seed)
        self.ranker = GlobalUtilityRanker(
            feature_dim(config.vision.embedding_dim, config.vision.num_classes,
                        self.model.descriptor_dim),
            config.ranker,
            seed,
        )
        self.detector = build_detector(config.detector, config.ood_tpr, seed)
        empty = config.vision.image_spec.empty()
        self.local_images, self.local_labels = empty, np.zeros(0, np.int64)
        self.local_domains = np.zeros(0, dtype=object)
        self.calibration_images = empty
        self.received_images, self.received_labels = empty, np.zeros(0, np.int64)
        self.pending = np.zeros(0, np.int64)  # ids of this round's new local images
        self.feedback_ids = np.zeros(0, np.int64)
        self.feedback_utilities = np.zeros(0, np.float64)
        self.fine_tunes = 0

    # -- local data -----------------------------------------------------------------------

    def bootstrap(self, images: np.ndarray, labels: np.ndarray, domains: np.ndarray, *,
                  pool: bool = False) -> None:
        """Train from scratch on the first local images; hold some out to calibrate the detector.

        `pool`: the images past the calibration set also form the pool the next selection
        ranks (a robot that bootstraps on the first images it observed).
        """
        n_cal = self.config.calibration_images
        if len(images) < n_cal + 10:
            raise DataError(f"{self.name}: bootstrap needs more than {n_cal + 10} images")
        self.calibration_images = images[:n_cal].copy()
        added = self._add_local(images[n_cal:], labels[n_cal:], domains[n_cal:])
        self.pending = added if pool else np.zeros(0, np.int64)
        labelled = self.local_labels != UNLABELLED
        self.model.train(
            self.local_images[labelled], self.local_labels[labelled],
            epochs=self.config.vision.epochs, seed=self.seed,
        )
        self.fit_detector()

    def detector_reference(self) -> np.ndarray | None:
        """The own training images the OoD vote compares with (a seeded sample), if any."""
        n = self.config.detector_reference
        if n <= 0 or not len(self.local_images):
            return None
        rng = np.random.default_rng([self.seed, len(self.local_images), 2])
        return self.local_images[rng.permutation(len(self.local_images))[:n]]

    def fit_detector(self) -> None:
        """Recalibrate the OoD vote for the current model (after every training)."""
        self.detector.fit(self.model, self.calibration_images, self.detector_reference(),
                          self.received_images)

    def _add_local(self, images: np.ndarray, labels: np.ndarray, domains: np.ndarray) -> np.ndarray:
        if not (len(images) == len(labels) == len(domains)):
            raise DataError(f"{self.name}: images, labels and domains differ in length")
        start = len(self.local_labels)
        self.local_images = np.concatenate([self.local_images, images])
        self.local_labels = np.concatenate([self.local_labels, labels.astype(np.int64)])
        self.local_domains = np.concatenate([self.local_domains, np.asarray(domains, object)])
        return np.arange(start, start + len(images))

    def observe(self, images: np.ndarray, labels: np.ndarray, domains: np.ndarray) -> None:
        """Take in this round's new local images; they become the pool to share from."""
        self.pending = self._add_local(images, labels, domains)

    # -- sharing ---------------------------------------------------------------------------

    def features(self, ids: np.ndarray) -> np.ndarray:
        """Ranker features of local images, from the current vision model."""
        return ranker_features(self.model.predict(self.local_images[ids]))

    def select_for_sharing(
        self,
        policy: str,
        budget: float,
        *,
        novel_domains: frozenset[str] | None = None,
    ) -> list[ShareCandidate]:
        """Rank this round's new images and cache the top `budget` fraction to share.

        Args:
            policy: `gu` (learned ranker), `random`, `oracle` (ground truth: only images whose
                domain is in `novel_domains`), `all` (everything) or `none`.
            budget: fraction of the new images that may be shared, in (0, 1].
            novel_domains: the oracle's ground truth; required for `oracle` only.
        """
        ids = self.pending
        limit = budget_count(budget, len(ids))
        rng = np.random.default_rng([self.seed, len(self.local_labels), 1])
        prediction = self.model.predict(self.local_images[ids])
        predicted = self.ranker.predict(ranker_features(prediction)) if len(ids) else np.zeros(0)
        if policy == "gu":
            floor = self.config.min_utility if self.ranker.trained else 0.0
            if self.config.diverse:
                trained = self.ranker.trained
                order = select_covering(
                    predicted, prediction.embedding, limit, floor,
                    keep=self.config.cover_keep if trained else 0.0,
                    spread_above=self.config.spread_above if trained else 0.0,
                )
            else:
                order = np.argsort(-predicted, kind="stable")[:limit]
                order = order[predicted[order] >= floor]
        elif policy == "random":
            order = rng.permutation(len(ids))[:limit]
        elif policy == "oracle":
            if novel_domains is None:
                raise ConfigError("the oracle policy needs the ground-truth novel domains")
            novel = np.flatnonzero([d in novel_domains for d in self.local_domains[ids]])
            order = rng.permutation(novel)[:limit]
        elif policy == "all":
            order = np.arange(len(ids))
        elif policy == "none":
            order = np.zeros(0, np.int64)
        else:
            raise ConfigError(f"unknown sharing policy {policy!r}; known: {', '.join(POLICIES)}")
        return [
            ShareCandidate(
                self.name,
                int(ids[i]),
                self.local_images[ids[i]],
                int(self.local_labels[ids[i]]),
                float(predicted[i]),
            )
            for i in order
        ]

    def accuracies(self, images: np.ndarray, labels: np.ndarray, domains: np.ndarray
                   ) -> dict[str, float]:
        """Accuracy on each domain's images (predicted domain by domain) and on all (`all`)."""
        out: dict[str, float] = {}
        correct = 0
        for d in dict.fromkeys(domains.tolist()):
            mask = domains == d
            hits = int((self.model.predict(images[mask]).labels == labels[mask]).sum())
            out[str(d)] = hits / int(mask.sum())
            correct += hits
        out["all"] = correct / len(labels) if len(labels) else float("nan")
        return out

    def vote(self, images: np.ndarray) -> OodVote:
        """Would these images be novel to me? (My OoD detector's verdict.)"""
        return self.detector.vote(self.model, images)

    def accept(self, images: np.ndarray, labels: np.ndarray) -> None:
        """Keep labelled images a peer shared; they join the next fine-tune."""
        if len(images) != len(labels):
            raise DataError(f"{self.name}: {len(images)} received images, {len(labels)} labels")
        self.received_images = np.concatenate([self.received_images, images])
        self.received_labels = np.concatenate([self.received_labels, labels.astype(np.int64)])

    def learn_from_feedback(self, feedback: Sequence[Feedback]) -> float | None:
        """Add peers' utilities for my shared images and retrain the GU ranker on all so far.

        Features are recomputed for every fed-back image with the current vision model, so the
        ranker stays consistent with the embeddings it will rank next. Returns the fit loss, or
        None when there has never been any feedback.
        """
        mine = [f for f in feedback if f.sender == self.name]
        if len(mine) != len(feedback):
            raise DataError(f"{self.name}: got feedback meant for another robot")
        if mine:
            self.feedback_ids = np.concatenate(
                [self.feedback_ids, np.array([f.image_id for f in mine], np.int64)]
            )
            self.feedback_utilities = np.concatenate(
                [self.feedback_utilities, np.array([f.utility for f in mine], np.float64)]
            )
        if not len(self.feedback_ids):
            return None
        return self.ranker.fit(self.features(self.feedback_ids), self.feedback_utilities)

    def fine_tune(self, *, keep_pool: bool = False) -> float:
        """Fine-tune the vision model on local plus received images; recalibrate the detector.

        The pool of new images is spent, unless `keep_pool` (a driver that observes between a
        selection and the fine-tune: what it observed is still to be ranked).
        """
        labelled = self.local_labels != UNLABELLED
        images = np.concatenate([self.local_images[labelled], self.received_images])
        labels = np.concatenate([self.local_labels[labelled], self.received_labels])
        self.fine_tunes += 1
        loss = self.model.train(
            images,
            labels,
            epochs=self.config.vision.fine_tune_epochs,
            seed=self.seed + 1000 * self.fine_tunes,
            samples_per_epoch=self.config.vision.fine_tune_samples,
            learning_rate=self.config.vision.fine_tune_learning_rate,
        )
        self.fit_detector()
        if not keep_pool:
            self.pending = np.zeros(0, np.int64)
        return loss

    # -- for a driver that observes and ranks at its own pace (the daemon) ----------------

    def add_to_pool(self, images: np.ndarray, labels: np.ndarray, domains: np.ndarray) -> None:
        """Add new local images to the pool the next selection ranks, after those already
        waiting in it (`observe` starts a new pool instead)."""
        self.pending = np.concatenate([self.pending, self._add_local(images, labels, domains)])

    def spend_pool(self) -> None:
        """Empty the pool: its images were ranked (they stay local training data)."""
        self.pending = np.zeros(0, np.int64)

    def weights(self) -> dict[str, torch.Tensor]:
        """A copy of the vision model's weights (what federation exchanges)."""
        return {k: v.detach().clone() for k, v in self.model.net.state_dict().items()}

    def load_weights(self, state: Mapping[str, torch.Tensor]) -> None:
        """Replace the vision model's weights; recalibrate the OoD detector on them.

        Raises:
            DataError: `state` does not fit this model's architecture.
        """
        try:
            self.model.net.load_state_dict(dict(state))
        except (RuntimeError, KeyError) as exc:
            raise DataError(f"federated model does not fit the vision model: {exc}") from None
        self.model.net.eval()
        if len(self.calibration_images):
            self.fit_detector()

    # -- checkpoints -----------------------------------------------------------------------

    def checkpoint(self) -> bytes:
        """All learning state as bytes (models, data, feedback), for `restore`."""
        buffer = io.BytesIO()
        state: dict[str, object] = {
            key: torch.from_numpy(np.ascontiguousarray(getattr(self, key))) for key in _ARRAYS
        }
        state.update(
            name=self.name,
            seed=self.seed,
            fine_tunes=self.fine_tunes,
            model=self.model.state_bytes(),
            ranker=self.ranker.state_bytes(),
            local_domains=[str(d) for d in self.local_domains],
        )
        torch.save(state, buffer)
        return buffer.getvalue()

    @classmethod
    def restore(cls, data: bytes, config: LearnerConfig) -> RobotLearner:
        """A learner equal to the one `checkpoint` saved (the detector is recalibrated)."""
        try:
            # weights_only: a checkpoint holds tensors, strings and numbers, never pickled code
            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
            learner = cls(state["name"], config, state["seed"])
            learner.model.load_state_bytes(state["model"])
            try:
                learner.ranker.load_state_bytes(state["ranker"])
                ranker_stale = False
            except DataError:  # e.g. saved before the ranker's input features changed
                ranker_stale = True
            for key in _ARRAYS:
                setattr(learner, key, state[key].numpy().copy())
            learner.local_domains = np.asarray(state["local_domains"], dtype=object)
            learner.fine_tunes = state["fine_tunes"]
        except (
            KeyError,
            TypeError,
            AttributeError,
            ValueError,
            RuntimeError,
            EOFError,
            pickle.UnpicklingError,
        ) as exc:
            raise DataError(f"not a robot learner checkpoint: {exc}") from None
        if len(learner.calibration_images):
            learner.fit_detector()
        if ranker_stale:  # the ranker is derived state: rebuilt from the stored feedback
            learner.learn_from_feedback([])
        return learner
