"""Parallel bounded chains, two drivers: seven daemons on the in-memory network (MockClock) with
`round.max_hops = 2`, `round.chains = 3` send every image down three chains of two voters; the
in-process simulator, fed the same events, takes the same actions: the same chain heads, the
same reporters with the same voters, the same merged utilities."""

from __future__ import annotations

from collections import Counter
from contextlib import AsyncExitStack

import trio
import trio.testing
from round_support import fleet, images, mixed, round_config

from peerdata.round import Simulator, VoteState, chain_paths
from peerdata.testing.memory_network import MemoryNetwork

ROBOTS = 7
HOPS, CHAINS = 2, 3


async def test_daemons_run_three_chains_per_image_as_the_simulator_does(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(900):
        async with AsyncExitStack() as stack:
            robots = await fleet(stack, MemoryNetwork(), ROBOTS,
                                 rounds=round_config(max_hops=HOPS, chains=CHAINS))
            ids = [r.node.peer_id for r in robots]
            for i, r in enumerate(robots):
                await r.service.observer.observe(images("bars", 40, 30 + i), bootstrap=True, seed=i)
                await r.service.observer.observe(mixed({"bars": 12, "spots": 4}, 60 + i))
            starts = [await r.service.origin.round_now("random") for r in robots]
            rid = starts[0].round_id
            assert all(s.shared > 0 for s in starts)
            for r in robots:
                view = await r.service.origin.wait_round(rid, 60)
                assert view.complete and view.finished_at is None  # every chain reported
            offers: dict[str, list[bytes]] = {}
            for r in robots:
                me = r.node.peer_id
                heads = [b[0] for b in chain_paths(me, rid, sorted(set(ids) - {me}), HOPS,
                                                   CHAINS)]
                rows = r.store.list_shared(rid)
                assert len(heads) == CHAINS and Counter(s.peer_id for s in rows) == {
                    h: starts[ids.index(me)].shared for h in heads}  # each image on each chain
                offers[me] = [s.cid for s in rows if s.peer_id == heads[0]]
            verdicts = {(v.voter, v.cid): v.novel for r in robots
                        for v in r.store.list_votes(round_id=rid) if v.voter == r.node.peer_id}
            sim = Simulator(ids, max_hops=HOPS, chains=CHAINS, seed=1)
            sim.round_id = rid - 1

            def vote(me: str, states: list[VoteState]) -> list[bool]:
                return [verdicts[(me, s.cid)] for s in states]

            result = sim.run_round(offers, vote)  # type: ignore[arg-type]
            assert {(e.robot, e.cid): e.novel for e in result.trace if e.kind == "vote"} \
                == verdicts
            for r in robots:
                me = r.node.peer_id
                daemon = sorted((f.cid, f.reporter, f.voters, f.novel_votes)
                                for f in r.store.list_feedback(rid))
                simulated = sorted((e.cid, e.robot, e.voters, e.novel_votes)
                                   for e in result.trace if e.kind == "report" and e.peer == me)
                assert daemon == simulated
                assert len(daemon) == CHAINS * starts[ids.index(me)].shared
                assert all(len(voters) == HOPS for _, _, voters, _ in daemon)
                utilities = {u.cid: u for u in result.utilities[me]}
                for s in r.store.list_shared(rid):
                    u = utilities[s.cid]
                    assert u.source == "feedback" and len(set(u.voters)) == HOPS * CHAINS
                    assert s.utility == u.utility == sum(
                        verdicts[(v, s.cid)] for v in u.voters) / (HOPS * CHAINS)
