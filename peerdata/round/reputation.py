"""Per-peer reputation: how far a member's votes agree with what the rest of the fleet says,
beyond what chance would give.

Rule (pure, no I/O; the origin core calls it): a vote is evidence about its voter only through
the other voters on the same image. At a round's deadline (`settle`), each voter's vote on each
image is compared with the verdict of the *other* voters on that image (their weighted share of
novel votes); the comparison counts as much as those others weigh together (relative to the
most trusted voter, at most 1), so disagreeing with a distrusted peer costs nearly nothing.
This round's comparisons are solved by a few fixed-point passes, then added to the decayed
history. A peer's weight is its chance-corrected agreement (Cohen's kappa), clipped to [0, 1]:
a peer that inverts its votes weighs nothing, and so does one whose vote carries no
information (always "novel", always "familiar", or random), however often it happens to agree;
a newcomer starts from a prior worth `prior_votes` votes (kappa 0.5, half weight).
An image's utility is the weighted share of novel votes among its counted voters.

Votes on any image of the fleet count as evidence (they all travel by gossip), not only votes on
our own images: with three robots the two voters on our image cannot tell which of them lies,
but their votes on everyone else's images can. Limit: novelty is relative to what each robot
has seen, so an honest robot alone in knowing a domain agrees less, and weighs less, for it.

What is settled when: the simulator's robots run rounds in lockstep, so a round's deadline
settles every vote of that round number (`settle`); a daemon's origins number their rounds
independently, so at each of its deadlines it settles its own images of the round and every
other image whose first vote is at least one deadline old (`settle_images`, `ripe`). The
history is plain numbers (`history`, `load`) so the daemon keeps it across restarts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

Key = tuple[bytes, int]  # (cid, round_id)
# Evidence about one voter: weighted count of comparisons, of its novel votes, of the others'
# novel verdicts, and of agreements (all decayed together).
_N, _VOTE, _VERDICT, _AGREE = range(4)


@dataclass
class Reputation:
    """Every voter's standing, from the votes seen (see the module rule).

    Args:
        prior_votes: how many comparisons a newcomer's prior (kappa 0.5) is worth.
        decay: how much of the history each settled round keeps (recent behaviour dominates).
        passes: fixed-point passes per settled round.
    """

    prior_votes: float = 4.0
    decay: float = 0.9
    passes: int = 5
    min_weight: float = 0.1  # below it for every voter of an image, `standing` decides
    max_open: int = 20_000  # images awaiting their deadline; the oldest are dropped beyond it
    max_peers: int = 4_096  # voters remembered; the least-evidenced are forgotten beyond it
    _history: dict[str, tuple[float, float, float, float]] = field(default_factory=dict)
    _open: dict[Key, dict[str, bool]] = field(default_factory=dict)
    _seen_at: dict[Key, float] = field(default_factory=dict)

    def observe(self, cid: bytes, round_id: int, voter: str, novel: bool,
                at: float = 0.0) -> None:
        """A verified member's vote (any origin's image) seen at time `at`; its first vote per
        image counts."""
        key = (cid, round_id)
        if key not in self._open and len(self._open) >= self.max_open:
            oldest = next(iter(self._open))
            del self._open[oldest]
            self._seen_at.pop(oldest, None)
        self._open.setdefault(key, {}).setdefault(voter, bool(novel))
        self._seen_at.setdefault(key, at)

    def ripe(self, before: float) -> list[Key]:
        """The open images whose first vote was seen at or before `before`."""
        return [k for k, t in self._seen_at.items() if t <= before]

    def history(self) -> dict[str, tuple[float, float, float, float]]:
        """Every voter's decayed evidence (to keep across restarts; `load` takes it back)."""
        return dict(self._history)

    def load(self, history: Mapping[str, Iterable[float]]) -> int:
        """Take back a `history` (e.g. read from the store); entries that are not four finite
        non-negative numbers with agreements <= comparisons are skipped. Returns how many."""
        taken = 0
        for peer, counts in history.items():
            try:
                n, vote, verdict, agree = (float(x) for x in counts)
            except (TypeError, ValueError):
                continue
            values = (n, vote, verdict, agree)  # sums of decayed floats: tiny rounding kept
            if (isinstance(peer, str) and all(math.isfinite(x) and x >= -1e-6 for x in values)
                    and max(vote, verdict, agree) <= n + 1e-6):
                self._history[peer] = (max(0.0, n), max(0.0, vote), max(0.0, verdict),
                                       max(0.0, agree))
                taken += 1
        return taken

    def knows(self, peer: str) -> bool:
        """Whether any settled evidence about the peer exists."""
        return peer in self._history

    def kappa(self, peer: str) -> float:
        """The peer's chance-corrected agreement with the fleet, in [-1, 1]."""
        return _kappa(self._with_prior(self._history.get(peer)))

    def weight(self, peer: str) -> float:
        """How much the peer's vote counts, in [0, 1]."""
        return max(0.0, self.kappa(peer))

    def weights(self) -> dict[str, float]:
        """Every known voter's weight (for logs, GossipSub's application score, reports)."""
        return {p: self.weight(p) for p in sorted(self._history)}

    def utility(self, votes: Mapping[str, bool]) -> float | None:
        """The weighted share of novel votes (None without votes). When no voter weighs
        `min_weight` (all near chance: with few voters per image an inverter or a constant
        liar can drag the honest voters' kappa there too), the `standing` of each decides
        instead; the plain share only if even that is nothing."""
        if not votes:
            return None
        w = {v: self.weight(v) for v in votes}
        if max(w.values()) < self.min_weight:
            w = {v: self.standing(v) for v in votes}
        mass = sum(w.values())
        if mass <= 1e-12:
            return sum(votes.values()) / len(votes)
        return sum(w[v] * n for v, n in votes.items()) / mass

    def standing(self, peer: str) -> float:
        """A relative standing for when no voter has a positive weight: the odds of its
        chance-corrected agreement (an inverter's are near 0, chance's 1) times how much its
        own votes vary (4 p (1 - p) for its share p of novel votes: a constant voter's is near
        0, however it agrees)."""
        n, vote, _, _ = self._with_prior(self._history.get(peer))
        p = vote / n
        return _odds(self.kappa(peer)) * 4.0 * p * (1.0 - p)

    def settle(self, round_id: int) -> None:
        """The round's deadline passed (lockstep rounds): judge every vote of that round
        number and fold them into the history."""
        self.settle_images([k for k in self._open if k[1] == round_id])

    def settle_images(self, keys: Iterable[Key]) -> None:
        """These images' votes are all in: judge them and fold them into the history."""
        images = []
        for key in dict.fromkeys(keys):
            votes = self._open.pop(key, None)
            self._seen_at.pop(key, None)
            if votes is not None and len(votes) > 1:
                images.append(votes)
        voters = {p for image in images for p in image}
        fresh: dict[str, tuple[float, float, float, float]] = {}
        for _ in range(self.passes):
            # the passes weigh the others by the odds of their chance-corrected agreement, not
            # by the clipped weight: when every peer starts near chance (one liar of three)
            # the clipped weights all vanish and the passes could not tell anyone apart
            w = {p: _odds(self._kappa_with(p, fresh.get(p))) for p in voters}
            fresh = _compare(images, w)
        for p in {*self._history, *fresh}:
            old = self._history.get(p, (0.0, 0.0, 0.0, 0.0))
            new = fresh.get(p, (0.0, 0.0, 0.0, 0.0))
            self._history[p] = tuple(  # type: ignore[assignment]
                self.decay * o + n for o, n in zip(old, new, strict=True))
        if len(self._history) > self.max_peers:
            keep = sorted(self._history, key=lambda p: self._history[p][_N])[-self.max_peers:]
            self._history = {p: self._history[p] for p in sorted(keep)}

    def _kappa_with(self, peer: str, fresh: tuple[float, float, float, float] | None) -> float:
        old = self._history.get(peer, (0.0, 0.0, 0.0, 0.0))
        new = fresh or (0.0, 0.0, 0.0, 0.0)
        return _kappa(self._with_prior(tuple(o + n for o, n in zip(old, new, strict=True))))

    def _with_prior(self, counts: tuple[float, ...] | None) -> tuple[float, float, float, float]:
        n, vote, verdict, agree = counts or (0.0, 0.0, 0.0, 0.0)
        k = self.prior_votes  # half novel, half familiar, agreeing 3 times in 4: kappa 0.5
        return n + k, vote + k / 2, verdict + k / 2, agree + 0.75 * k


def _kappa(counts: tuple[float, float, float, float]) -> float:
    n, vote, verdict, agree = counts
    if n <= 0.0:
        return 0.0
    observed = agree / n
    p_vote, p_verdict = vote / n, verdict / n
    expected = p_vote * p_verdict + (1.0 - p_vote) * (1.0 - p_verdict)
    if expected >= 1.0 - 1e-9:
        return 0.0  # everyone says the same thing: agreement says nothing
    return max(-1.0, min(1.0, (observed - expected) / (1.0 - expected)))


def _odds(kappa: float) -> float:
    a = min(0.99, (1.0 + kappa) / 2.0)
    return a / (1.0 - a)


def _compare(images: list[dict[str, bool]], weights: Mapping[str, float]
             ) -> dict[str, tuple[float, float, float, float]]:
    """Each voter's comparisons with the weighted verdict of the other voters, per image,
    counted as much as those others weigh together (relative to the most trusted voter, so the
    passes cannot all shrink to nothing; at most 1)."""
    top = max(weights.values(), default=0.0)
    w = {p: x / top if top > 0 else 1.0 for p, x in weights.items()}
    out: dict[str, list[float]] = {}
    for votes in images:
        mass_all = sum(w[p] for p in votes)
        novel_all = sum(w[p] for p, n in votes.items() if n)
        for p, novel in votes.items():
            mass = mass_all - w[p]
            if mass <= 1e-9:
                continue
            verdict = (novel_all - (w[p] if novel else 0.0)) / mass
            c = min(1.0, mass)
            acc = out.setdefault(p, [0.0, 0.0, 0.0, 0.0])
            acc[_N] += c
            acc[_VOTE] += c * novel
            acc[_VERDICT] += c * verdict
            acc[_AGREE] += c * (verdict if novel else 1.0 - verdict)
    return {p: (a[0], a[1], a[2], a[3]) for p, a in out.items()}
