"""One sharing round over many robots, with the delivery layer injected.

Rule: no I/O here. `run_round` drives the pure `RobotLearner` steps; moving images between robots
is the job of a `Delivery`. `InProcessDelivery` calls the peers directly (simulation, tests);
the networked daemon implements the same Protocol over libp2p and reuses everything else.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np

from peerdata.errors import DataError
from peerdata.sharing.learner import RobotLearner, ShareCandidate
from peerdata.sharing.relay import Feedback, UtilityCounter, record_vote, relay_order, to_feedback

PrivacyHook = Callable[[np.ndarray], np.ndarray | None]
"""Filters one outgoing image: returns the image to send (possibly altered), or None to drop it."""


def identity_filter(image: np.ndarray) -> np.ndarray | None:
    """The privacy hook used until the real filter is plugged in: sends the image unchanged."""
    return image


class Delivery(Protocol):
    """Moves a sender's cached candidates to its peers; returns one `Feedback` per candidate."""

    def deliver(self, sender: str, candidates: Sequence[ShareCandidate]) -> list[Feedback]: ...


@dataclass(frozen=True)
class Batch:
    """New local images for one robot in one round (labels unified, domains ground truth)."""

    images: np.ndarray
    labels: np.ndarray
    domains: np.ndarray


def relay_hop(
    learner: RobotLearner,
    images: np.ndarray,
    labels: np.ndarray,
    counters: Sequence[UtilityCounter],
) -> list[UtilityCounter]:
    """One peer's turn in the relay: vote on the images, keep them, and update the counters.

    This is all a receiving robot does with a shared batch; a networked daemon calls it when a
    batch arrives and forwards the returned counters to the next peer (or, when every peer has
    voted, gossips `to_feedback(counter)` back to the sender).
    """
    if not (len(images) == len(labels) == len(counters)):
        raise DataError(f"{learner.name}: images, labels and counters differ in length")
    vote = learner.vote(images)
    learner.accept(images, labels)
    pairs = zip(counters, vote.novel, strict=True)
    return [record_vote(c, learner.name, bool(novel)) for c, novel in pairs]


class InProcessDelivery:
    """Relay in one process: candidates visit every other robot in turn; each votes once,
    increments the utility counter, and keeps the labelled images."""

    def __init__(self, learners: Mapping[str, RobotLearner]) -> None:
        self.learners = learners

    def deliver(self, sender: str, candidates: Sequence[ShareCandidate]) -> list[Feedback]:
        if not candidates:
            return []
        counters = [UtilityCounter(sender, c.image_id) for c in candidates]
        images = np.stack([c.image for c in candidates])
        labels = np.array([c.label for c in candidates], np.int64)
        for peer in relay_order(sender, list(self.learners)):
            counters = relay_hop(self.learners[peer], images, labels, counters)
        return [to_feedback(c) for c in counters]


@dataclass(frozen=True)
class RoundOutcome:
    """What happened in one round: per sender, what it shared and the feedback it got."""

    shared: Mapping[str, tuple[ShareCandidate, ...]]
    feedback: Mapping[str, tuple[Feedback, ...]]
    ranker_losses: Mapping[str, float | None]
    fine_tune_losses: Mapping[str, float]


def apply_privacy(candidates: Sequence[ShareCandidate], hook: PrivacyHook) -> list[ShareCandidate]:
    """Run every candidate through the privacy hook; dropped ones are not sent."""
    out = []
    for c in candidates:
        image = hook(c.image)
        if image is not None:
            out.append(replace(c, image=image))
    return out


def run_round(
    learners: Mapping[str, RobotLearner],
    batches: Mapping[str, Batch],
    delivery: Delivery,
    *,
    policy: str,
    budget: float,
    novel_domains: Mapping[str, frozenset[str]] | None = None,
    privacy: PrivacyHook = identity_filter,
) -> RoundOutcome:
    """observe -> select -> privacy -> deliver (vote, relay, accept) -> feedback -> fine-tune.

    All robots select before any delivery, and all votes use the models from before this
    round's fine-tune, so the order robots are visited in does not change the outcome.
    """
    for name, learner in learners.items():
        b = batches[name]
        learner.observe(b.images, b.labels, b.domains)
    selected = {
        name: apply_privacy(
            learner.select_for_sharing(
                policy, budget, novel_domains=None if novel_domains is None else novel_domains[name]
            ),
            privacy,
        )
        for name, learner in learners.items()
    }
    feedback = {name: tuple(delivery.deliver(name, cands)) for name, cands in selected.items()}
    ranker_losses = {
        name: learner.learn_from_feedback(feedback[name]) if policy == "gu" else None
        for name, learner in learners.items()
    }
    fine_tune_losses = {name: learner.fine_tune() for name, learner in learners.items()}
    return RoundOutcome(
        {k: tuple(v) for k, v in selected.items()}, feedback, ranker_losses, fine_tune_losses
    )
