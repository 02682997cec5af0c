"""Voting and relay at one receiver, with the network injected (as hivemind's `traverse`).

Rule: one image's vote state (origin, cid, origin_round) is voted on at most once per robot:
the first arrival votes and passes the state on; a later arrival of the same state is a
duplicate and only logged. The state never goes to a peer in `voters` or to the origin, and it
ends in exactly one report (Feedback), made by whoever cannot pass it on: no candidate left,
`max_hops` reached, `deadline_s` spent trying, or the state came back to a voter (a loop).
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace

import trio

from peerdata.node.logs import event
from peerdata.wire.messages import OfferItem

log = logging.getLogger("peerdata.node.relay")

SEEN_STATES = 100_000  # vote states remembered for duplicate detection; oldest forgotten first

Key = tuple[str, bytes, int]
VoteFn = Callable[[Sequence[OfferItem]], Awaitable[Sequence[tuple[bool, float]]]]
"""My OoD verdict (novel, score) per image (the images are in the store by now)."""
CandidatesFn = Callable[[], Sequence[str]]
"""Peers connected now."""
ForwardFn = Callable[[str, OfferItem], Awaitable[bool]]
"""Pass the state to a peer (offer, or relay if it holds the image); True if it took it."""
ReportFn = Callable[[OfferItem], Awaitable[None]]
"""Publish the final state as signed Feedback to the origin."""


@dataclass(frozen=True)
class HopResult:
    """What this robot did with one arriving vote state."""

    outcome: str  # relayed | reported | duplicate | own
    state: OfferItem  # after my vote (unchanged for duplicate/own/loop)
    novel: bool | None = None
    next_peer: str | None = None


def key_of(item: OfferItem) -> Key:
    return (item.origin, item.cid, item.origin_round)


def candidate_order(item: OfferItem, peers: Sequence[str], me: str) -> list[str]:
    """Peers that may vote next, in an order that differs per image (spreads the load)."""
    allowed = [p for p in peers if p != me and p != item.origin and p not in item.voters]
    return sorted(dict.fromkeys(allowed),
                  key=lambda p: hashlib.sha256(item.cid + p.encode()).digest())


def after_vote(item: OfferItem, me: str, novel: bool) -> OfferItem:
    """The state once `me` voted: one more voter, one more novel vote if novel."""
    return replace(item, novel_votes=item.novel_votes + int(novel), voters=(*item.voters, me))


class RelayDesk:
    """Handles vote states arriving at one robot (see the module rule)."""

    def __init__(self, me: str, *, max_hops: int, deadline_s: float, vote: VoteFn,
                 candidates: CandidatesFn, forward: ForwardFn, report: ReportFn) -> None:
        self.me, self.max_hops, self.deadline_s = me, max_hops, deadline_s
        self._vote, self._candidates = vote, candidates
        self._forward, self._report = forward, report
        self._seen: OrderedDict[Key, None] = OrderedDict()
        self.counts = {"voted": 0, "relayed": 0, "reported": 0, "duplicates": 0, "loops": 0}

    def seen(self, item: OfferItem) -> bool:
        return key_of(item) in self._seen

    def _remember(self, item: OfferItem) -> None:
        self._seen[key_of(item)] = None
        while len(self._seen) > SEEN_STATES:
            self._seen.popitem(last=False)

    async def handle(self, items: Sequence[OfferItem]) -> list[HopResult]:
        """Vote on a batch of arriving states at once, then pass each on (concurrently)."""
        results: dict[int, HopResult] = {}
        to_vote: list[int] = []
        loops: list[int] = []
        batch_keys: set[Key] = set()
        for i, item in enumerate(items):
            if item.origin == self.me:
                results[i] = HopResult("own", item)
            elif self.me in item.voters:
                self.counts["loops"] += 1
                event(log, logging.INFO, "relay_loop", origin=item.origin,
                      cid=item.cid.hex()[:16], voters=len(item.voters))
                loops.append(i)
            elif key_of(item) in self._seen or key_of(item) in batch_keys:
                self.counts["duplicates"] += 1
                event(log, logging.INFO, "relay_duplicate", origin=item.origin,
                      cid=item.cid.hex()[:16])
                results[i] = HopResult("duplicate", item)
            else:
                # remembered before the vote's await, so a concurrent arrival is a duplicate
                batch_keys.add(key_of(item))
                self._remember(item)
                to_vote.append(i)
        verdicts = await self._vote([items[i] for i in to_vote]) if to_vote else []
        for i, (novel, _score) in zip(to_vote, verdicts, strict=True):
            self.counts["voted"] += 1
            results[i] = HopResult("voted", after_vote(items[i], self.me, novel), novel)
        async with trio.open_nursery() as nursery:
            for i in loops:
                results[i] = HopResult("reported", items[i])
                nursery.start_soon(self._report, items[i])
            for i in to_vote:
                nursery.start_soon(self._pass_on, i, results)
        self.counts["reported"] += len(loops)
        return [results[i] for i in range(len(items))]

    async def _pass_on(self, i: int, results: dict[int, HopResult]) -> None:
        done = results[i]
        state = done.state
        if state.hops + 1 <= self.max_hops:
            with trio.move_on_after(self.deadline_s):
                for peer in candidate_order(state, self._candidates(), self.me):
                    if await self._forward(peer, replace(state, hops=state.hops + 1)):
                        self.counts["relayed"] += 1
                        results[i] = replace(done, outcome="relayed", next_peer=peer)
                        return
        self.counts["reported"] += 1
        results[i] = replace(done, outcome="reported")
        await self._report(state)
