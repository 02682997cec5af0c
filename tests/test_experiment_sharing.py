"""Learners in a round: policies under budget, feedback, checkpoints, the in-process fleet
(the round core's simulator) delivering, voting and keeping images in canonical order."""

from __future__ import annotations

import io
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
import torch

from peerdata.datasets.synthetic import generate
from peerdata.errors import ConfigError, DataError
from peerdata.ml.ood import CombinedDetector, KnnDetector
from peerdata.ml.ranker import GlobalUtilityRanker, RankerConfig
from peerdata.ml.vision import VisionConfig
from peerdata.sharing import (
    Batch,
    Feedback,
    InProcessFleet,
    LearnerConfig,
    RobotLearner,
    budget_count,
    image_cid,
)

torch.set_num_threads(1)
CONFIG = LearnerConfig(
    vision=VisionConfig(num_classes=20, width=4, embedding_dim=16, epochs=3, fine_tune_epochs=1),
    ranker=RankerConfig(epochs=50),
    calibration_images=30,
)


def _batch(families: dict[str, int], seed: int) -> Batch:
    """Images of several synthetic families; family i gets labels 10*i.."""
    parts = []
    for i, (family, count) in enumerate(families.items()):
        data = generate(family, count, seed)
        parts.append((data.images, data.labels + 10 * i, np.full(count, family, dtype=object)))
    rng = np.random.default_rng(seed)
    images, labels, domains = (np.concatenate(p) for p in zip(*parts, strict=True))
    order = rng.permutation(len(labels))
    return Batch(images[order], labels[order], domains[order])


def _learners() -> dict[str, RobotLearner]:
    # A sees bars only; B sees bars and rare rings (labels 10..19)
    learners = {}
    for i, (name, mix) in enumerate((("A", {"bars": 150}), ("B", {"bars": 120, "rings": 30}))):
        learner = RobotLearner(name, CONFIG, seed=i)
        b = _batch(mix, seed=10 + i)
        learner.bootstrap(b.images, b.labels, b.domains)
        learners[name] = learner
    return learners


def test_budget() -> None:
    assert budget_count(0.1, 500) == 50 and budget_count(1.0, 7) == 7 and budget_count(0.1, 9) == 0
    for bad in (0.0, 1.01, -0.5):
        with pytest.raises(ConfigError, match="budget"):
            budget_count(bad, 10)


@pytest.fixture(scope="module")
def bootstrapped() -> dict[str, bytes]:
    return {name: lr.checkpoint() for name, lr in _learners().items()}


def _restore(checkpoints: dict[str, bytes]) -> dict[str, RobotLearner]:
    return {name: RobotLearner.restore(cp, CONFIG) for name, cp in checkpoints.items()}


@pytest.mark.parametrize("policy", ["gu", "random", "oracle", "all", "none"])
def test_policies_respect_budget(bootstrapped: dict[str, bytes], policy: str) -> None:
    b = _restore(bootstrapped)["B"]
    batch = _batch({"bars": 80, "rings": 20}, seed=20)
    b.observe(batch.images, batch.labels, batch.domains)
    chosen = b.select_for_sharing(policy, 0.1, novel_domains=frozenset({"rings"}))
    expected = {"none": 0, "all": 100}.get(policy, 10)
    assert len(chosen) == expected
    ids = [c.image_id for c in chosen]
    assert len(set(ids)) == len(ids) and set(ids) <= set(b.pending.tolist())
    if policy == "oracle":
        assert all(b.local_domains[i] == "rings" for i in ids)
    with pytest.raises(ConfigError, match="ground-truth"):
        b.select_for_sharing("oracle", 0.1)


def test_checkpoint_round_trip(bootstrapped: dict[str, bytes]) -> None:
    a = _restore(bootstrapped)["A"]
    twin = RobotLearner.restore(a.checkpoint(), CONFIG)
    images = generate("rings", 10, seed=3).images
    assert np.array_equal(a.model.predict(images).logits, twin.model.predict(images).logits)
    assert np.array_equal(a.vote(images).novel, twin.vote(images).novel)
    assert np.array_equal(a.local_labels, twin.local_labels)
    with pytest.raises(DataError, match="checkpoint"):
        RobotLearner.restore(b"nonsense", CONFIG)


def test_a_checkpointed_ranker_of_another_input_size_is_rebuilt_from_the_feedback(
    bootstrapped: dict[str, bytes]
) -> None:
    """An older checkpoint whose ranker no longer fits (its input features changed) restores:
    the ranker is derived state, refitted on the feedback the checkpoint holds."""
    b = _restore(bootstrapped)["B"]
    batch = _batch({"bars": 40, "rings": 10}, seed=70)
    b.observe(batch.images, batch.labels, batch.domains)
    b.learn_from_feedback([Feedback("B", int(i), float(b.local_domains[i] == "rings"), ("A",))
                           for i in b.pending[:30]])
    state = torch.load(io.BytesIO(b.checkpoint()), weights_only=True)
    state["ranker"] = GlobalUtilityRanker(3).state_bytes()  # another input size
    buffer = io.BytesIO()
    torch.save(state, buffer)
    restored = RobotLearner.restore(buffer.getvalue(), CONFIG)
    assert restored.ranker.trained
    features = b.features(b.pending)
    assert np.allclose(restored.ranker.predict(features), b.ranker.predict(features), atol=1e-5)


def test_feedback_for_another_robot_is_refused(bootstrapped: dict[str, bytes]) -> None:
    a = _restore(bootstrapped)["A"]
    with pytest.raises(DataError, match="another robot"):
        a.learn_from_feedback([Feedback("B", 0, 1.0, ("A",))])


def test_gu_round_delivers_feedback_and_retrains(bootstrapped: dict[str, bytes]) -> None:
    learners = _restore(bootstrapped)
    received_before = {n: len(lr.received_labels) for n, lr in learners.items()}
    batches = {"A": _batch({"bars": 100}, 30), "B": _batch({"bars": 80, "rings": 20}, 31)}
    outcome = InProcessFleet(learners).run_round(
        batches,
        policy="gu",
        budget=0.1,
        novel_domains={"A": frozenset(), "B": frozenset({"rings"})},
    )
    for name, lr in learners.items():
        shared, feedback = outcome.shared[name], outcome.feedback[name]
        assert len(shared) == 10 and len(feedback) == 10
        assert [f.image_id for f in feedback] == [c.image_id for c in shared]
        assert all(f.sender == name and 0.0 <= f.utility <= 1.0 for f in feedback)
        assert all(len(f.voters) == 1 and name not in f.voters for f in feedback)
        assert lr.ranker.trained and lr.ranker.fits == 1
        assert outcome.ranker_losses[name] is not None
        assert len(lr.feedback_utilities) == 10 and lr.fine_tunes == 1
    assert len(learners["A"].received_labels) == received_before["A"] + 10
    assert len(learners["B"].received_labels) == received_before["B"] + 10
    assert len(learners["A"].pending) == 0


def test_relay_visits_every_peer_once(bootstrapped: dict[str, bytes]) -> None:
    learners = _restore(bootstrapped)
    third = RobotLearner("C", CONFIG, seed=7)
    b = _batch({"bars": 120, "spots": 30}, seed=12)
    third.bootstrap(b.images, b.labels, b.domains)
    learners["C"] = third
    batch = _batch({"bars": 80, "rings": 20}, seed=50)
    learners["B"].observe(batch.images, batch.labels, batch.domains)
    candidates = learners["B"].select_for_sharing("random", 0.1)
    before = {n: len(lr.received_labels) for n, lr in learners.items()}
    feedback = InProcessFleet(learners, seed=5).deliver({"B": candidates})["B"]
    assert [sorted(f.voters) for f in feedback] == [["A", "C"]] * 10
    assert len({f.voters for f in feedback}) == 1  # a round's batch follows one path
    assert all(f.utility in (0.0, 0.5, 1.0) for f in feedback)
    # every peer kept every image once, in content-ID order (as the daemon's learner takes them)
    canonical = [c.label for c in sorted(candidates, key=lambda c: image_cid(c.image))]
    assert canonical != [c.label for c in candidates]  # the rule is visible in this batch
    for name in ("A", "C"):
        got = learners[name].received_labels[before[name]:]
        assert got.tolist() == canonical
    assert len(learners["B"].received_labels) == before["B"]


def test_min_utility_skips_images_no_peer_wants(bootstrapped: dict[str, bytes]) -> None:
    picky = LearnerConfig(
        vision=CONFIG.vision,
        ranker=RankerConfig(epochs=300),
        calibration_images=30,
        min_utility=0.4,
    )
    b = RobotLearner.restore(bootstrapped["B"], picky)
    batch = _batch({"bars": 80, "rings": 20}, seed=60)
    b.observe(batch.images, batch.labels, batch.domains)
    assert len(b.select_for_sharing("gu", 0.1)) == 10  # untrained: random, fills the budget
    pending = b.pending
    rings = pending[[d == "rings" for d in b.local_domains[pending]]]
    bars = pending[[d == "bars" for d in b.local_domains[pending]]]
    b.learn_from_feedback(
        [Feedback("B", int(i), 1.0, ("A",)) for i in rings[:10]]
        + [Feedback("B", int(i), 0.0, ("A",)) for i in bars[:30]]
    )
    chosen = b.select_for_sharing("gu", 0.5)
    assert 0 < len(chosen) < 50  # the budget allows 50; only likely-useful images go
    assert all(c.predicted_utility >= 0.4 for c in chosen)


def test_round_outcome_does_not_depend_on_delivery_order(bootstrapped: dict[str, bytes]) -> None:
    """Two delivery orders (simulator seeds) group the images differently at every voter:
    the same utilities, the same images kept in the same order, the same models after."""
    third = RobotLearner("C", CONFIG, seed=7)
    b = _batch({"bars": 120, "spots": 30}, seed=12)
    third.bootstrap(b.images, b.labels, b.domains)
    checkpoints = {**bootstrapped, "C": third.checkpoint()}
    batches = {"A": _batch({"bars": 100}, 60), "B": _batch({"bars": 80, "rings": 20}, 61),
               "C": _batch({"bars": 80, "spots": 20}, 62)}
    runs, groups = [], []
    for seed in (1, 2):
        learners = _restore(checkpoints)
        calls: list[tuple[str, int]] = []  # (voter, images voted together)
        for name, lr in learners.items():
            def vote(images: np.ndarray, lr: RobotLearner = lr, name: str = name,
                     calls: list[tuple[str, int]] = calls) -> Any:
                calls.append((name, len(images)))
                return RobotLearner.vote(lr, images)
            lr.vote = vote  # type: ignore[method-assign]
        outcome = InProcessFleet(learners, seed=seed).run_round(batches, policy="gu",
                                                                budget=0.2)
        runs.append((outcome, learners))
        groups.append(calls)
    assert groups[0] != groups[1]  # the images reached the voters in other groups
    (first, a), (second, b_) = runs
    for name in a:
        assert [f.utility for f in first.feedback[name]] == \
               [f.utility for f in second.feedback[name]]
        assert np.array_equal(a[name].received_images, b_[name].received_images)
        for k, v in a[name].weights().items():
            assert torch.equal(v, b_[name].weights()[k])


def test_vote_compares_with_own_training_images(bootstrapped: dict[str, bytes]) -> None:
    def knn_reference_size(learner: RobotLearner) -> int:
        assert isinstance(learner.detector, CombinedDetector)  # the default vote
        knn = next(p for p in learner.detector.parts if isinstance(p, KnnDetector))
        assert knn.reference is not None
        return len(knn.reference)

    b = _restore(bootstrapped)["B"]
    assert knn_reference_size(b) == len(b.local_images) == 120  # all of them: fewer than 2000
    capped = RobotLearner.restore(bootstrapped["B"], replace(CONFIG, detector_reference=25))
    sample = capped.detector_reference()
    assert sample is not None and len(sample) == knn_reference_size(capped) == 25
    own = {img.tobytes() for img in capped.local_images}
    assert all(img.tobytes() in own for img in sample)  # own images only, never received ones
    off = RobotLearner.restore(bootstrapped["B"], replace(CONFIG, detector_reference=0))
    assert off.detector_reference() is None and knn_reference_size(off) == 30  # calibration
