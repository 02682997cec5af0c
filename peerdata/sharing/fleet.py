"""Robots' learners driven through the round core's in-process simulator: one sharing round.

Rule: no I/O. The `Simulator` decides who votes on what and each image's utility, exactly as
the daemon's cores do; this module only feeds it `RobotLearner` steps. Received images join a
robot's fine-tune in content-ID order (as in the daemon), never in delivery order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from peerdata.ml.privacy.imageformat import encode_png
from peerdata.round import Simulator, VoteState
from peerdata.sharing.feedback import Feedback
from peerdata.sharing.learner import RobotLearner, ShareCandidate
from peerdata.sharing.liars import lie


def run_seed(seed: int, index: int) -> int:
    """Robot `index`'s learner seed in run `seed` (every runner's, the swarm's daemons too)."""
    return seed * 1000 + index


def image_cid(image: np.ndarray) -> bytes:
    """The content ID of an image as a robot stores it: SHA-256 of its PNG encoding."""
    return hashlib.sha256(encode_png(image)).digest()


@dataclass(frozen=True)
class Batch:
    """New local images for one robot in one round (labels unified, domains ground truth)."""

    images: np.ndarray
    labels: np.ndarray
    domains: np.ndarray


@dataclass(frozen=True)
class RoundOutcome:
    """What happened in one round: per sender, what it shared and the feedback it got."""

    shared: Mapping[str, tuple[ShareCandidate, ...]]
    feedback: Mapping[str, tuple[Feedback, ...]]
    ranker_losses: Mapping[str, float | None]
    fine_tune_losses: Mapping[str, float]


class InProcessFleet:
    """Robots' learners in one process, rounds run by the core's `Simulator`."""

    def __init__(self, learners: Mapping[str, RobotLearner], *, seed: int = 0,
                 liars: Mapping[str, str] | None = None, reputation: bool = False) -> None:
        """Chains as the daemon's defaults (`round.max_hops`, `round.chains`); `liars`: robot
        -> lie mode (`peerdata.sharing.liars`); `reputation`: origins weight votes by the
        voters' reputation."""
        self.learners = learners
        self.names = list(learners)
        self.liars = dict(liars or {})
        self.simulator = Simulator(self.names, seed=seed, reputation=reputation)

    def deliver(self, selected: Mapping[str, Sequence[ShareCandidate]]
                ) -> dict[str, tuple[Feedback, ...]]:
        """Offer each sender's candidates through the simulator: peers vote and keep them
        (canonical order); returns each sender's feedback, one per candidate, in order."""
        where: dict[tuple[str, bytes], ShareCandidate] = {}
        offers: dict[str, list[bytes]] = {}
        for name in self.names:
            cids: list[bytes] = []
            for c in selected.get(name, ()):
                cid = image_cid(c.image)
                while cid in cids:  # the same pixels twice: still two shares, as selected
                    cid = hashlib.sha256(cid).digest()
                cids.append(cid)
                where[(name, cid)] = c
            offers[name] = cids
        kept: dict[str, list[tuple[bytes, ShareCandidate]]] = {n: [] for n in self.names}

        def vote(me: str, states: Sequence[VoteState]) -> list[bool]:
            # The images as they arrive, like the daemon: a verdict is the image's alone
            # (`OodDetector.vote`), whatever it travels with. A liar (--liars) inverts or
            # fixes its verdicts as `lie` says.
            got = [where[(st.origin, st.cid)] for st in states]
            kept[me].extend((st.cid, c) for st, c in zip(states, got, strict=True))
            verdict = self.learners[me].vote(np.stack([c.image for c in got]))
            novel = [bool(v) for v in verdict.novel]
            return [lie(self.liars[me], n) for n in novel] if me in self.liars else novel

        result = self.simulator.run_round(offers, vote)
        for name, learner in self.learners.items():
            # Content-ID order, as the daemon's learner takes them: a fine-tune must not depend
            # on the order in which images arrived.
            got = sorted(kept[name], key=lambda k: k[0])
            if got:
                learner.accept(np.stack([c.image for _, c in got]),
                               np.array([c.label for _, c in got], np.int64))
        feedback: dict[str, tuple[Feedback, ...]] = {}
        for name in self.names:
            decided = {u.cid: u for u in result.utilities.get(name, [])}
            out = []
            for cid in offers[name]:
                c = where[(name, cid)]
                u = decided.get(cid)
                out.append(Feedback(name, c.image_id, 0.0 if u is None else u.utility,
                                    () if u is None else u.voters))
            feedback[name] = tuple(out)
        return feedback

    def run_round(self, batches: Mapping[str, Batch], *, policy: str, budget: float,
                  novel_domains: Mapping[str, frozenset[str]] | None = None) -> RoundOutcome:
        """observe -> select -> deliver (vote, relay, keep) -> feedback -> fine-tune.

        Images are shared as selected, unaltered (the public datasets' images; the swarm's
        daemons run their privacy filter with face and plate action "keep" to match).

        All robots select before any delivery, and all votes use the models from before this
        round's fine-tune, so the order messages are delivered in does not change the outcome.
        """
        for name, learner in self.learners.items():
            b = batches[name]
            learner.observe(b.images, b.labels, b.domains)
        selected = {
            name: learner.select_for_sharing(
                policy, budget,
                novel_domains=None if novel_domains is None else novel_domains[name])
            for name, learner in self.learners.items()
        }
        feedback = self.deliver(selected)
        ranker_losses = {
            name: learner.learn_from_feedback(feedback[name]) if policy == "gu" else None
            for name, learner in self.learners.items()
        }
        fine_tune_losses = {name: learner.fine_tune() for name, learner in self.learners.items()}
        return RoundOutcome({k: tuple(v) for k, v in selected.items()}, feedback, ranker_losses,
                            fine_tune_losses)
