"""Per-peer reputation: how far a member's votes agree with what the rest of the fleet says.

Rule (pure, no I/O; the origin core calls it): a vote is evidence about its voter only through
the other voters on the same image. At a round's deadline (`settle`), each voter's vote on each
image is compared with the verdict of the *other* voters on that image, each weighted by the
odds of its agreement so far; the comparison counts as much as those others weigh together
(relative to the most trusted voter, at most 1), so disagreeing with a distrusted peer costs
nearly nothing. This round's agreement is solved by a few fixed-point passes, then added to the
decayed history. A peer's weight is how much better than chance it agrees,
`2 * agreement - 1`, clipped to [0, 1]: a peer that inverts its votes, or votes at random,
weighs nothing; a newcomer starts from a prior worth `prior_votes` votes.
An image's utility is the weighted share of novel votes among its counted voters.

Votes on any image of the fleet count as evidence (they all travel by gossip), not only votes on
our own images: with three robots the two voters on our image cannot tell which of them lies,
but their votes on everyone else's images can.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

Key = tuple[bytes, int]  # (cid, round_id)


@dataclass
class Reputation:
    """Every voter's standing, from the votes seen (see the module rule).

    Args:
        prior_agreement: a newcomer's assumed agreement (0.75: half weight).
        prior_votes: how many votes that prior is worth.
        decay: how much of the history each settled round keeps (recent behaviour dominates).
        passes: fixed-point passes per settled round.
    """

    prior_agreement: float = 0.75
    prior_votes: float = 4.0
    decay: float = 0.9
    passes: int = 5
    _agree: dict[str, float] = field(default_factory=dict)
    _seen: dict[str, float] = field(default_factory=dict)
    _open: dict[Key, dict[str, bool]] = field(default_factory=dict)

    def observe(self, cid: bytes, round_id: int, voter: str, novel: bool) -> None:
        """A verified member's vote (any origin's image); its first vote per image counts."""
        self._open.setdefault((cid, round_id), {}).setdefault(voter, bool(novel))

    def agreement(self, peer: str) -> float:
        """The peer's agreement with the fleet, in [0, 1] (the prior for a newcomer)."""
        return self._score(peer, self._agree, self._seen)

    def weight(self, peer: str) -> float:
        """How much the peer's vote counts, in [0, 1]."""
        return _weight(self.agreement(peer))

    def weights(self) -> dict[str, float]:
        """Every known voter's weight (for logs, GossipSub's application score, reports)."""
        return {p: self.weight(p) for p in sorted(self._seen)}

    def utility(self, votes: Mapping[str, bool]) -> float | None:
        """The weighted share of novel votes (None without votes); when every voter weighs
        nothing, the plain share (no one can be preferred)."""
        if not votes:
            return None
        mass = sum(self.weight(v) for v in votes)
        if mass <= 0.0:
            return sum(votes.values()) / len(votes)
        return sum(self.weight(v) * n for v, n in votes.items()) / mass

    def settle(self, round_id: int) -> None:
        """The round's deadline passed: judge its votes and fold them into the history."""
        images = [v for (_, rid), v in self._open.items() if rid == round_id and len(v) > 1]
        for key in [k for k in self._open if k[1] == round_id]:
            del self._open[key]
        agree: dict[str, float] = {}
        seen: dict[str, float] = {}
        for _ in range(self.passes):
            total_agree = {p: self._agree.get(p, 0.0) + agree.get(p, 0.0)
                           for p in {*self._agree, *agree}}
            total_seen = {p: self._seen.get(p, 0.0) + seen.get(p, 0.0)
                          for p in {*self._seen, *seen}}
            # the passes weigh the others by the odds of their agreement, not by the clipped
            # weight: when every peer starts near chance (one liar of three) the clipped
            # weights all vanish and the passes could not tell anyone apart
            w = {p: _odds(self._score(p, total_agree, total_seen))
                 for image in images for p in image}
            agree, seen = _compare(images, w)
        for p in {*self._seen, *seen}:
            self._agree[p] = self.decay * self._agree.get(p, 0.0) + agree.get(p, 0.0)
            self._seen[p] = self.decay * self._seen.get(p, 0.0) + seen.get(p, 0.0)

    def _score(self, peer: str, agree: Mapping[str, float], seen: Mapping[str, float]) -> float:
        return ((agree.get(peer, 0.0) + self.prior_agreement * self.prior_votes)
                / (seen.get(peer, 0.0) + self.prior_votes))


def _odds(agreement: float) -> float:
    a = min(agreement, 0.99)
    return a / (1.0 - a)


def _weight(agreement: float) -> float:
    return min(1.0, max(0.0, 2.0 * agreement - 1.0))


def _compare(images: list[dict[str, bool]], weights: Mapping[str, float]
             ) -> tuple[dict[str, float], dict[str, float]]:
    """Each voter's agreement with the weighted verdict of the other voters, per image,
    counted as much as those others weigh together (relative to the most trusted voter, so the
    passes cannot all shrink to nothing; at most 1)."""
    top = max(weights.values(), default=0.0)
    w = {p: x / top if top > 0 else 1.0 for p, x in weights.items()}
    agree: dict[str, float] = {}
    seen: dict[str, float] = {}
    for votes in images:
        mass_all = sum(w[p] for p in votes)
        novel_all = sum(w[p] for p, n in votes.items() if n)
        for p, novel in votes.items():
            mass = mass_all - w[p]
            if mass <= 1e-9:
                continue
            verdict = (novel_all - (w[p] if novel else 0.0)) / mass
            confidence = min(1.0, mass)
            agree[p] = agree.get(p, 0.0) + confidence * (verdict if novel else 1.0 - verdict)
            seen[p] = seen.get(p, 0.0) + confidence
    return agree, seen
