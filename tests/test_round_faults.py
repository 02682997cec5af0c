"""Bad input and faults in a round, on the in-memory network under MockClock: a bad signature,
a vote on an image never shared, a replayed feedback message, a late vote, a peer that vanishes
mid-round. Each bad message is refused with a logged reason; the round still finishes by its
deadline; nothing already stored is lost."""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack

import pytest
import trio
import trio.testing
from round_support import EPOCH, Robot, addr_of, fleet, images, mixed, round_config

from peerdata.errors import RemoteProtocolError, TransportError
from peerdata.identity import Identity
from peerdata.node.receiver import REPORT_PROTOCOL, REPORTS_PROTOCOL
from peerdata.testing.memory_network import MemoryNetwork, MemoryTransport
from peerdata.wire.codec import encode
from peerdata.wire.messages import Reports, Vote
from peerdata.wire.signing import sign_feedback, sign_vote
from peerdata.wire.versions import VOTES_TOPIC

DEADLINE = 20.0


def logged(caplog: pytest.LogCaptureFixture, name: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if f"event={name}" in r.getMessage()]


async def _round(robots: list[Robot], seed: int) -> list[int]:
    for i, r in enumerate(robots):
        await r.service.observer.observe(mixed({"bars": 30, "rings": 10}, seed + i))
    return [(await r.service.origin.round_now("gu")).round_id for r in robots]


async def _bootstrapped(stack: AsyncExitStack, network: MemoryNetwork, n: int) -> list[Robot]:
    robots = await fleet(stack, network, n, rounds=round_config(vote_deadline_s=DEADLINE))
    for i, r in enumerate(robots):
        await r.service.observer.observe(images("bars", 60, 70 + i), bootstrap=True, seed=i)
    return robots


async def _two_robots_and_a_stranger(
    stack: AsyncExitStack, network: MemoryNetwork
) -> tuple[Robot, Robot, Identity, MemoryTransport]:
    """Robots a and b, bootstrapped, and mallory's transport connected to a."""
    a, b = await _bootstrapped(stack, network, 2)
    mallory = Identity.generate()
    m: MemoryTransport = await stack.enter_async_context(network.open_transport(mallory.peer_id))
    await m.connect(addr_of(a.node.peer_id))
    return a, b, mallory, m


async def test_bad_votes_and_replayed_feedback_are_refused(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="peerdata")
    with trio.fail_after(600):
        network = MemoryNetwork()
        async with AsyncExitStack() as stack:
            a, b, mallory, m = await _two_robots_and_a_stranger(stack, network)
            rid, _ = await _round([a, b], 1)
            view = await a.service.origin.wait_round(rid, 60)
            assert view.complete and view.feedback_received == view.shared > 0
            shared = [s.cid for s in a.store.list_shared(rid)]
            utilities = {s.cid: s.utility for s in a.store.list_shared(rid)}
            now = EPOCH + trio.current_time()
            me = a.node.peer_id

            # 1. a vote with a bad signature
            good = sign_vote(mallory, origin=me, cid=shared[0], round_id=rid, novel=True,
                             score=1.0, timestamp=now)
            forged = Vote(**{**good.__dict__, "signature": b"\x01" * 64})
            await m.publish(VOTES_TOPIC, encode(forged))
            # 2. a vote on an image that was never shared (so never received)
            await m.publish(VOTES_TOPIC, encode(sign_vote(
                mallory, origin=me, cid=b"\x07" * 32, round_id=rid, novel=True, score=1.0,
                timestamp=now)))
            # (the forged one is refused by the gossip validator: never delivered, never
            # forwarded; the other by the round logic)
            await a.node.wait_until(lambda _s: len(logged(caplog, "vote_rejected")) == 1
                                    and len(logged(caplog, "gossip_rejected")) == 1)
            reasons = " ".join(logged(caplog, "vote_rejected") + logged(caplog, "gossip_rejected"))
            assert "signature" in reasons and "never shared" in reasons
            assert mallory.peer_id in reasons
            assert not [v for v in a.store.list_votes() if v.voter == mallory.peer_id]

            # 3. feedback: the first valid one on an image wins. Mallory's later feedback on
            # an image b already reported is ignored (acknowledged, logged, not recorded); a
            # copy of b's recorded feedback sent again by b is acknowledged, not counted again;
            # feedback signed by b that arrives on mallory's link is refused, the link dropped
            await m.publish(VOTES_TOPIC, encode(sign_vote(
                mallory, origin=me, cid=shared[1], round_id=rid, novel=True, score=1.0,
                timestamp=now)))
            fb = encode(sign_feedback(mallory, origin=me, cid=shared[1], round_id=rid,
                                      novel_votes=0, voters=(mallory.peer_id,), timestamp=now))
            await m.request(me, REPORT_PROTOCOL, fb)
            assert any(mallory.peer_id in line and "first wins" in line
                       for line in logged(caplog, "feedback_ignored"))
            assert not [f for f in a.store.list_feedback(rid) if f.reporter == mallory.peer_id]
            [b_fb] = [f for f in a.store.list_feedback(rid) if f.cid == shared[1]]
            again = sign_feedback(b.node.identity, origin=me, cid=shared[1], round_id=rid,
                                  novel_votes=b_fb.novel_votes, voters=b_fb.voters, timestamp=now)
            await b.node.transport.request(me, REPORT_PROTOCOL, encode(again))
            assert any(b.node.peer_id in line and "not counted again" in line
                       for line in logged(caplog, "feedback_duplicate"))
            assert len([f for f in a.store.list_feedback(rid) if f.cid == shared[1]]) == 1
            # unknown image: ignored and not punished; the same message replayed is refused by
            # the replay guard and the link dropped
            bogus = encode(sign_feedback(mallory, origin=me, cid=b"\x09" * 32, round_id=rid,
                                         novel_votes=0, voters=(mallory.peer_id,),
                                         timestamp=now))
            await m.request(me, REPORT_PROTOCOL, bogus)
            assert any("did not share" in line and mallory.peer_id in line
                       for line in logged(caplog, "feedback_ignored"))
            with pytest.raises((RemoteProtocolError, TransportError)):
                await m.request(me, REPORT_PROTOCOL, bogus)
            await trio.sleep(a.node.config.net.reconnect_max_s)  # MockClock: block expires
            forged = encode(sign_feedback(b.node.identity, origin=me, cid=shared[2],
                                          round_id=rid, novel_votes=1, voters=(b.node.peer_id,),
                                          timestamp=now))
            with pytest.raises((RemoteProtocolError, TransportError)):
                await m.request(me, REPORT_PROTOCOL, forged)
            dropped = logged(caplog, "link_dropped")
            assert any("replayed nonce" in line and mallory.peer_id in line for line in dropped)
            assert any("not the peer of the link" in line and mallory.peer_id in line
                       for line in dropped)
            assert len(dropped) == 2

            # 4. a late vote (after the round's deadline): stored, flagged, not counted
            await a.node.wait_until(lambda _s: a.store.get_round(rid).finished_at is not None)
            # cross-check at the deadline: b's feedback agrees with b's own signed votes, and
            # mallory's ignored feedback is not judged at all
            assert logged(caplog, "feedback_mismatch") == []
            finished = await a.service.origin.wait_round(rid, 1)
            other = trio.current_time()
            late_voter = Identity.generate()
            lv: MemoryTransport = await stack.enter_async_context(
                network.open_transport(late_voter.peer_id))
            await lv.connect(addr_of(me))
            await lv.publish(VOTES_TOPIC, encode(sign_vote(
                late_voter, origin=me, cid=shared[2], round_id=rid, novel=True, score=1.0,
                timestamp=EPOCH + other)))
            await a.node.wait_until(lambda _s: any(
                v.voter == late_voter.peer_id for v in a.store.list_votes()))
            [late] = [v for v in a.store.list_votes() if v.voter == late_voter.peer_id]
            assert late.late
            after = await a.service.origin.wait_round(rid, 1)
            # (mallory's vote of step 3 may itself have come after the deadline: under the
            # autojump clock virtual time runs on while threads work, so count from `finished`)
            assert after.late_votes == finished.late_votes + 1
            assert after.votes_received == finished.votes_received
            # nothing else changed: every honest utility is still there
            for s in a.store.list_shared(rid):
                if s.cid != shared[1]:
                    assert s.utility == utilities[s.cid]


async def test_reports_are_judged_in_order_and_a_bad_item_drops_the_link(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="peerdata")
    with trio.fail_after(600):
        network = MemoryNetwork()
        async with AsyncExitStack() as stack:
            a, b, mallory, m = await _two_robots_and_a_stranger(stack, network)
            rid, _ = await _round([a, b], 3)
            await a.service.origin.wait_round(rid, 60)
            shared = [s.cid for s in a.store.list_shared(rid)]
            me, now = a.node.peer_id, EPOCH + trio.current_time()

            def vote(cid: bytes) -> Vote:
                return sign_vote(mallory, origin=me, cid=cid, round_id=rid, novel=True,
                                 score=1.0, timestamp=now)

            # the second vote is on an image never shared: the first stays taken, the third
            # is never judged, and the link is dropped as for a single bad report
            batch = Reports(origin=me, votes=(vote(shared[0]), vote(b"\x07" * 32),
                                              vote(shared[2])), feedback=())
            with pytest.raises((RemoteProtocolError, TransportError)):
                await m.request(me, REPORTS_PROTOCOL, encode(batch))
            mine = {v.cid for v in a.store.list_votes() if v.voter == mallory.peer_id}
            assert mine == {shared[0]}
            assert any("never shared" in line and mallory.peer_id in line
                       for line in logged(caplog, "link_dropped"))


async def test_peer_vanishing_mid_round(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(900):
        network = MemoryNetwork()
        async with AsyncExitStack() as stack:
            robots = await _bootstrapped(stack, network, 3)
            rids = await _round(robots, 5)
            network.kill(robots[2].node.peer_id)  # gone before it could vote or pass anything on
            for r, rid in zip(robots[:2], rids[:2], strict=True):
                view = await r.service.origin.wait_round(rid, DEADLINE * 3)
                assert view.complete or view.finished_at is not None
                shared = r.store.list_shared(rid)
                assert len(shared) == view.shared > 0  # nothing recorded was lost
            # the two survivors go on: a full round between them completes
            rids = await _round(robots[:2], 9)
            for r, rid in zip(robots[:2], rids, strict=True):
                view = await r.service.origin.wait_round(rid, DEADLINE * 3)
                assert view.complete and view.feedback_received == view.shared
