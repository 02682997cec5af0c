"""The relay rule at one robot, as a state machine with no I/O (h11 style).

Rule: one image's vote state (origin, cid, round) is voted on at most once per robot: the first
arrival votes and passes the state on; a later arrival of the same state is a duplicate. The
state never goes to a peer in `voters` or to the origin, and it ends in exactly one `Report`,
made by whoever cannot pass it on: no candidate left, `max_hops` reached, `deadline_s` spent
trying, or the state came back to a voter (a loop).

Batches and parallel bounded chains: every image an origin shares in a round follows the
(origin, round)'s own permutation of the peers (`path_order`: a hash of origin, round and
peer), cut into blocks of `max_hops` peers; each block is one *chain* (`chain_paths`). The
origin offers its round's batch to the head of each of its first `chains` blocks at once (one
offer per chain), and each voter passes the whole batch on, in one offer, to the next peer of
its own block: the chains run in parallel over disjoint voters, each at most `max_hops` hops
(the origin's offer being the first), so an image's vote latency is O(max_hops) and its sample
holds at most `chains * max_hops` voters, whatever the fleet's size; relay and vote traffic per
robot is O(sample), not O(fleet). A fleet of at most `max_hops + 1` robots has one chain
through every peer. Different origins and rounds take different paths, which spreads the load.
A robot finds its block in its own view of the fleet (the peers it is connected to, and
itself); where views differ (churn) a chain can reach a robot that voted on the image in
another chain: that arrival is `crossed` and, like a duplicate, goes no further (the origin
recovers that chain's votes at the deadline).

Events in: `arrive`, `voted`, `forward_done`. Actions out: `NeedVote`, `Forward`, `Report`.
Time is an argument; the driver (daemon or simulator) performs the actions.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

SEEN_STATES = 100_000  # vote states remembered for duplicate detection; oldest forgotten first

Key = tuple[str, bytes, int]


@dataclass(frozen=True)
class VoteState:
    """The utility counter travelling with one shared image."""

    origin: str
    cid: bytes
    round_id: int
    novel_votes: int = 0
    voters: tuple[str, ...] = ()
    hops: int = 0

    @property
    def key(self) -> Key:
        return (self.origin, self.cid, self.round_id)

    @property
    def utility(self) -> float:
        """Fraction of voters so far that found the image novel (0.0 before any vote)."""
        return self.novel_votes / len(self.voters) if self.voters else 0.0


@dataclass(frozen=True)
class NeedVote:
    """Vote on these states (my OoD verdict), keep the images, then call `voted`."""

    states: tuple[VoteState, ...]


@dataclass(frozen=True)
class Forward:
    """Offer `state` to `peer`; call `forward_done` with whether it took it (give up at
    `deadline`, the driver's clock)."""

    peer: str
    state: VoteState
    deadline: float


@dataclass(frozen=True)
class Report:
    """The chain ends here: send `state` to its origin as signed Feedback."""

    state: VoteState


Action = NeedVote | Forward | Report


def path_order(origin: str, round_id: int, peers: Sequence[str]) -> list[str]:
    """The path of `origin`'s images of `round_id` through `peers`: a permutation of the peers
    (without the origin) that is the same at every robot and differs per origin and round."""
    head = f"{origin}\x00{round_id}\x00".encode()
    return sorted(dict.fromkeys(p for p in peers if p != origin),
                  key=lambda p: hashlib.sha256(head + p.encode()).digest())


def chain_paths(origin: str, round_id: int, peers: Sequence[str], hops: int, chains: int
                ) -> list[list[str]]:
    """The chains of `origin`'s round: its path (`path_order`) cut into blocks of `hops` peers,
    the first `chains` of them. Each block is one chain's voters in order: the origin offers
    to its first peer (then the next, if that one fails)."""
    order = path_order(origin, round_id, peers)
    return [order[i:i + hops] for i in range(0, min(len(order), hops * chains), hops)]


def candidate_order(state: VoteState, peers: Sequence[str], me: str, hops: int) -> list[str]:
    """Peers that may vote next: my chain (my block of `hops` peers on the state's path, as I
    see the fleet: `peers` and me) without me and the state's voters."""
    order = path_order(state.origin, state.round_id, [*peers, me])
    start = order.index(me) // hops * hops if me in order else 0
    return [p for p in order[start:start + hops] if p != me and p not in state.voters]


def after_vote(state: VoteState, me: str, novel: bool) -> VoteState:
    """The state once `me` voted: one more voter, one more novel vote if novel."""
    return replace(state, novel_votes=state.novel_votes + int(novel), voters=(*state.voters, me))


@dataclass
class _Passing:
    state: VoteState  # after my vote
    candidates: list[str]
    deadline: float
    tried: int = 0


@dataclass
class RelayCore:
    """Vote states arriving at robot `me` (see the module rule)."""

    me: str
    max_hops: int
    deadline_s: float
    _seen: OrderedDict[Key, str] = field(default_factory=OrderedDict)  # -> its chain's head
    _passing: dict[Key, _Passing] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=lambda: {
        "voted": 0, "relayed": 0, "reported": 0, "duplicates": 0, "crossed": 0, "loops": 0,
        "own": 0})

    def seen(self, state: VoteState) -> bool:
        return state.key in self._seen

    def arrive(self, states: Sequence[VoteState]) -> tuple[list[str], list[Action]]:
        """States arrived (a batch). Returns each one's outcome (`vote`, `own`, `duplicate`,
        `crossed` (I voted on the image in another chain), `loop`) and the actions: one
        `NeedVote` for the new ones, a `Report` per loop."""
        outcomes: list[str] = []
        to_vote: list[VoteState] = []
        actions: list[Action] = []
        for st in states:
            if st.origin == self.me:
                self.counts["own"] += 1
                outcomes.append("own")
            elif self.me in st.voters:
                self.counts["loops"] += 1
                self.counts["reported"] += 1
                outcomes.append("loop")
                actions.append(Report(st))
            elif st.key in self._seen:
                crossed = self._seen[st.key] != _head(st, self.me)
                self.counts["crossed" if crossed else "duplicates"] += 1
                outcomes.append("crossed" if crossed else "duplicate")
            else:
                self._seen[st.key] = _head(st, self.me)  # before the vote: a copy is a duplicate
                while len(self._seen) > SEEN_STATES:
                    self._seen.popitem(last=False)
                outcomes.append("vote")
                to_vote.append(st)
        if to_vote:
            actions.insert(0, NeedVote(tuple(to_vote)))
        return outcomes, actions

    def voted(self, state: VoteState, novel: bool, peers: Sequence[str], now: float) -> Action:
        """My verdict on `state`; `peers` are those connected now. The first pass-on step."""
        self.counts["voted"] += 1
        mine = after_vote(state, self.me, novel)
        if mine.hops + 1 >= self.max_hops:  # it came `hops + 1` hops (the offer is the first)
            return self._report(mine)
        passing = _Passing(mine, candidate_order(mine, peers, self.me, self.max_hops),
                           now + self.deadline_s)
        self._passing[mine.key] = passing
        return self._next(passing, now)

    def forward_done(self, key: Key, ok: bool, now: float) -> Action | None:
        """The last `Forward` of this state was taken (`ok`) or not; None when done."""
        passing = self._passing.get(key)
        if passing is None:
            return None
        if ok:
            del self._passing[key]
            self.counts["relayed"] += 1
            return None
        return self._next(passing, now)

    def peer_gone(self, peer: str) -> None:
        """A peer left: never try it for states still being passed on."""
        for passing in self._passing.values():
            rest = passing.candidates[passing.tried:]
            if peer in rest:
                rest.remove(peer)
                passing.candidates[passing.tried:] = rest

    def pending(self) -> int:
        """States still being passed on."""
        return len(self._passing)

    def _next(self, passing: _Passing, now: float) -> Action:
        if now < passing.deadline and passing.tried < len(passing.candidates):
            peer = passing.candidates[passing.tried]
            passing.tried += 1
            return Forward(peer, replace(passing.state, hops=passing.state.hops + 1),
                           passing.deadline)
        self._passing.pop(passing.state.key, None)
        return self._report(passing.state)

    def _report(self, state: VoteState) -> Report:
        self.counts["reported"] += 1
        return Report(state)


def _head(state: VoteState, me: str) -> str:
    """The first voter of the state's chain (me, when the origin offered it to me)."""
    return state.voters[0] if state.voters else me
