"""The daemon's driver of the origin core: signed Feedback and Votes about our own images.

Rule: `take_feedback`/`take_vote` are the one place a received Feedback or Vote is judged. The
driver checks what needs keys and clocks (addressed to us, signature, a retransmission of what we
recorded is acknowledged and not counted, replay guard); every round rule after that is
`peerdata.round.OriginCore`'s, and what it accepts is written to the store. A verdict of
`rejected` raises RemoteProtocolError with the reason (the caller logs it with the sender's peer
ID); `ignored` is logged, never punished. Blocking (store): called through the node's offload.

Reputation (`[trust] reputation`): the core's `Reputation` sees every verified member vote the
desk meets: votes on our images as they are counted, and every other vote (another origin's
image on gossip, and our own votes) through `witness`; it settles at each of our deadlines and
its history is written to the store's meta record `reputation` (JSON), read back at start-up.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from peerdata.errors import RemoteProtocolError, SignatureError
from peerdata.node.delivery import OFFER, pending_round
from peerdata.node.logs import event
from peerdata.round import FeedbackFact, Membership, OriginCore, VoteFact, everyone
from peerdata.round.reputation import Reputation
from peerdata.store import FeedbackRecord, Store, VoteRecord
from peerdata.wire.messages import Feedback, Vote
from peerdata.wire.replay import ReplayGuard
from peerdata.wire.signing import verify_feedback, verify_vote

log = logging.getLogger("peerdata.node.feedback")

REPUTATION_KEY = "reputation"  # the store's meta record holding the reputation's history


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
    complete: bool  # every image has a utility and every chain it went out on reported


def vote_window_s(deadline_s: float) -> float:
    """How old a signed Vote or Feedback may be and still be taken (the replay window)."""
    return max(300.0, 4 * deadline_s)


class OriginDesk:
    """Judges Feedback and Votes about our own shared images (see the module rule)."""

    def __init__(self, me: str, store: Store, guard: ReplayGuard, deadline_s: float,
                 wall_clock: Callable[[], float], is_member: Membership = everyone,
                 reputation: bool = False) -> None:
        self.me, self.store, self.guard = me, store, guard
        self.wall_clock = wall_clock
        rep = Reputation() if reputation else None
        if rep is not None:
            _load_reputation(store, rep)
        self.core = OriginCore(me, deadline_s, is_member, rep)
        self._loaded: set[int] = set()
        self._lock = threading.Lock()  # the core's reputation, between offload threads

    def weights(self) -> dict[str, dict[str, float]]:
        """Each voter the reputation knows: weight, kappa and evidence (comparisons, decayed);
        empty without a reputation."""
        rep = self.core.reputation
        if rep is None:
            return {}
        with self._lock:
            history = rep.history()
            return {p: {"weight": round(rep.weight(p), 4), "kappa": round(rep.kappa(p), 4),
                        "evidence": round(history[p][0], 2)} for p in sorted(history)}

    def gossip_score(self, peer: str) -> float:
        """The peer's score for GossipSub (net/gossip.py): its kappa once there is evidence
        about it, else 0 (neutral). Read without the lock: cheap, called on the event loop."""
        rep = self.core.reputation
        return 0.0 if rep is None or not rep.knows(peer) else rep.kappa(peer)

    def witness(self, vote: Vote) -> bool:
        """A vote on another origin's image (gossip, or one of our own): evidence for the
        reputation if its signature holds and it is fresh (the replay guard); never raises.
        Returns whether the reputation took it."""
        if self.core.reputation is None or vote.origin == self.me:
            return False
        now = self.wall_clock()
        try:
            verify_vote(vote)
            self.guard.check(vote.voter, vote.nonce, vote.timestamp, now)
        except (SignatureError, RemoteProtocolError):
            return False
        with self._lock:
            return self.core.witness_vote(
                VoteFact(vote.cid, vote.round_id, vote.voter, vote.novel, vote.score), now)

    @property
    def counts(self) -> dict[str, int]:
        return self.core.counts

    def _sync(self, round_id: int) -> None:
        """Give the core what the store holds about a round (shared images, and after a
        restart the votes and feedback judged before)."""
        core, store = self.core, self.store
        rec = store.get_round(round_id)
        if rec is not None:
            core.start_round(round_id, rec.started_at)
        for r in store.list_shared(round_id):  # one row per chain: its head took our offer
            core.shared(r.cid, round_id, r.peer_id)
        for p in store.list_outbox(OFFER):  # selected, on its way out (or after a restart)
            cid, rid = pending_round(p)
            if rid == round_id:
                core.shared(cid, round_id)
        if round_id in self._loaded:
            return
        self._loaded.add(round_id)
        for v in store.list_votes(round_id=round_id):
            if v.origin == self.me and v.voter != self.me:
                core.load_vote(VoteFact(v.cid, round_id, v.voter, v.novel, v.score), v.late)
        for f in sorted(store.list_feedback(round_id), key=lambda f: f.received_at):
            if f.reporter != self.me:
                core.take_feedback(FeedbackFact(f.cid, round_id, f.reporter, f.voters,
                                                f.novel_votes), None)

    def take_feedback(self, fb: Feedback, link_peer: str) -> FeedbackRecord | None:
        """Store verified, fresh feedback on one of our images that arrived on `link_peer`'s
        link; None if not ours, a repeat, or ignored.

        Raises:
            RemoteProtocolError: bad signature, replay, or a feedback the core rejects.
        """
        if fb.origin != self.me:
            return None
        now = self.wall_clock()
        try:
            verify_feedback(fb)
        except SignatureError as exc:
            self.core.counts["feedback_rejected"] += 1
            raise RemoteProtocolError(f"feedback signature: {exc}") from None
        self._sync(fb.round_id)
        fact = FeedbackFact(fb.cid, fb.round_id, fb.reporter, fb.voters, fb.novel_votes)
        if link_peer == fb.reporter == self.core.feedback_reporter(fact):
            # a retransmission (our ack was lost) or a replay of one we hold: harmless
            self.core.counts["feedback_duplicate"] += 1
            event(log, logging.INFO, "feedback_duplicate", peer=fb.reporter,
                  cid=fb.cid.hex()[:16], reason="already recorded; not counted again")
            return None
        try:
            self.guard.check(fb.reporter, fb.nonce, fb.timestamp, now)
        except RemoteProtocolError:
            self.core.counts["feedback_rejected"] += 1
            raise
        verdict = self.core.take_feedback(fact, link_peer)
        if verdict.outcome == "rejected":
            raise RemoteProtocolError(f"feedback refused: {verdict.reason}")
        if not verdict.keep:
            event(log, logging.INFO, f"feedback_{verdict.outcome}", peer=link_peer,
                  cid=fb.cid.hex()[:16], reason=verdict.reason)
            return None
        record = FeedbackRecord(cid=fb.cid, round_id=fb.round_id, reporter=fb.reporter,
                                utility=fb.utility, voters=fb.voters,
                                novel_votes=fb.novel_votes, received_at=now)
        self.store.add_feedback(record)
        standing = self.core.standing(fb.cid, fb.round_id)  # over the image's chains so far
        assert standing is not None
        self.store.set_utility(fb.cid, *standing)
        self._reweigh(fb.cid, fb.round_id)
        return record

    def take_vote(self, vote: Vote) -> VoteRecord | None:
        """Store a verified vote on one of our images (late if after the deadline); None if
        not ours or a repeat.

        Raises:
            RemoteProtocolError: bad signature, replay, or a vote the core does not count.
        """
        if vote.origin != self.me:
            self.witness(vote)
            return None
        now = self.wall_clock()
        self._sync(vote.round_id)
        if self.core.has_vote(vote.cid, vote.round_id, vote.voter):
            # the same vote again (by gossip and by direct delivery, or our ack was lost):
            # acknowledged, not judged again, whatever its bytes (nothing changes)
            self.core.counts["votes_duplicate"] += 1
            return None
        try:
            try:
                verify_vote(vote)
            except SignatureError as exc:
                raise RemoteProtocolError(f"vote signature: {exc}") from None
            self.guard.check(vote.voter, vote.nonce, vote.timestamp, now)
        except RemoteProtocolError:
            self.core.counts["votes_rejected"] += 1
            raise
        self._sync(vote.round_id)
        with self._lock:
            verdict = self.core.take_vote(
                VoteFact(vote.cid, vote.round_id, vote.voter, vote.novel, vote.score), now)
        if verdict.outcome in ("rejected", "ignored"):
            raise RemoteProtocolError(verdict.reason)
        if not verdict.keep:
            return None
        record = VoteRecord(cid=vote.cid, origin=vote.origin, voter=vote.voter,
                            round_id=vote.round_id, novel=vote.novel, score=vote.score,
                            received_at=now, late=verdict.outcome == "late")
        if not self.store.add_vote(record):
            return None
        self._reweigh(vote.cid, vote.round_id)
        return record

    def _reweigh(self, cid: bytes, round_id: int) -> None:
        """With a reputation, as soon as the image's Feedback and all its listed voters' Votes
        are in: store the utility weighted by the reputation settled so far, so a learner
        that reads utilities before the deadline (`wait_round`, then `learn`) gets it; the
        deadline (`finish`) stores the final one."""
        if self.core.reputation is None:
            return
        with self._lock:
            u = self.core.provisional(cid, round_id)
        if u is not None:
            self.store.set_utility(cid, u.utility, len(u.voters), u.novel_votes)

    def reweigh_open(self) -> int:
        """Before the learner trains: store, for every image of an unfinished round whose
        Feedback and listed voters' Votes are in, the utility weighted with all the evidence
        in now (this round's votes included), so a learner never trains on an unweighted
        utility when weights exist. Returns how many utilities it stored."""
        if self.core.reputation is None:
            return 0
        with self._lock:
            utilities = self.core.provisional_open()
        for u in utilities:
            self.store.set_utility(u.cid, u.utility, len(u.voters), u.novel_votes)
        return len(utilities)

    def finish(self, round_id: int) -> tuple[int, int]:
        """After the deadline: store each image's final utility as the core decides it (from
        feedback, corrected from the signed votes, recovered from them, or weighted by the
        voters' reputation). Returns (recovered, mismatched)."""
        self._sync(round_id)
        now = self.wall_clock()
        rep = self.core.reputation
        with self._lock:
            utilities, mismatched = self.core.finish(round_id, now)
            history = None if rep is None else rep.history()
        if history is not None:
            _save_reputation(self.store, history)
        recovered = weighted = 0
        for u in utilities:
            if u.source == "feedback":
                continue  # stored when it arrived
            fb = self.core.utility(u.cid, round_id)
            if u.source == "corrected":
                event(log, logging.WARNING, "feedback_mismatch", peer=u.reporter,
                      cid=u.cid.hex()[:16], reported=None if fb is None else
                      round(fb * len(u.voters)), signed=u.novel_votes)
            elif u.source == "weighted" and fb is not None:
                weighted += 1  # its feedback is stored; only the utility changes
            else:
                recovered += 1
                self.store.add_feedback(FeedbackRecord(u.cid, round_id, self.me, u.utility,
                                                       u.voters, u.novel_votes, now))
            self.store.set_utility(u.cid, u.utility, len(u.voters), u.novel_votes)
        if recovered:
            event(log, logging.INFO, "utility_recovered", round_id=round_id, images=recovered)
        if history is not None and rep is not None:
            event(log, logging.INFO, "reputation", round_id=round_id, weighted=weighted,
                  weights=",".join(f"{p[-8:]}={rep.weight(p):.2f}" for p in sorted(history)))
        return recovered, mismatched

    def view(self, round_id: int) -> RoundView | None:
        """The round as it stands now (None if there is no such round)."""
        rec = self.store.get_round(round_id)
        if rec is None:
            return None
        rows = self.store.list_shared(round_id)
        shared = {r.cid: r for r in rows}
        feedback = self.store.list_feedback(round_id)
        chains = Counter(r.cid for r in rows)  # one shared row per chain
        reported = Counter(f.cid for f in feedback if f.reporter != self.me)
        recovered = {f.cid for f in feedback if f.reporter == self.me}
        votes = [v for v in self.store.list_votes(round_id=round_id)
                 if v.origin == self.me and v.voter != self.me]
        utilities = [r.utility for r in shared.values() if r.utility is not None]
        # with a reputation that weighs this image's voters unequally: its feedback is in but
        # not yet every listed voter's Vote, so its weighted utility is still to come
        waiting = 0
        rep = self.core.reputation
        if rep is not None and rec.finished_at is None:
            listed: dict[bytes, set[str]] = {}  # every chain's listed voters, per image
            for f in feedback:
                if f.reporter != self.me:
                    listed.setdefault(f.cid, set()).update(f.voters)
            with self._lock:  # the weights `utility` will use: open votes included
                waiting = sum(len({round(rep.live_weight(v), 9) for v in vs}) > 1
                              and not vs <= set(self.core.counted_votes(cid, round_id))
                              for cid, vs in listed.items())
        return RoundView(
            round_id=round_id, started_at=rec.started_at, finished_at=rec.finished_at,
            shared=len(shared), bytes_sent=sum(r.nbytes for r in shared.values()),
            votes_received=sum(not v.late for v in votes), late_votes=sum(v.late for v in votes),
            feedback_received=len(reported), recovered=len(recovered),
            mean_utility=sum(utilities) / len(utilities) if utilities else None,
            accuracy=rec.accuracy, ranker_trained=rec.ranker_trained,
            complete=len(utilities) == len(shared) and not waiting and all(
                reported[c] >= n or c in recovered for c, n in chains.items()))


def _load_reputation(store: Store, rep: Reputation) -> None:
    """The history kept by an earlier run (none, or unreadable: start afresh, with a warning)."""
    raw = store.get_meta(REPUTATION_KEY)
    if raw is None:
        return
    try:
        peers = json.loads(raw)["peers"]
        if not isinstance(peers, dict):
            raise TypeError("peers is not an object")
    except (ValueError, TypeError, KeyError) as exc:
        event(log, logging.WARNING, "reputation_unreadable", error=str(exc)[:200],
              action="starting from the prior")
        return
    rep.load(peers)


def _save_reputation(store: Store, history: dict[str, tuple[float, float, float, float]]
                     ) -> None:
    store.set_meta(REPUTATION_KEY, json.dumps(
        {"version": 1, "peers": {p: list(c) for p, c in history.items()}}, sort_keys=True))
