"""The origin's side of a round, as a state machine with no I/O: which votes and feedback about
its own shared images it believes, and each image's utility.

Rule (signatures and freshness are checked before, by the driver; the core gets verified facts):
- a Vote counts only if its voter is a fleet member (`is_member`), not us, on an image we shared
  in that round, the voter's first vote on that image, and in time (before the round's
  deadline); a late vote is kept for the record, never counted;
- a Feedback is valid only if it arrived on the reporter's own link, the reporter and every
  listed voter are members, the voters are distinct, and we are not among them; Feedback on an
  image we did not share then is ignored (logged, not punished: it may follow a restart);
- chains (round/relay.py): an image goes out on one chain per peer that took our offer (its
  *head*, given to `shared`; one chain when none is known yet); a Feedback belongs to the chain
  of its first voter. The first valid Feedback of each chain wins, up to as many chains as we
  started; a copy from the same reporter is a harmless duplicate; Feedback once every chain has
  one, or listing a voter another chain's Feedback already counts, is ignored. The image's
  utility is the novel share over the union of its chains' voters;
- at the deadline (`finish`), each chain's Feedback is cross-checked against the listed voters'
  own Votes: where all arrived and the count disagrees, the signed Votes win; an image without
  Feedback gets the utility its counted Votes imply (recovery), and one with a chain that never
  reported adds the counted Votes no Feedback lists;
- with a `Reputation` (lying members), every member's vote seen on gossip is evidence about its
  voter (`witness_vote`), and at the deadline an image whose voters' signed Votes all arrived
  gets the reputation-weighted utility instead (`source` "weighted"; see round/reputation.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from peerdata.round.reputation import Reputation

Key = tuple[bytes, int]  # (cid, round_id)
Membership = Callable[[str], bool]


def everyone(_peer: str) -> bool:
    """The open fleet (local experiments): every peer is a member."""
    return True


@dataclass(frozen=True)
class VoteFact:
    """A verified Vote about one of our images."""

    cid: bytes
    round_id: int
    voter: str
    novel: bool
    score: float = 0.0


@dataclass(frozen=True)
class FeedbackFact:
    """A verified Feedback about one of our images."""

    cid: bytes
    round_id: int
    reporter: str
    voters: tuple[str, ...]
    novel_votes: int

    @property
    def utility(self) -> float:
        return self.novel_votes / len(self.voters) if self.voters else 0.0


@dataclass(frozen=True)
class Verdict:
    """What the core made of one vote or feedback.

    outcome: `accepted`, `late` (vote kept, not counted), `duplicate` (harmless copy),
    `ignored` (not ours / not counted, no blame) or `rejected` (a protocol violation).
    """

    outcome: str
    reason: str = ""

    @property
    def keep(self) -> bool:
        """Whether the driver records it."""
        return self.outcome in ("accepted", "late")


@dataclass(frozen=True)
class Utility:
    """An image's final utility as `finish` decided it.

    source: `feedback`, `corrected` (feedback disagreed with the signed votes), `recovered`, or
    `weighted` (the reputation-weighted share of the signed votes differed from the count).
    """

    cid: bytes
    round_id: int
    utility: float
    voters: tuple[str, ...]
    novel_votes: int
    source: str
    reporter: str = ""


@dataclass
class _Image:
    votes: dict[str, VoteFact] = field(default_factory=dict)  # counted, first per voter
    late: set[str] = field(default_factory=set)
    heads: set[str] = field(default_factory=set)  # the chains we started (empty: one chain)
    feedback: dict[str, FeedbackFact] = field(default_factory=dict)  # chain key -> the first

    def chain(self, fb: FeedbackFact) -> str | None:
        """The key of `fb`'s chain (its first voter), or None when every chain we started
        already has its Feedback (at least one chain, also when the heads are unknown)."""
        head = fb.voters[0] if fb.voters else fb.reporter
        if head in self.feedback or len(self.feedback) < max(1, len(self.heads)):
            return head
        return None

    def standing(self) -> tuple[tuple[str, ...], int] | None:
        """(voters, novel votes) over every chain's accepted Feedback; None before any."""
        if not self.feedback:
            return None
        voters = tuple(v for fb in self.feedback.values() for v in fb.voters)
        return voters, sum(fb.novel_votes for fb in self.feedback.values())


@dataclass
class OriginCore:
    """Votes and feedback about robot `me`'s shared images (see the module rule)."""

    me: str
    deadline_s: float
    is_member: Membership = everyone
    reputation: Reputation | None = None
    _started: dict[int, float] = field(default_factory=dict)
    _images: dict[Key, _Image] = field(default_factory=dict)
    _finished: set[int] = field(default_factory=set)
    counts: dict[str, int] = field(default_factory=lambda: {
        "feedback_accepted": 0, "feedback_rejected": 0, "feedback_duplicate": 0,
        "feedback_ignored": 0, "votes_accepted": 0, "votes_rejected": 0, "votes_late": 0,
        "votes_duplicate": 0})

    # -- what we shared --------------------------------------------------------------------

    def start_round(self, round_id: int, started_at: float) -> None:
        self._started.setdefault(round_id, started_at)

    def shared(self, cid: bytes, round_id: int, head: str | None = None) -> None:
        """We shared `cid` in `round_id`: `head` took our offer and starts a chain (None: the
        offer is on its way, or its head is unknown)."""
        image = self._images.setdefault((cid, round_id), _Image())
        if head is not None:
            image.heads.add(head)

    def deadline(self, round_id: int) -> float | None:
        started = self._started.get(round_id)
        return None if started is None else started + self.deadline_s

    def is_shared(self, cid: bytes, round_id: int) -> bool:
        return (cid, round_id) in self._images

    # -- events ----------------------------------------------------------------------------

    def take_vote(self, vote: VoteFact, now: float) -> Verdict:
        """A verified vote arrived (gossip)."""
        verdict = self._judge_vote(vote, now)
        self.counts[{"accepted": "votes_accepted", "late": "votes_late",
                     "duplicate": "votes_duplicate", "rejected": "votes_rejected",
                     "ignored": "votes_rejected"}[verdict.outcome]] += 1
        return verdict

    def _judge_vote(self, vote: VoteFact, now: float) -> Verdict:
        if vote.voter == self.me:
            return Verdict("ignored", "our own vote")
        if not self.is_member(vote.voter):
            return Verdict("rejected", "the voter is not a fleet member")
        image = self._images.get((vote.cid, vote.round_id))
        if image is None:
            return Verdict("rejected", f"vote on {vote.cid.hex()[:16]}, which we never shared "
                           f"in round {vote.round_id}: the voter cannot have received it from us")
        if vote.voter in image.votes or vote.voter in image.late:
            return Verdict("duplicate", "this voter already voted on this image")
        deadline = self.deadline(vote.round_id)
        if deadline is not None and now >= deadline:
            image.late.add(vote.voter)
            return Verdict("late", "after the round's deadline: kept, not counted")
        image.votes[vote.voter] = vote
        if self.reputation is not None:
            self.reputation.observe(vote.cid, vote.round_id, vote.voter, vote.novel, now)
        return Verdict("accepted")

    def witness_vote(self, vote: VoteFact, now: float = 0.0) -> bool:
        """A verified vote on another origin's image (gossip; our own votes too): evidence for
        the reputation only. Returns whether it was taken (a reputation is kept, the voter is
        a member)."""
        if self.reputation is None or not self.is_member(vote.voter):
            return False
        self.reputation.observe(vote.cid, vote.round_id, vote.voter, vote.novel, now)
        return True

    def take_feedback(self, fb: FeedbackFact, link_peer: str | None) -> Verdict:
        """A verified Feedback arrived on the link of `link_peer` (None: replayed from our own
        store at start-up, already judged)."""
        verdict = self._judge_feedback(fb, link_peer)
        self.counts[f"feedback_{verdict.outcome}"] += 1
        return verdict

    def _judge_feedback(self, fb: FeedbackFact, link_peer: str | None) -> Verdict:
        image = self._images.get((fb.cid, fb.round_id))
        if image is None:
            return Verdict("ignored", f"feedback on {fb.cid.hex()[:16]}, which we did not share "
                           f"in round {fb.round_id}")
        if link_peer is not None:
            if fb.reporter != link_peer:
                return Verdict("rejected", "the reporter is not the peer of the link it came on")
            bad = [p for p in (fb.reporter, *fb.voters) if not self.is_member(p)]
            if bad:
                return Verdict("rejected", f"not a fleet member: {bad[0]}")
            if len(set(fb.voters)) != len(fb.voters) or self.me in fb.voters:
                return Verdict("rejected", "voters repeat, or include the origin")
            if not 0 <= fb.novel_votes <= len(fb.voters):
                return Verdict("rejected", "more novel votes than voters")
        key = image.chain(fb)
        if key is None:
            return Verdict("ignored", "every chain already has feedback (the first wins)")
        first = image.feedback.get(key)
        if first is not None and first.reporter == fb.reporter:
            return Verdict("duplicate", "already recorded; not counted again")
        if first is not None:
            return Verdict("ignored", "the chain already has feedback (the first wins)")
        counted = {v for other in image.feedback.values() for v in other.voters}
        if counted.intersection(fb.voters):
            return Verdict("ignored", "lists a voter another chain's feedback already counts")
        image.feedback[key] = fb
        return Verdict("accepted")

    def load_vote(self, vote: VoteFact, late: bool) -> None:
        """A vote judged before (replayed from the driver's records at start-up)."""
        image = self._images.setdefault((vote.cid, vote.round_id), _Image())
        if late:
            image.late.add(vote.voter)
        else:
            image.votes.setdefault(vote.voter, vote)

    def feedback_reporter(self, fb: FeedbackFact) -> str | None:
        """Who reported the accepted feedback of `fb`'s chain (None: none yet)."""
        image = self._images.get((fb.cid, fb.round_id))
        key = None if image is None else image.chain(fb)
        first = None if image is None or key is None else image.feedback.get(key)
        return None if first is None else first.reporter

    def standing(self, cid: bytes, round_id: int) -> tuple[float, int, int] | None:
        """(utility, voters, novel votes) over the image's chains' feedback so far, or None."""
        image = self._images.get((cid, round_id))
        got = None if image is None else image.standing()
        if got is None:
            return None
        voters, novel = got
        return novel / len(voters), len(voters), novel

    def utility(self, cid: bytes, round_id: int) -> float | None:
        """The image's utility as it stands (its chains' feedback), or None."""
        got = self.standing(cid, round_id)
        return None if got is None else got[0]

    def finish(self, round_id: int, now: float | None = None) -> tuple[list[Utility], int]:
        """The deadline passed: every image's final utility (feedback, corrected from signed
        votes, or recovered from them), and how many feedbacks disagreed with the votes.
        `now` (the daemon, whose origins number rounds independently): the reputation settles
        every image (ours too) first voted on a deadline ago; None
        (lockstep rounds, the simulator): every vote of the round number."""
        self._finished.add(round_id)
        out: list[Utility] = []
        mismatched = 0
        for (cid, rid), image in self._images.items():
            if rid != round_id:
                continue
            votes = image.votes
            if image.feedback:
                u, wrong = self._from_feedback(image, cid, rid)
                mismatched += wrong
                out.append(u)
            elif votes:
                voters = tuple(sorted(votes))
                novel = sum(votes[v].novel for v in voters)
                out.append(Utility(cid, rid, novel / len(voters), voters, novel, "recovered",
                                   self.me))
        if self.reputation is not None:
            if now is None:
                self.reputation.settle(round_id)
            else:
                # every image a deadline after its first vote, ours too: settling our own
                # images first (two voters each, nothing else) let a chance asymmetry between
                # them decide a robot's first history (a swarm's C took honest A for the liar);
                # utilities do not wait for it (they count the open votes)
                self.reputation.settle_images(self.reputation.ripe(now - self.deadline_s))
            out = [self._weighted(u) for u in out]
        return out, mismatched

    def _from_feedback(self, image: _Image, cid: bytes, rid: int) -> tuple[Utility, int]:
        """An image's utility from its chains' Feedback, each cross-checked against the
        signed Votes; plus the counted Votes no Feedback lists when a chain never reported.
        Returns it and how many chains' counts the signed Votes corrected."""
        votes = image.votes
        voters: list[str] = []
        novel = wrong = 0
        for fb in image.feedback.values():
            count = fb.novel_votes
            if fb.reporter != self.me and set(fb.voters) <= set(votes):
                count = sum(votes[v].novel for v in fb.voters)
                wrong += count != fb.novel_votes
            voters.extend(fb.voters)
            novel += count
        source = "corrected" if wrong else "feedback"
        if image.heads - set(image.feedback):  # a chain never reported: its signed votes
            extra = sorted(set(votes) - set(voters))
            voters.extend(extra)
            novel += sum(votes[v].novel for v in extra)
            source = source if wrong or not extra else "recovered"
        reporter = next(iter(image.feedback.values())).reporter
        return Utility(cid, rid, novel / len(voters), tuple(voters), novel, source,
                       reporter), wrong

    def provisional(self, cid: bytes, round_id: int) -> Utility | None:
        """Before the deadline, with a reputation: the image's utility as `finish` would weigh
        it with the reputation settled so far, once every chain's Feedback and every listed
        voter's Vote are in (else None). Lets a learner that reads utilities before the
        deadline see weighted ones; `finish` still decides the final value."""
        image = self._images.get((cid, round_id))
        if self.reputation is None or image is None or not image.feedback or (
                image.heads - set(image.feedback)):
            return None
        u, _ = self._from_feedback(image, cid, round_id)
        if u.reporter == self.me or not set(u.voters) <= set(image.votes):
            return None
        return self._weighted(u)

    def provisional_open(self) -> list[Utility]:
        """`provisional` for every image of the rounds not finished yet that has one (what a
        learner about to train should read: weighted with all the evidence in now)."""
        keys = [k for k in self._images if k[1] not in self._finished]
        return [u for k in keys if (u := self.provisional(*k)) is not None]

    def _weighted(self, u: Utility) -> Utility:
        """`u` with the reputation-weighted share of its voters' signed votes, where all
        arrived (a feedback's count cannot be weighted without them)."""
        votes = self._images[(u.cid, u.round_id)].votes
        if self.reputation is None or not u.voters or not set(u.voters) <= set(votes):
            return u
        weighted = self.reputation.utility({v: votes[v].novel for v in u.voters})
        if weighted is None or abs(weighted - u.utility) < 1e-12:
            return u
        return replace(u, utility=weighted,
                       source="corrected" if u.source == "corrected" else "weighted")

    def finished(self, round_id: int) -> bool:
        return round_id in self._finished

    def counted_votes(self, cid: bytes, round_id: int) -> dict[str, bool]:
        """voter -> novel, for the votes that count on this image."""
        image = self._images.get((cid, round_id))
        return {} if image is None else {v: f.novel for v, f in image.votes.items()}

    def has_vote(self, cid: bytes, round_id: int, voter: str) -> bool:
        """Whether `voter`'s vote on the image is held already (counted or late)."""
        image = self._images.get((cid, round_id))
        return image is not None and (voter in image.votes or voter in image.late)
