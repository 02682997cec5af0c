"""Lying fleet members for experiments: which robots lie, and how a lie changes a vote.

Rule: pure. A liar is a member in good standing (signed, admitted) whose OoD votes are false;
only its votes change, everything else it does (sharing, relaying, reporting counts) is honest,
so what is measured is the damage false votes do and what reputation recovers.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from peerdata.errors import ConfigError

LIE_MODES: tuple[str, ...] = ("invert", "always-novel", "never-novel")


def lie(mode: str, novel: bool) -> bool:
    """The vote a liar in `mode` casts where its honest verdict is `novel`."""
    if mode == "invert":
        return not novel
    if mode == "always-novel":
        return True
    if mode == "never-novel":
        return False
    raise ConfigError(f"unknown lie mode {mode!r}; known: {', '.join(LIE_MODES)}")


def pick_liars(names: Sequence[str], fraction: float, seed: int) -> tuple[str, ...]:
    """A seeded choice of round(fraction * len(names)) robots, at least one when fraction > 0
    (20% of three robots is one: 33%, the nearest non-zero share).

    Raises:
        ConfigError: fraction outside [0, 1).
    """
    if not 0.0 <= fraction < 1.0:
        raise ConfigError(f"the liars' share must lie in [0, 1), got {fraction}")
    if fraction == 0.0:
        return ()
    count = max(1, int(fraction * len(names) + 0.5))
    return tuple(sorted(random.Random(seed).sample(sorted(names), count)))
