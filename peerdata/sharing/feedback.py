"""What a robot learns about one image it shared: its normalized utility u in [0, 1].

Rule: a pure value; the round core (`peerdata.round`) decides it, the learner trains on it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Feedback:
    """The utility of one shared image, as its sender's ranker trains on it."""

    sender: str
    image_id: int
    utility: float
    voters: tuple[str, ...]
