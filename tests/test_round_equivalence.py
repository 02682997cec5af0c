"""The same round, two drivers: daemons on the in-memory network (MockClock) and the in-process
simulator, fed the same events (the images each origin offers, each robot's verdicts), take the
same actions: the same first peers, the same votes in the same relay order, the same reporters,
feedback and utilities; for the gu, random and oracle policies."""

from __future__ import annotations

from contextlib import AsyncExitStack

import trio
import trio.testing
from round_support import Robot, fleet, images, mixed

from peerdata.round import Simulator, VoteState, chain_paths
from peerdata.testing.memory_network import MemoryNetwork

MIXES = [{"bars": 32, "spots": 8}, {"bars": 32, "rings": 8}, {"bars": 32, "spots": 8}]
NOVEL = [["spots"], ["rings"], ["spots"]]  # the oracle's ground truth: novel to some peer


def _offer_order(r: Robot, rid: int, peers: list[str]) -> list[bytes]:
    """The origin's offers, checking it offered every image to the core's chain heads."""
    by_peer: dict[str, list[bytes]] = {}
    for s in r.store.list_shared(rid):
        by_peer.setdefault(s.peer_id, []).append(s.cid)
    heads = [block[0] for block in chain_paths(r.node.peer_id, rid, peers, 8, 3)]
    assert len(heads) == 1 and list(by_peer) == heads  # three robots: one chain, as before
    return by_peer[heads[0]]


async def test_daemon_and_simulator_take_the_same_actions(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(900):
        async with AsyncExitStack() as stack:
            robots = await fleet(stack, MemoryNetwork(), 3)
            ids = [r.node.peer_id for r in robots]
            for i, r in enumerate(robots):
                await r.service.observer.observe(images("bars", 60, 30 + i), bootstrap=True, seed=i)
            for k, policy in enumerate(("gu", "random", "oracle")):
                for i, r in enumerate(robots):
                    await r.service.observer.observe(mixed(MIXES[i], 40 + 10 * k + i))
                starts = [await r.service.origin.round_now(
                    policy, NOVEL[i] if policy == "oracle" else None)
                    for i, r in enumerate(robots)]
                rid = starts[0].round_id
                assert all(s.round_id == rid and s.shared > 0 for s in starts)
                for r in robots:
                    assert (await r.service.origin.wait_round(rid, 60)).complete
                # the events: what each origin offered, and each voter's own recorded verdicts
                offers = {r.node.peer_id: _offer_order(r, rid, sorted(set(ids) - {r.node.peer_id}))
                          for r in robots}
                verdicts = {(v.voter, v.cid): v.novel for r in robots
                            for v in r.store.list_votes(round_id=rid) if v.voter == r.node.peer_id}
                sim = Simulator(ids, max_hops=8, seed=k)
                sim.round_id = rid - 1

                def vote(me: str, states: list[VoteState],
                         verdicts: dict[tuple[str, bytes], bool] = verdicts) -> list[bool]:
                    return [verdicts[(me, s.cid)] for s in states]

                result = sim.run_round(offers, vote)  # type: ignore[arg-type]
                sim_votes = {(e.robot, e.cid): e.novel for e in result.trace if e.kind == "vote"}
                assert sim_votes == verdicts
                for r in robots:
                    me = r.node.peer_id
                    daemon = {f.cid: (f.reporter, f.voters, f.novel_votes)
                              for f in r.store.list_feedback(rid)}
                    simulated = {u.cid: (u.reporter, u.voters, u.novel_votes)
                                 for u in result.utilities[me]}
                    assert daemon == simulated and len(daemon) == starts[ids.index(me)].shared
                    stored = {s.cid: s.utility for s in r.store.list_shared(rid)}
                    assert stored == {u.cid: u.utility for u in result.utilities[me]}
                    firsts = {s.cid: s.peer_id for s in r.store.list_shared(rid)}
                    assert firsts == {e.cid: e.peer for e in result.trace
                                      if e.kind == "offer" and e.robot == me}
                for r in robots:
                    await r.service.learn()
