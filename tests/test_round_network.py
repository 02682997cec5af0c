"""Rounds on the in-memory network under MockClock: every shared image is voted on by every
other robot once, feedback reaches its origin, rankers retrain, receivers keep the images."""

from __future__ import annotations

from contextlib import AsyncExitStack

import trio
import trio.testing
from round_support import fleet, images, mixed

from peerdata.testing.memory_network import MemoryNetwork

MIXES = [{"bars": 60}, {"bars": 48, "rings": 12}, {"bars": 48, "spots": 12}]


async def test_two_rounds_feedback_reaches_every_sender(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(600):
        async with AsyncExitStack() as stack:
            robots = await fleet(stack, MemoryNetwork(), 3)
            for i, r in enumerate(robots):
                await r.service.observer.observe(images("bars", 60, 50 + i), bootstrap=True, seed=i)
            for rnd in range(2):
                for i, r in enumerate(robots):
                    added, dups = await r.service.observer.observe(mixed(MIXES[i], 10 * rnd + i))
                    assert (added, dups) == (60, 0)
                starts = [await r.service.origin.round_now("gu") for r in robots]
                assert all(s.shared == 15 and s.dropped_by_privacy == 0 for s in starts)
                for r, s in zip(robots, starts, strict=True):
                    view = await r.service.origin.wait_round(s.round_id, 60)
                    assert view.complete and view.feedback_received == s.shared
                    assert view.recovered == 0
                    for rec in r.store.list_feedback(s.round_id):
                        assert len(rec.voters) == 2 and r.node.peer_id not in rec.voters
                for r in robots:  # each voter's signed Vote reaches the origin on gossip too
                    me, rid = r.node.peer_id, starts[0].round_id
                    await r.node.wait_until(lambda _s, me=me, rid=rid, r=r: sum(
                        v.origin == me for v in r.store.list_votes(round_id=rid)) == 30)
                for r in robots:
                    result, _ = await r.service.learn()
                    assert result.ranker_loss is not None and result.received_pending == 30
            for r in robots:
                assert r.service.host.statistics().ranker_fits == 2
                assert r.store.count_samples("received") == 60  # 15 from each other, 2 rounds
