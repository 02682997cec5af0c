"""The relay desk with the network injected: each robot votes once per image, the state moves
to a peer that has not voted, loops and duplicates end cleanly, an unreachable or vanished peer
is skipped, and the hop limit and the deadline end the chain in exactly one report."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import trio
import trio.testing

from peerdata.node.relay import RelayDesk, to_state
from peerdata.round import candidate_order, path_order
from peerdata.wire.messages import OfferItem

ORIGIN = "Q" * 46
PEERS = [c * 46 for c in "ABCDE"]


def state(cid: int = 1, voters: tuple[str, ...] = (), novel: int = 0, hops: int = 0
          ) -> OfferItem:
    return OfferItem(cid=bytes([cid]) * 32, size=10, has_label=True, origin=ORIGIN,
                     origin_round=1, novel_votes=novel, voters=voters, hops=hops)


class Fakes:
    """A tiny network: `alive` peers take a state; reports are collected."""

    def __init__(self, alive: Sequence[str], novel: bool = True, stall: bool = False) -> None:
        self.alive = set(alive)
        self.novel, self.stall = novel, stall
        self.forwarded: list[tuple[str, OfferItem]] = []
        self.offers: list[tuple[str, int]] = []  # (peer, states in the offer)
        self.reports: list[OfferItem] = []
        self.report_calls = 0
        self.votes = 0

    async def vote(self, items: Sequence[OfferItem]) -> list[tuple[bool, float]]:
        await trio.lowlevel.checkpoint()
        self.votes += len(items)
        return [(self.novel, 1.0)] * len(items)

    def candidates(self) -> list[str]:
        return [*PEERS, ORIGIN]

    async def forward(self, peer: str, items: Sequence[OfferItem]) -> bool:
        if self.stall:
            await trio.sleep_forever()
        await trio.lowlevel.checkpoint()
        self.offers.append((peer, len(items)))
        if peer not in self.alive:
            return False
        self.forwarded.extend((peer, item) for item in items)
        return True

    async def report(self, items: Sequence[OfferItem]) -> None:
        await trio.lowlevel.checkpoint()
        self.report_calls += 1
        self.reports.extend(items)

    def desk(self, me: str, max_hops: int = 8, deadline_s: float = 5.0) -> RelayDesk:
        return RelayDesk(me, max_hops=max_hops, deadline_s=deadline_s, vote=self.vote,
                         candidates=self.candidates, forward=self.forward, report=self.report)


def test_candidates_exclude_voters_origin_and_me() -> None:
    item = state(voters=(PEERS[0], PEERS[1]))
    order = candidate_order(to_state(item), [*PEERS, ORIGIN, PEERS[2]], PEERS[2], 8)
    assert sorted(order) == sorted(PEERS[3:])
    # one origin's images of a round share one path (they travel as one batch) ...
    orders = {tuple(candidate_order(to_state(state(cid=c)), PEERS, "me", 8)) for c in range(20)}
    assert len(orders) == 1
    # ... and different origins' rounds take different paths (the load spreads)
    paths = {tuple(path_order(o, r, PEERS)) for o in ("x", "y", "z") for r in range(1, 8)}
    assert len(paths) > 5


async def test_vote_then_relay_to_a_peer_that_has_not_voted() -> None:
    with trio.fail_after(10):
        fakes = Fakes(alive=PEERS)
        desk = fakes.desk(PEERS[0])
        [res] = await desk.handle([state(voters=(PEERS[1],), novel=1, hops=1)])
        assert res.outcome == "relayed" and res.novel is True
        peer, sent = fakes.forwarded[0]
        assert peer not in (PEERS[0], PEERS[1], ORIGIN)
        assert sent.voters == (PEERS[1], PEERS[0]) and sent.novel_votes == 2 and sent.hops == 2


async def test_whole_chain_visits_every_peer_once_and_reports_once() -> None:
    with trio.fail_after(10):
        fakes = Fakes(alive=PEERS, novel=False)
        desks = {p: fakes.desk(p) for p in PEERS}
        item, holder = state(), PEERS[0]
        for _ in range(len(PEERS) + 2):
            [res] = await desks[holder].handle([item])
            if res.outcome == "reported":
                break
            holder, item = fakes.forwarded[-1]
        assert len(fakes.reports) == 1 and fakes.votes == len(PEERS)
        assert sorted(fakes.reports[0].voters) == sorted(PEERS)
        assert fakes.reports[0].novel_votes == 0


async def test_duplicates_and_loops() -> None:
    with trio.fail_after(10):
        fakes = Fakes(alive=PEERS)
        desk = fakes.desk(PEERS[0])
        first, again = await desk.handle([state(), state()])  # the same state twice at once
        assert (first.outcome, again.outcome) == ("relayed", "duplicate")
        [late_copy] = await desk.handle([state()])
        assert late_copy.outcome == "duplicate" and fakes.votes == 1
        # the state came back to a robot that already voted on it: the loop ends in a report
        [loop] = await desk.handle([state(voters=(PEERS[0], PEERS[1]), novel=2)])
        assert loop.outcome == "reported" and fakes.reports[-1].voters == (PEERS[0], PEERS[1])
        [own] = await fakes.desk(ORIGIN).handle([state(cid=9)])
        assert own.outcome == "own" and fakes.votes == 1


async def test_a_peer_that_left_is_skipped() -> None:
    with trio.fail_after(10):
        fakes = Fakes(alive=[PEERS[4]])  # A..D have left the swarm
        [res] = await fakes.desk(PEERS[0]).handle([state()])
        assert res.outcome == "relayed" and res.next_peer == PEERS[4]
        nobody = Fakes(alive=[])
        [res] = await nobody.desk(PEERS[0]).handle([state()])
        assert res.outcome == "reported" and nobody.reports[0].voters == (PEERS[0],)


async def test_hop_limit_ends_the_chain() -> None:
    with trio.fail_after(10):
        fakes = Fakes(alive=PEERS)
        [res] = await fakes.desk(PEERS[0], max_hops=2).handle([state(hops=2)])
        assert res.outcome == "reported" and not fakes.forwarded


async def test_deadline_ends_a_stalled_relay(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(60):
        fakes = Fakes(alive=PEERS, stall=True)  # every next peer hangs
        start = trio.current_time()
        [res] = await fakes.desk(PEERS[0], deadline_s=5.0).handle([state()])
        assert res.outcome == "reported" and trio.current_time() - start == 5.0
        assert replace(fakes.reports[0], hops=0).voters == (PEERS[0],)


async def test_a_batch_leaves_in_one_offer_per_peer_and_moves_on_together() -> None:
    with trio.fail_after(10):
        fakes = Fakes(alive=PEERS[2:])  # the first peer on the path may be gone
        batch = [state(cid=c, voters=(PEERS[1],), novel=1, hops=1) for c in range(1, 11)]
        results = await fakes.desk(PEERS[0]).handle(batch)
        assert {r.outcome for r in results} == {"relayed"} and fakes.votes == 10
        assert len({r.next_peer for r in results}) == 1  # the whole batch, one next peer
        # one offer per peer tried: a refused peer costs one offer, not ten
        assert all(n == 10 for _, n in fakes.offers)
        assert len(fakes.offers) == len({p for p, _ in fakes.offers})



async def test_chains_ending_together_are_reported_in_one_call() -> None:
    with trio.fail_after(10):
        fakes = Fakes(alive=PEERS)
        batch = [state(cid=c, voters=(PEERS[1],), novel=1, hops=1) for c in range(1, 5)]
        results = await fakes.desk(PEERS[0], max_hops=2).handle(batch)
        assert [r.outcome for r in results] == ["reported"] * 4
        assert fakes.report_calls == 1 and len(fakes.reports) == 4
        assert {r.cid for r in fakes.reports} == {b.cid for b in batch}
        assert all(r.voters == (PEERS[1], PEERS[0]) for r in fakes.reports)
