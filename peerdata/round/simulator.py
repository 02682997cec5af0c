"""The in-process driver: N robots' round cores, with every action delivered in process in a
seeded order. What `peerdata experiment` and the swarm comparison run.

Rule: the simulator only moves messages; every decision (first peer, relay order, hop limit,
which votes and feedback count, utilities) is made by the cores, exactly as in the daemon.
Verdicts and image intake come from injected callables, so this module has no torch and no I/O.
No simulated time passes unless a peer is gone, so deadlines only end chains that lose a peer.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from peerdata.config import RoundConfig
from peerdata.round.origin import FeedbackFact, Membership, OriginCore, Utility, VoteFact, everyone
from peerdata.round.relay import Forward, NeedVote, RelayCore, Report, VoteState, chain_paths
from peerdata.round.reputation import Reputation

VoteFn = Callable[[str, Sequence[VoteState]], Sequence[bool]]
"""Robot `name`'s verdict (novel?) on arriving states; it also keeps the labelled images."""


@dataclass(frozen=True)
class TraceEntry:
    """One action a core asked for: `offer` (origin -> first peer), `vote`, `forward`,
    `report`, `utility` (the origin's final decision)."""

    kind: str
    robot: str
    cid: bytes
    peer: str = ""
    novel: bool | None = None
    voters: tuple[str, ...] = ()
    novel_votes: int = 0
    utility: float | None = None


@dataclass
class _Msg:
    to: str
    kind: str  # offer | vote | feedback
    sender: str
    states: list[VoteState] = field(default_factory=list)
    vote: VoteFact | None = None
    feedback: FeedbackFact | None = None


@dataclass
class RoundResult:
    """What one simulated round decided: per origin, the final utilities; and the trace."""

    utilities: dict[str, list[Utility]]
    trace: list[TraceEntry]


class Simulator:
    """Robots `names` (all connected) running rounds through their cores."""

    def __init__(self, names: Sequence[str], *, max_hops: int = RoundConfig.max_hops,
                 chains: int = RoundConfig.chains, deadline_s: float = 30.0, seed: int = 0,
                 is_member: Membership = everyone, reputation: bool = False) -> None:
        """`max_hops`, `chains`: as `round.max_hops` and `round.chains` (the daemon's
        defaults); `reputation`: every origin keeps a `Reputation` fed by every vote (as gossip
        delivers them all) and weights its utilities by it."""
        self.names = list(names)
        self.max_hops, self.chains = max_hops, chains
        self.relays = {n: RelayCore(n, max_hops, deadline_s) for n in self.names}
        self.origins = {n: OriginCore(n, deadline_s, is_member,
                                      Reputation() if reputation else None)
                        for n in self.names}
        self.rng = random.Random(seed)
        self.gone: set[str] = set()
        self.round_id = 0

    def run_round(self, offers: Mapping[str, Sequence[bytes]], vote: VoteFn) -> RoundResult:
        """Every origin offers its cids (in order); messages are delivered in a seeded order
        until none is left; then every origin finishes the round."""
        self.round_id += 1
        rid = self.round_id
        trace: list[TraceEntry] = []
        queue: list[_Msg] = []
        for origin in self.names:
            cids = list(offers.get(origin, ()))
            if origin in self.gone or not cids:
                continue
            self.origins[origin].start_round(rid, 0.0)
            peers = self._peers_of(origin)
            by_peer: dict[str, list[VoteState]] = {}
            for block in chain_paths(origin, rid, peers, self.max_hops, self.chains):
                first = next((p for p in block if p not in self.gone), None)
                if first is None:
                    continue
                for cid in cids:  # the round's batch: one offer per chain
                    self.origins[origin].shared(cid, rid, first)
                    trace.append(TraceEntry("offer", origin, cid, first))
                    by_peer.setdefault(first, []).append(VoteState(origin, cid, rid))
            queue.extend(_Msg(p, "offer", origin, states) for p, states in by_peer.items())
        while queue:
            msg = queue.pop(self.rng.randrange(len(queue)))
            if msg.to in self.gone:
                continue
            queue.extend(self._deliver(msg, vote, trace))
        utilities = {}
        for origin in self.names:
            final, _ = self.origins[origin].finish(rid)
            utilities[origin] = final
            trace.extend(TraceEntry("utility", origin, u.cid, voters=u.voters,
                                    novel_votes=u.novel_votes, utility=u.utility) for u in final)
        return RoundResult(utilities, trace)

    def _peers_of(self, me: str) -> list[str]:
        return sorted(n for n in self.names if n != me and n not in self.gone)

    def _deliver(self, msg: _Msg, vote: VoteFn, trace: list[TraceEntry]) -> list[_Msg]:
        me = msg.to
        if msg.kind == "vote" and msg.vote is not None:
            self.origins[me].take_vote(msg.vote, 0.0)
            for other in self.names:  # the vote's gossip reaches every robot
                if other != me and other not in self.gone:
                    self.origins[other].witness_vote(msg.vote)
            return []
        if msg.kind == "feedback" and msg.feedback is not None:
            self.origins[me].take_feedback(msg.feedback, msg.sender)
            return []
        relay = self.relays[me]
        out: list[_Msg] = []
        _, actions = relay.arrive(msg.states)
        forwards: dict[str, list[VoteState]] = {}
        for action in actions:
            if isinstance(action, Report):
                out.append(self._report(me, action.state, trace))
                continue
            if not isinstance(action, NeedVote):
                continue
            verdicts = vote(me, action.states)
            for st, novel in zip(action.states, verdicts, strict=True):
                novel = bool(novel)
                trace.append(TraceEntry("vote", me, st.cid, st.origin, novel))
                out.append(_Msg(st.origin, "vote", me,
                                vote=VoteFact(st.cid, st.round_id, me, novel)))
                step = relay.voted(st, novel, self._peers_of(me), 0.0)
                while isinstance(step, Forward):
                    ok = step.peer not in self.gone
                    if ok:
                        trace.append(TraceEntry("forward", me, st.cid, step.peer))
                        forwards.setdefault(step.peer, []).append(step.state)
                    nxt = relay.forward_done(step.state.key, ok, 0.0)
                    if nxt is None:
                        break
                    step = nxt
                if isinstance(step, Report):
                    out.append(self._report(me, step.state, trace))
        out.extend(_Msg(p, "offer", me, states) for p, states in forwards.items())
        return out

    @staticmethod
    def _report(me: str, st: VoteState, trace: list[TraceEntry]) -> _Msg:
        trace.append(TraceEntry("report", me, st.cid, st.origin, voters=st.voters,
                                novel_votes=st.novel_votes))
        return _Msg(st.origin, "feedback", me,
                    feedback=FeedbackFact(st.cid, st.round_id, me, st.voters, st.novel_votes))
