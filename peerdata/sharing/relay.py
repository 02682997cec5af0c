"""The paper's relay: a shared image's utility counter travels from peer to peer, each voting once.

Rule: pure values and functions only. A `UtilityCounter` is immutable; `record_vote` returns a new
one and refuses a second vote by the same peer or a vote by the sender, so the networked daemon
can forward counters over the wire and still get the same answer as the in-process simulation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from peerdata.errors import DataError


@dataclass(frozen=True)
class UtilityCounter:
    """How many of the peers that voted so far found one shared image novel."""

    sender: str
    image_id: int
    novel_votes: int = 0
    voters: tuple[str, ...] = ()

    @property
    def utility(self) -> float:
        """Fraction of voters that found the image novel (0.0 before any vote)."""
        return self.novel_votes / len(self.voters) if self.voters else 0.0


def record_vote(counter: UtilityCounter, voter: str, novel: bool) -> UtilityCounter:
    """The counter after `voter` voted; each peer votes once and the sender never does."""
    if voter == counter.sender:
        raise DataError(f"{voter!r} cannot vote on its own image {counter.image_id}")
    if voter in counter.voters:
        raise DataError(
            f"{voter!r} already voted on image {counter.image_id} of {counter.sender!r}"
        )
    return UtilityCounter(
        counter.sender,
        counter.image_id,
        counter.novel_votes + int(bool(novel)),
        (*counter.voters, voter),
    )


@dataclass(frozen=True)
class Feedback:
    """What the sender learns about one image it shared: its normalized utility u in [0, 1]."""

    sender: str
    image_id: int
    utility: float
    voters: tuple[str, ...]


def to_feedback(counter: UtilityCounter) -> Feedback:
    """The final, normalized counter as gossiped back to the sender."""
    return Feedback(counter.sender, counter.image_id, counter.utility, counter.voters)


def relay_order(sender: str, robots: Sequence[str]) -> list[str]:
    """The peers a sender's images visit, in order: everyone after the sender, wrapping around."""
    names = list(robots)
    if sender not in names:
        raise DataError(f"unknown sender {sender!r}")
    i = names.index(sender)
    return names[i + 1 :] + names[:i]
