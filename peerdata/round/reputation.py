"""Per-peer reputation: how far a member's votes agree with the truth the fleet's votes
imply, beyond what chance would give.

Rule (pure, no I/O; the origin core calls it): each image has a hidden truth (novel or not) and
each voter a confusion (how often it says "novel" about a novel image, "familiar" about a
familiar one). At a round's deadline (`settle`), a few EM passes (Dawid-Skene) alternate: each
image's posterior truth from its voters' votes and confusion; each voter's confusion from its
votes against those posteriors, added to its decayed history. The EM draws a voter's two rates
towards its share of agreements (`symmetry_votes`): with two voters per image, "this voter
inverts" and "the two others seldom see novelty" explain one voter's disagreements about
equally well, and only the first is a lie; the draw prefers it. A peer's weight is its
informedness (sensitivity + specificity - 1) against the posteriors, clipped to [0, 1]: an
inverter's is negative (weight 0), a voter whose vote carries no information (always "novel",
always "familiar", random) is near 0 however often it agrees, an honest one near its
detector's quality. A newcomer starts from a prior worth `prior_votes` votes (weight 0.5).
An image's utility is the weighted share of novel votes among its counted voters; it also uses
the votes not yet settled (judged with the history, not folded into it), so a utility read
before the deadline already reflects this round's evidence.

Votes on any image of the fleet count as evidence (they all travel by gossip), not only votes on
our own images: with three robots the two voters on our image cannot tell which of them lies,
but their votes on everyone else's images can. Limit: novelty is relative to what each robot
has seen, so an honest robot alone in knowing a domain agrees less, and weighs less, for it.

What is settled when: the simulator's robots run rounds in lockstep, so a round's deadline
settles every vote of that round number (`settle`); a daemon's origins number their rounds
independently, so at each of its deadlines it settles every image (its own too) whose first
vote is at least one deadline old (`settle_images`, `ripe`): its own images settled alone
first (two voters each) could let chance decide which of the two starts lower. The
history is plain numbers (`history`, `load`: per voter, decayed comparisons, novel votes,
novel truth, agreements) so the daemon keeps it across restarts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

Key = tuple[bytes, int]  # (cid, round_id)
# Evidence about one voter: count of comparisons, of its novel votes, of the posterior novel
# truth of those images, and of (expected) agreements with it (all decayed together).
_N, _VOTE, _VERDICT, _AGREE = range(4)


@dataclass
class Reputation:
    """Every voter's standing, from the votes seen (see the module rule).

    Args:
        prior_votes: how many comparisons a newcomer's prior (weight 0.5) is worth.
        decay: how much of the history each settled round keeps (recent behaviour dominates).
        passes: EM passes per settled round.
        symmetry_votes: how many votes' worth the EM draws a voter's sensitivity and
            specificity towards its share of agreements.
    """

    prior_votes: float = 4.0
    decay: float = 0.9
    passes: int = 5
    symmetry_votes: float = 10.0
    min_weight: float = 0.05  # below it for every voter of an image, `standing` decides
    max_open: int = 20_000  # images awaiting their deadline; the oldest are dropped beyond it
    max_peers: int = 4_096  # voters remembered; the least-evidenced are forgotten beyond it
    _history: dict[str, tuple[float, float, float, float]] = field(default_factory=dict)
    _open: dict[Key, dict[str, bool]] = field(default_factory=dict)
    _seen_at: dict[Key, float] = field(default_factory=dict)
    _live: dict[str, tuple[float, float, float, float]] | None = None

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
        self._live = None

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
        self._live = None
        return taken

    def knows(self, peer: str) -> bool:
        """Whether any settled evidence about the peer exists."""
        return peer in self._history

    def kappa(self, peer: str) -> float:
        """The peer's chance-corrected agreement (Cohen's kappa) with the truth the fleet's
        votes imply, in [-1, 1] (GossipSub's application score)."""
        return _kappa(self._with_prior(self._history.get(peer)))

    def weight(self, peer: str) -> float:
        """How much the peer's vote counts, in [0, 1]: its informedness (sensitivity +
        specificity - 1) against the truth the fleet's votes imply, clipped at 0."""
        return _weight(self._with_prior(self._history.get(peer)))

    def weights(self) -> dict[str, float]:
        """Every known voter's weight (for logs, GossipSub's application score, reports)."""
        return {p: self.weight(p) for p in sorted(self._history)}

    def live_weight(self, peer: str) -> float:
        """`weight` with the open (not yet settled) votes counted too, as `utility` weighs."""
        return _weight(self._sum(peer, self._live_evidence().get(peer)))

    def utility(self, votes: Mapping[str, bool]) -> float | None:
        """The weighted share of novel votes (None without votes). When no voter weighs
        `min_weight` (all near chance: with few voters per image an inverter or a constant
        liar can drag the honest voters' kappa there too), the `standing` of each decides
        instead; the plain share only if even that is nothing."""
        if not votes:
            return None
        live = self._live_evidence()
        counts = {v: self._sum(v, live.get(v)) for v in votes}
        w = {v: _weight(c) for v, c in counts.items()}
        if max(w.values()) < self.min_weight:
            w = {v: _standing(c) for v, c in counts.items()}
        mass = sum(w.values())
        if mass <= 1e-12:
            return sum(votes.values()) / len(votes)
        return sum(w[v] * n for v, n in votes.items()) / mass

    def standing(self, peer: str) -> float:
        """A relative standing for when no voter has a positive weight: the odds of its
        chance-corrected agreement (an inverter's are near 0, chance's 1) times how much its
        own votes vary (4 p (1 - p) for its share p of novel votes: a constant voter's is near
        0, however it agrees)."""
        return _standing(self._with_prior(self._history.get(peer)))

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
        fresh = self._evidence(images)
        for p in {*self._history, *fresh}:
            old = self._history.get(p, (0.0, 0.0, 0.0, 0.0))
            new = fresh.get(p, (0.0, 0.0, 0.0, 0.0))
            self._history[p] = tuple(  # type: ignore[assignment]
                self.decay * o + n for o, n in zip(old, new, strict=True))
        if len(self._history) > self.max_peers:
            keep = sorted(self._history, key=lambda p: self._history[p][_N])[-self.max_peers:]
            self._history = {p: self._history[p] for p in sorted(keep)}
        self._live = None

    def _evidence(self, images: list[dict[str, bool]]
                  ) -> dict[str, tuple[float, float, float, float]]:
        """What these images' votes say about each voter, beyond the history (EM passes)."""
        fresh: dict[str, tuple[float, float, float, float]] = {}
        novel_share = 0.5
        voters = {p for image in images for p in image}
        for _ in range(self.passes):
            # each voter's confusion from its history and these images' judgements so far;
            # then every vote is judged again against the truth its image's votes imply
            conf = {p: self._confusion(self._sum(p, fresh.get(p))) for p in voters}
            fresh, novel_share = _judge(images, conf, novel_share)
        return fresh

    def _sum(self, peer: str, fresh: tuple[float, float, float, float] | None
             ) -> tuple[float, float, float, float]:
        """The peer's history plus `fresh` evidence, with the prior."""
        old = self._history.get(peer, (0.0, 0.0, 0.0, 0.0))
        new = fresh or (0.0, 0.0, 0.0, 0.0)
        return self._with_prior(tuple(o + x for o, x in zip(old, new, strict=True)))

    def _live_evidence(self) -> dict[str, tuple[float, float, float, float]]:
        """What the open (not yet settled) images' votes add, judged with the history; kept
        until a vote arrives or images settle."""
        if self._live is None:
            self._live = self._evidence([v for v in self._open.values() if len(v) > 1])
        return self._live

    def _confusion(self, counts: tuple[float, float, float, float]) -> tuple[float, float]:
        """(P(votes novel | novel), P(votes familiar | familiar)) for the EM's truth, from
        counts with the prior, each drawn towards the voter's share of agreements as if by
        `symmetry_votes` votes; kept inside [0.02, 0.98] so that no single voter decides an
        image alone."""
        n, vote, verdict, agree = counts
        both = (vote + verdict - (n - agree)) / 2.0  # novel, voted novel
        r, m = agree / n, self.symmetry_votes
        sens = (both + m * r) / (verdict + m)
        spec = (agree - both + m * r) / (n - verdict + m)
        return min(0.98, max(0.02, sens)), min(0.98, max(0.02, spec))

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


def _weight(counts: tuple[float, float, float, float]) -> float:
    n, vote, verdict, agree = counts
    both = (vote + verdict - (n - agree)) / 2.0
    sens = both / verdict if verdict > 1e-12 else 0.5
    spec = (agree - both) / (n - verdict) if n - verdict > 1e-12 else 0.5
    return max(0.0, min(1.0, sens + spec - 1.0))


def _standing(counts: tuple[float, float, float, float]) -> float:
    n, vote, _, _ = counts
    p = vote / n
    return _odds(_kappa(counts)) * 4.0 * p * (1.0 - p)


def _odds(kappa: float) -> float:
    a = min(0.99, (1.0 + kappa) / 2.0)
    return a / (1.0 - a)


def _judge(images: list[dict[str, bool]], conf: Mapping[str, tuple[float, float]],
           novel_share: float) -> tuple[dict[str, tuple[float, float, float, float]], float]:
    """Each vote against the truth its image's votes imply (Dawid-Skene: the posterior that
    the image is novel, from its voters' votes and confusion, and the share of novel images):
    comparisons, novel votes, novel truth and agreements per voter. Also returns the share of
    novel images the posteriors give (with one image of each kind as prior)."""
    prior = math.log(novel_share / (1.0 - novel_share))
    out: dict[str, list[float]] = {}
    total = 0.0
    for votes in images:
        truth = _sigmoid(prior + sum(_llr(conf[p], n) for p, n in votes.items()))
        total += truth
        for p, novel in votes.items():
            acc = out.setdefault(p, [0.0, 0.0, 0.0, 0.0])
            acc[_N] += 1.0
            acc[_VOTE] += novel
            acc[_VERDICT] += truth
            acc[_AGREE] += truth if novel else 1.0 - truth
    share = (total + 1.0) / (len(images) + 2.0)
    return {p: (a[0], a[1], a[2], a[3]) for p, a in out.items()}, share


def _llr(confusion: tuple[float, float], novel: bool) -> float:
    """How much one vote moves the log-odds that the image is novel."""
    sens, spec = confusion
    return math.log(sens / (1.0 - spec)) if novel else math.log((1.0 - sens) / spec)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))
