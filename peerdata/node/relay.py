"""The daemon's driver of the relay core: vote states arriving at one robot, with the network
injected (as hivemind's `traverse`).

Rule: every decision (vote once, duplicate, loop, next peer, hop limit, deadline, report) is
`peerdata.round.RelayCore`'s; this module only performs its actions: vote through `vote`, offer
the states to a peer through `forward` (all states going to one peer in one call, given up at
the earliest of their deadlines, trio's clock), send the reports that fall due together
through one `report` call.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace

import trio

from peerdata.node.logs import event
from peerdata.round import Forward, NeedVote, RelayCore, Report, VoteState
from peerdata.round.relay import Action
from peerdata.wire.messages import OfferItem

log = logging.getLogger("peerdata.node.relay")

VoteFn = Callable[[Sequence[OfferItem]], Awaitable[Sequence[tuple[bool, float]]]]
"""My OoD verdict (novel, score) per image (the images are in the store by now)."""
CandidatesFn = Callable[[], Sequence[str]]
"""Peers connected now."""
ForwardFn = Callable[[str, Sequence[OfferItem]], Awaitable[bool]]
"""Pass states to a peer in one offer; True if it took them."""
ReportFn = Callable[[Sequence[OfferItem]], Awaitable[None]]
"""Hand final states as signed Feedback to their origins (several at once)."""


@dataclass(frozen=True)
class HopResult:
    """What this robot did with one arriving vote state."""

    outcome: str  # relayed | reported | duplicate | crossed | own
    state: OfferItem  # after my vote (unchanged for duplicate/own/loop)
    novel: bool | None = None
    next_peer: str | None = None


def to_state(item: OfferItem) -> VoteState:
    return VoteState(item.origin, item.cid, item.origin_round, item.novel_votes, item.voters,
                     item.hops)


def to_item(state: VoteState, like: OfferItem) -> OfferItem:
    return replace(like, novel_votes=state.novel_votes, voters=state.voters, hops=state.hops)


class RelayDesk:
    """Performs the relay core's actions for robot `me` (see the module rule)."""

    def __init__(self, me: str, *, max_hops: int, deadline_s: float, vote: VoteFn,
                 candidates: CandidatesFn, forward: ForwardFn, report: ReportFn) -> None:
        self.me = me
        self.core = RelayCore(me, max_hops, deadline_s)
        self._vote, self._candidates = vote, candidates
        self._forward, self._report = forward, report

    @property
    def counts(self) -> dict[str, int]:
        return self.core.counts

    def seen(self, item: OfferItem) -> bool:
        return self.core.seen(to_state(item))

    async def handle(self, items: Sequence[OfferItem]) -> list[HopResult]:
        """Vote on a batch of arriving states at once, then pass them on: the states going to
        one peer (one origin's round follows one path) leave in one offer."""
        states = [to_state(i) for i in items]
        outcomes, actions = self.core.arrive(states)
        results: dict[int, HopResult] = {}
        for i, outcome in enumerate(outcomes):
            if outcome in ("own", "duplicate", "crossed"):
                results[i] = HopResult(outcome, items[i])
            elif outcome == "loop":
                results[i] = HopResult("reported", items[i])
            if outcome in ("duplicate", "crossed", "loop"):
                event(log, logging.INFO, f"relay_{outcome}", origin=items[i].origin,
                      cid=items[i].cid.hex()[:16], voters=len(items[i].voters))
        to_vote = [i for i, o in enumerate(outcomes) if o == "vote"]
        verdicts = await self._vote([items[i] for i in to_vote]) if to_vote else []
        async with trio.open_nursery() as nursery:
            ended = [to_item(a.state, _like(items, a)) for a in actions if isinstance(a, Report)]
            if ended:
                nursery.start_soon(self._report, ended)
            assert not to_vote or isinstance(actions[0], NeedVote)
            peers, now = self._candidates(), trio.current_time()
            steps: dict[int, Action | None] = {}
            novel: dict[int, bool] = {}
            for i, (verdict, _score) in zip(to_vote, verdicts, strict=True):
                novel[i] = bool(verdict)
                steps[i] = self.core.voted(states[i], novel[i], peers, now)
            self._dispatch(nursery, steps, items, novel, results)
        return [results[i] for i in range(len(items))]

    def _dispatch(self, nursery: trio.Nursery, steps: dict[int, Action | None],
                  items: Sequence[OfferItem], novel: dict[int, bool],
                  results: dict[int, HopResult]) -> None:
        """Start one offer per peer for the Forwards, and a report for each Report."""
        groups: dict[str, dict[int, Forward]] = {}
        ended: list[OfferItem] = []
        for i, step in steps.items():
            if isinstance(step, Forward):
                groups.setdefault(step.peer, {})[i] = step
            elif isinstance(step, Report):
                results[i] = HopResult("reported", to_item(step.state, items[i]), novel[i])
                ended.append(to_item(step.state, items[i]))
        if ended:
            nursery.start_soon(self._report, ended)
        for peer, group in groups.items():
            nursery.start_soon(self._pass_on, nursery, peer, group, items, novel, results)

    async def _pass_on(self, nursery: trio.Nursery, peer: str, group: dict[int, Forward],
                       items: Sequence[OfferItem], novel: dict[int, bool],
                       results: dict[int, HopResult]) -> None:
        ok = False
        with trio.move_on_at(min(f.deadline for f in group.values())):
            ok = await self._forward(peer, [to_item(f.state, items[i])
                                            for i, f in group.items()])
        now = trio.current_time()
        steps: dict[int, Action | None] = {}
        for i, step in group.items():
            if ok:
                results[i] = HopResult("relayed", to_item(replace(
                    step.state, hops=step.state.hops - 1), items[i]), novel[i], peer)
            steps[i] = self.core.forward_done(step.state.key, ok, now)
        self._dispatch(nursery, steps, items, novel, results)


def _like(items: Sequence[OfferItem], action: Report) -> OfferItem:
    return next(i for i in items if to_state(i).key == action.state.key)
