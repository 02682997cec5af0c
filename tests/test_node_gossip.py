"""Gossip: valid votes reach `gossip_inbox`; anything else is refused, counted and logged."""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack

import pytest
import trio
import trio.testing
from test_node_support import addr_of, start_node

from peerdata.testing.memory_network import MemoryNetwork
from peerdata.wire.codec import encode
from peerdata.wire.messages import ErrorReply, Vote
from peerdata.wire.signing import sign_vote
from peerdata.wire.versions import VOTES_TOPIC


async def test_gossip_is_checked_per_topic(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="peerdata")
    with trio.fail_after(60):
        network = MemoryNetwork()
        async with AsyncExitStack() as stack:
            a = await start_node(stack, network, "a")
            b = await start_node(stack, network, "b", bootstrap=(addr_of(a.node.peer_id),))
            await b.node.wait_until(lambda s: s.peers_connected == 1)
            forged = Vote(voter=a.node.peer_id, origin=b.node.peer_id, cid=b"\x01" * 32,
                          round_id=1, novel=True, score=0.9, timestamp=1.0, nonce=b"\x02" * 16,
                          signature=b"\x03" * 64)
            vote = sign_vote(a.identity, origin=b.node.peer_id, cid=b"\x01" * 32, round_id=1,
                             novel=True, score=0.9, timestamp=1.0)
            await a.node.transport.publish(VOTES_TOPIC, b"\x01\x07\xc1 not msgpack")
            await a.node.transport.publish(VOTES_TOPIC, encode(ErrorReply("busy", "wrong type")))
            await a.node.transport.publish(VOTES_TOPIC, encode(forged))  # signature fails
            await a.node.transport.publish(VOTES_TOPIC, encode(vote))
            sender, got = await b.node.gossip_inbox.receive()
            assert (sender, got) == (a.node.peer_id, vote)
            stats = await b.node.statistics()
            assert stats.gossip_received == 1 and stats.gossip_rejected == 3
            refused = [r.getMessage() for r in caplog.records
                       if "event=gossip_rejected" in r.getMessage()]
            assert any("expected Vote" in line and a.node.peer_id in line for line in refused)
