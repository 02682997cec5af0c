"""The origin's side of voting: which signed Feedback and Votes about its images it believes.

Rule: `take_feedback`/`take_vote` are the one place a received Feedback or Vote is judged. In
order: addressed to us (else ignored), signature, already recorded (a retransmission: ignored
and logged, so delivery can be retried safely), replay guard (fresh timestamp, unseen nonce),
the cid was shared by us in that round, then stored once. Any failure raises
RemoteProtocolError with the reason, which the caller logs with the sender's peer ID. Votes
arriving after the round's deadline are stored with `late=True` and never counted. Blocking
(store): called through the node's offload.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from peerdata.errors import RemoteProtocolError, SignatureError
from peerdata.node.logs import event
from peerdata.store import FeedbackRecord, Store, VoteRecord
from peerdata.wire.messages import Feedback, Vote
from peerdata.wire.replay import ReplayGuard
from peerdata.wire.signing import verify_feedback, verify_vote

log = logging.getLogger("peerdata.node.feedback")


@dataclass(frozen=True)
class RoundView:
    """One round as `peerdata rounds` shows it, computed from the store."""

    round_id: int
    started_at: float
    finished_at: float | None
    shared: int
    bytes_sent: int
    votes_received: int
    late_votes: int
    feedback_received: int
    recovered: int  # utilities computed from signed votes because no Feedback came
    mean_utility: float | None
    accuracy: float | None
    ranker_trained: bool
    complete: bool


class OriginDesk:
    """Judges Feedback and Votes about our own shared images (see the module rule)."""

    def __init__(self, me: str, store: Store, guard: ReplayGuard, deadline_s: float,
                 wall_clock: Callable[[], float]) -> None:
        self.me, self.store, self.guard = me, store, guard
        self.deadline_s, self.wall_clock = deadline_s, wall_clock
        self.counts = {"feedback_accepted": 0, "feedback_rejected": 0, "feedback_duplicate": 0,
                       "votes_accepted": 0, "votes_rejected": 0, "votes_late": 0}

    def _shared_in(self, cid: bytes, round_id: int) -> bool:
        return any(r.cid == cid for r in self.store.list_shared(round_id))

    def _recorded(self, fb: Feedback) -> bool:
        return any(f.cid == fb.cid and f.reporter == fb.reporter
                   for f in self.store.list_feedback(fb.round_id))

    def _deadline(self, round_id: int) -> float | None:
        rec = self.store.get_round(round_id)
        return None if rec is None else rec.started_at + self.deadline_s

    def take_feedback(self, fb: Feedback) -> FeedbackRecord | None:
        """Store verified, fresh feedback on one of our images; None if not ours or a repeat.

        Raises:
            RemoteProtocolError: bad signature, replay, or an image we never shared then.
        """
        if fb.origin != self.me:
            return None
        now = self.wall_clock()
        try:
            try:
                verify_feedback(fb)
            except SignatureError as exc:
                raise RemoteProtocolError(f"feedback signature: {exc}") from None
            if self._recorded(fb):
                # a retransmission (our ack was lost) or a replay of one we hold: harmless
                self.counts["feedback_duplicate"] += 1
                event(log, logging.INFO, "feedback_duplicate", peer=fb.reporter,
                      cid=fb.cid.hex()[:16], reason="already recorded; not counted again")
                return None
            self.guard.check(fb.reporter, fb.nonce, fb.timestamp, now)
            if not self._shared_in(fb.cid, fb.round_id):
                raise RemoteProtocolError(
                    f"feedback on {fb.cid.hex()[:16]}, which we did not share in round "
                    f"{fb.round_id}")
        except RemoteProtocolError:
            self.counts["feedback_rejected"] += 1
            raise
        record = FeedbackRecord(cid=fb.cid, round_id=fb.round_id, reporter=fb.reporter,
                                utility=fb.utility, voters=fb.voters,
                                novel_votes=fb.novel_votes, received_at=now)
        if not self.store.add_feedback(record):
            self.counts["feedback_duplicate"] += 1
            return None
        self.store.set_utility(fb.cid, fb.utility, len(fb.voters), fb.novel_votes)
        self.counts["feedback_accepted"] += 1
        unconfirmed = [v.voter for v in self.store.list_votes(fb.cid, fb.round_id)
                       if v.voter not in fb.voters and v.voter != self.me]
        if unconfirmed:
            event(log, logging.WARNING, "votes_unconfirmed", cid=fb.cid.hex()[:16],
                  voters=",".join(unconfirmed), reason="voted but not in the feedback's voters")
        return record

    def take_vote(self, vote: Vote) -> VoteRecord | None:
        """Store a verified vote on one of our images (late if after the deadline).

        Raises:
            RemoteProtocolError: bad signature, replay, or a vote on an image we never shared.
        """
        if vote.origin != self.me:
            return None
        now = self.wall_clock()
        try:
            try:
                verify_vote(vote)
            except SignatureError as exc:
                raise RemoteProtocolError(f"vote signature: {exc}") from None
            self.guard.check(vote.voter, vote.nonce, vote.timestamp, now)
            if not self._shared_in(vote.cid, vote.round_id):
                raise RemoteProtocolError(
                    f"vote on {vote.cid.hex()[:16]}, which we never shared in round "
                    f"{vote.round_id}: the voter cannot have received it from us")
        except RemoteProtocolError:
            self.counts["votes_rejected"] += 1
            raise
        deadline = self._deadline(vote.round_id)
        late = deadline is not None and now >= deadline
        record = VoteRecord(cid=vote.cid, origin=vote.origin, voter=vote.voter,
                            round_id=vote.round_id, novel=vote.novel, score=vote.score,
                            received_at=now, late=late)
        if not self.store.add_vote(record):
            return None
        self.counts["votes_late" if late else "votes_accepted"] += 1
        return record

    def recover(self, round_id: int) -> int:
        """After the deadline: give each shared image still without feedback the utility its
        in-time signed votes imply (reporter = us). Returns how many were recovered."""
        have = {f.cid for f in self.store.list_feedback(round_id)}
        cids = dict.fromkeys(r.cid for r in self.store.list_shared(round_id))
        n = 0
        now = self.wall_clock()
        for cid in cids:
            if cid in have:
                continue
            votes = [v for v in self.store.list_votes(cid, round_id)
                     if not v.late and v.voter != self.me]
            if not votes:
                continue
            novel = sum(v.novel for v in votes)
            voters = tuple(v.voter for v in votes)
            self.store.add_feedback(FeedbackRecord(cid, round_id, self.me, novel / len(voters),
                                                   voters, novel, now))
            self.store.set_utility(cid, novel / len(voters), len(voters), novel)
            n += 1
        if n:
            event(log, logging.INFO, "utility_recovered", round_id=round_id, images=n)
        return n

    def cross_check(self, round_id: int) -> int:
        """Compare each Feedback's count with the voters' own signed Votes; log and return
        how many disagree (only where every listed voter's Vote arrived)."""
        mismatched = 0
        for fb in self.store.list_feedback(round_id):
            if fb.reporter == self.me:
                continue  # recovered from the votes themselves
            signed = {v.voter: v.novel for v in self.store.list_votes(fb.cid, round_id)}
            if set(fb.voters) <= set(signed):
                novel = sum(signed[v] for v in fb.voters)
                if novel != fb.novel_votes:
                    mismatched += 1
                    event(log, logging.WARNING, "feedback_mismatch", peer=fb.reporter,
                          cid=fb.cid.hex()[:16], reported=fb.novel_votes, signed=novel)
        return mismatched

    def view(self, round_id: int) -> RoundView | None:
        """The round as it stands now (None if there is no such round)."""
        rec = self.store.get_round(round_id)
        if rec is None:
            return None
        shared = {r.cid: r for r in self.store.list_shared(round_id)}
        feedback = self.store.list_feedback(round_id)
        votes = [v for v in self.store.list_votes(round_id=round_id)
                 if v.origin == self.me and v.voter != self.me]
        utilities = [r.utility for r in shared.values() if r.utility is not None]
        return RoundView(
            round_id=round_id, started_at=rec.started_at, finished_at=rec.finished_at,
            shared=len(shared), bytes_sent=sum(r.nbytes for r in shared.values()),
            votes_received=sum(not v.late for v in votes), late_votes=sum(v.late for v in votes),
            feedback_received=len({f.cid for f in feedback if f.reporter != self.me}),
            recovered=len({f.cid for f in feedback if f.reporter == self.me}),
            mean_utility=sum(utilities) / len(utilities) if utilities else None,
            accuracy=rec.accuracy, ranker_trained=rec.ranker_trained,
            complete=len(utilities) == len(shared))
