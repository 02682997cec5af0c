"""A robot's learner inside the daemon: `RobotLearner` plus a content-ID index, checkpointed.

Rule: every method here blocks (torch, files) and is called only by the `LearnerTask`'s worker,
one step at a time. Received images wait in `incoming` and join the learner in content-ID order
when it next trains, so what it learns never depends on network arrival order. `save` writes
the whole state to HOME/learner.ckpt atomically (temporary file, fsync, rename; a SHA-256
trailer is checked on load), so a kill -9 loses at most the step in progress and never leaves
a torn checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from peerdata.config import ModelConfig, RoundConfig
from peerdata.errors import DataError
from peerdata.files import replace_file
from peerdata.ml.frames import ImageSpec
from peerdata.scenario import load_scenario
from peerdata.sharing import Feedback, LearnerConfig, RobotLearner
from peerdata.sharing.learner import UNLABELLED
from peerdata.sharing.model import learner_config_of_model

CHECKPOINT = "learner.ckpt"
_MAGIC = b"PDLEARN1"


def learner_config_for(cfg: RoundConfig, model: ModelConfig | None = None) -> LearnerConfig:
    """The learner `[model]` describes when it names a backbone; else the settings of
    `round.scenario`, with the config's size overrides."""
    if model is not None and model.backbone:
        return learner_config_of_model(model)
    config = LearnerConfig.of_scenario(load_scenario(cfg.scenario))
    vision = config.vision
    if cfg.vision_width:
        vision = replace(vision, width=cfg.vision_width)
    if cfg.vision_epochs:
        vision = replace(vision, epochs=cfg.vision_epochs)
    return replace(
        config,
        vision=vision,
        calibration_images=cfg.calibration_images or config.calibration_images,
    )


@dataclass(frozen=True)
class Observation:
    """One new local image: pixels for the learner (its ImageSpec), PNG/JPEG bytes for the store."""

    cid: bytes
    image: np.ndarray
    label: int | None
    domain: str | None


@dataclass(frozen=True)
class Selected:
    """A local image the ranker (or policy) picked for this round."""

    image_id: int
    cid: bytes
    label: int
    domain: str
    predicted_utility: float


@dataclass(frozen=True)
class LearnResult:
    """What one learn step did (losses are None when that part did not run)."""

    ranker_loss: float | None
    fine_tune_loss: float | None
    received_pending: int
    feedback_used: int


@dataclass(frozen=True)
class LearnerStats:
    """The learner's counters, for `status`."""

    bootstrapped: bool
    local_images: int
    received_images: int
    received_pending: int
    feedback_images: int
    ranker_fits: int
    fine_tunes: int
    train_s: float = field(default=0.0, compare=False)  # bootstrap + learn seconds, this run


class LearnerHost:
    """The daemon's RobotLearner and which content ID is which of its images."""

    def __init__(self, name: str, config: LearnerConfig, seed: int,
                 path: Path | None = None) -> None:
        self.config, self.path = config, path
        self.spec = config.vision.image_spec  # the pixels every image is decoded to
        self.learner = RobotLearner(name, config, seed)
        self.bootstrapped = False
        self.local_cids: list[bytes] = []  # index = the learner's image id
        self.index: dict[bytes, int] = {}
        self.calibration: set[bytes] = set()
        self.received: set[bytes] = set()  # every received cid, in the learner or incoming
        self.incoming: dict[bytes, tuple[np.ndarray, int]] = {}  # not yet given to the learner
        self.shared: dict[bytes, int] = {}  # shared (filtered) cid -> local image id
        self.fed_back: set[bytes] = set()
        self.received_pending = 0
        self.ranker_fits = 0
        self.train_s = 0.0

    # -- data ------------------------------------------------------------------------------

    def known(self, cid: bytes) -> bool:
        """Whether the learner already holds this image (local, calibration or received)."""
        return cid in self.index or cid in self.calibration or cid in self.received

    def bootstrap(self, observations: Sequence[Observation], seed: int | None, *,
                  pool: bool = False) -> None:
        """Train a fresh model on these images' labelled ones (the first images, labelled or
        not, calibrate the detector; unlabelled frames join the pool but never train).
        `pool`: the rest are also the pool the next round ranks."""
        started = time.perf_counter()
        obs = list(observations)
        if seed is not None:
            self.learner = RobotLearner(self.learner.name, self.config, seed)
        images, labels, domains = _arrays(obs, self.spec)
        self.learner.bootstrap(images, labels, domains, pool=pool)
        n_cal = self.config.calibration_images
        self.calibration = {o.cid for o in obs[:n_cal]}
        self.local_cids = [o.cid for o in obs[n_cal:]]
        self.index = {cid: i for i, cid in enumerate(self.local_cids)}
        self.bootstrapped = True
        self.train_s += time.perf_counter() - started

    def observe(self, observations: Sequence[Observation]) -> None:
        """Add new local images, labelled or not: they join the pool the next round ranks and
        shares from (only labelled ones ever train). A robot without a scenario feed (a camera
        fleet) bootstraps by itself once `calibration_images` + 10 images are in its pool; the
        ones past the calibration set stay in the pool."""
        obs = [o for o in observations if not self.known(o.cid)]
        if not obs:
            return
        self.learner.add_to_pool(*_arrays(obs, self.spec))
        for o in obs:
            self.index[o.cid] = len(self.local_cids)
            self.local_cids.append(o.cid)
        if not self.bootstrapped and len(self.local_cids) >= self.config.calibration_images + 10:
            lr = self.learner
            labels = [None if y == UNLABELLED else int(y) for y in lr.local_labels]
            pool = [Observation(cid, lr.local_images[i], labels[i],
                                str(lr.local_domains[i]) or None)
                    for i, cid in enumerate(self.local_cids)]
            self.bootstrap(pool, seed=lr.seed, pool=True)

    def predict(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Predicted label, its probability and the embedding of each image."""
        p = self.learner.model.predict(images)
        labels = p.labels
        return labels, p.probabilities[np.arange(len(labels)), labels], p.embedding

    def select(self, policy: str, budget: float,
               novel_domains: frozenset[str] | None) -> list[Selected]:
        """This round's candidates, best first, by `policy` (RobotLearner.select_for_sharing)."""
        picks = self.learner.select_for_sharing(policy, budget, novel_domains=novel_domains)
        self.learner.spend_pool()  # a round ranks only what was observed since the last
        return [Selected(c.image_id, self.local_cids[c.image_id], c.label,
                         str(self.learner.local_domains[c.image_id]), c.predicted_utility)
                for c in picks]

    def image(self, image_id: int) -> np.ndarray:
        return self.learner.local_images[image_id]

    def note_shared(self, shared_cid: bytes, image_id: int) -> None:
        """Remember which local image a shared (privacy-filtered) cid is."""
        self.shared[shared_cid] = image_id

    def vote(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(novel, score) per image; before any bootstrap everything is novel to this robot."""
        if not self.bootstrapped:
            return np.ones(len(images), bool), np.zeros(len(images))
        v = self.learner.vote(images)
        return np.asarray(v.novel, bool), np.asarray(v.score, np.float64)

    def accept(self, cids: Sequence[bytes], images: np.ndarray, labels: np.ndarray) -> None:
        """Keep labelled images peers shared, for the next fine-tune (each cid once)."""
        for i, cid in enumerate(cids):
            if cid not in self.received:
                self.received.add(cid)
                self.incoming[cid] = (images[i], int(labels[i]))
                self.received_pending += 1

    def _take_incoming(self) -> None:
        """Give the learner what arrived since it last trained, in content-ID order."""
        if not self.incoming:
            return
        order = sorted(self.incoming)
        self.learner.accept(np.stack([self.incoming[c][0] for c in order]),
                            np.array([self.incoming[c][1] for c in order], np.int64))
        self.incoming.clear()

    # -- learning --------------------------------------------------------------------------

    def learn(self, feedback: Sequence[tuple[bytes, float]], train_ranker: bool) -> LearnResult:
        """Retrain the ranker on all feedback so far (new `feedback` added), then fine-tune."""
        started = time.perf_counter()
        utility = dict(feedback)
        # in the order the images were selected, as in-process: the ranker's fit sees its
        # examples in the order given
        fresh = [(cid, utility[cid]) for cid in self.shared
                 if cid in utility and cid not in self.fed_back]
        name = self.learner.name
        items = [Feedback(name, self.shared[cid], float(u), ()) for cid, u in fresh]
        ranker_loss = None
        if train_ranker:
            ranker_loss = self.learner.learn_from_feedback(items)
            self.fed_back.update(cid for cid, _ in fresh)
            if ranker_loss is not None:
                self.ranker_fits += 1
        pending = self.received_pending
        fine_tune_loss = None
        if self.bootstrapped:
            self._take_incoming()
            # what was observed since the last round is still to be ranked
            fine_tune_loss = float(self.learner.fine_tune(keep_pool=True))
            self.received_pending = 0
        self.train_s += time.perf_counter() - started
        return LearnResult(None if ranker_loss is None else float(ranker_loss), fine_tune_loss,
                           pending, len(fresh) if train_ranker else 0)

    def model_state(self) -> dict[str, torch.Tensor]:
        """A copy of the vision model's weights (what federation exchanges)."""
        return self.learner.weights()

    def train_federated(self, epochs: int, seed: int) -> tuple[dict[str, torch.Tensor], int]:
        """Fine-tune the vision model for `epochs` on every labelled image this robot holds
        (local and received); return its weights and how many images that was."""
        lr, vision = self.learner, self.config.vision
        self._take_incoming()
        images = np.concatenate([lr.local_images, lr.received_images])
        labels = np.concatenate([lr.local_labels, lr.received_labels])
        if self.bootstrapped and len(labels):
            lr.model.train(images, labels, epochs=epochs, seed=seed,
                           samples_per_epoch=vision.fine_tune_samples,
                           learning_rate=vision.fine_tune_learning_rate)
        return self.model_state(), len(labels)

    def load_model_state(self, state: Mapping[str, torch.Tensor]) -> None:
        """Replace the vision model's weights (a federated round's model); recalibrate the
        OoD detector on them.

        Raises:
            DataError: `state` does not fit this model's architecture.
        """
        self.learner.load_weights(state)

    def evaluate(self, images: np.ndarray, labels: np.ndarray, domains: np.ndarray
                 ) -> dict[str, float]:
        """Accuracy per domain and over all images."""
        return self.learner.accuracies(images, labels, domains)

    def statistics(self) -> LearnerStats:
        lr = self.learner
        return LearnerStats(self.bootstrapped, len(self.local_cids), len(self.received),
                            self.received_pending, len(lr.feedback_ids), self.ranker_fits,
                            lr.fine_tunes, round(self.train_s, 6))

    # -- checkpoints -----------------------------------------------------------------------

    def save(self) -> None:
        """Write the whole state to `path` atomically (no-op without a path)."""
        if self.path is None:
            return
        meta = {
            "bootstrapped": self.bootstrapped, "local": [c.hex() for c in self.local_cids],
            "calibration": sorted(c.hex() for c in self.calibration),
            # incoming images are not in the learner's checkpoint: left out here, the restart's
            # reconciliation gives them again from the store
            "received": sorted(c.hex() for c in self.received - self.incoming.keys()),
            "shared": {c.hex(): i for c, i in self.shared.items()},
            "fed_back": sorted(c.hex() for c in self.fed_back),
            "received_pending": self.received_pending - len(self.incoming),
            "ranker_fits": self.ranker_fits,
        }
        header = json.dumps(meta).encode()
        body = _MAGIC + len(header).to_bytes(8, "big") + header + self.learner.checkpoint()
        replace_file(self.path, body + hashlib.sha256(body).digest())

    @classmethod
    def load(cls, name: str, config: LearnerConfig, seed: int, path: Path) -> LearnerHost:
        """The state `save` wrote to `path`, or a fresh learner if there is no file.

        Raises:
            DataError: the file exists but is corrupt (never silently replaced).
        """
        host = cls(name, config, seed, path)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return host
        body, digest = data[:-32], data[-32:]
        if not body.startswith(_MAGIC) or hashlib.sha256(body).digest() != digest:
            raise DataError(f"{path}: corrupt learner checkpoint (move it away to start afresh)")
        n = int.from_bytes(body[len(_MAGIC):len(_MAGIC) + 8], "big")
        start = len(_MAGIC) + 8
        meta = json.loads(body[start:start + n])
        host.learner = RobotLearner.restore(body[start + n:], config)
        host.bootstrapped = bool(meta["bootstrapped"])
        host.local_cids = [bytes.fromhex(c) for c in meta["local"]]
        host.index = {c: i for i, c in enumerate(host.local_cids)}
        host.calibration = {bytes.fromhex(c) for c in meta["calibration"]}
        host.received = {bytes.fromhex(c) for c in meta["received"]}
        host.shared = {bytes.fromhex(c): int(i) for c, i in meta["shared"].items()}
        host.fed_back = {bytes.fromhex(c) for c in meta["fed_back"]}
        host.received_pending = int(meta["received_pending"])
        host.ranker_fits = int(meta["ranker_fits"])
        return host


def _arrays(obs: Sequence[Observation], spec: ImageSpec
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    images = np.stack([o.image for o in obs]) if obs else spec.empty()
    labels = np.array([UNLABELLED if o.label is None else o.label for o in obs], np.int64)
    domains = np.array([o.domain or "" for o in obs], dtype=object)
    return images, labels, domains
