"""A peer that writes a frame that is not a pubsub RPC onto a GossipSub stream gets that stream
reset; the node stays up and keeps gossiping (py-libp2p 0.8.1 let protobuf's DecodeError kill
the whole daemon; seen in a 20-robot swarm)."""

from __future__ import annotations

import contextlib

import pytest
import trio
from libp2p.custom_types import TProtocol
from libp2p.network.stream.exceptions import StreamError
from libp2p.peer.id import ID
from libp2p.utils.varint import encode_uvarint

from peerdata.config import LimitsConfig, NetConfig
from peerdata.net.libp2p_transport import Libp2pTransport, open_libp2p_transport

NET = NetConfig(connect_timeout_s=5.0, gossip_heartbeat_s=0.5)
NOT_AN_RPC = b"\x0f\xff\xff"  # wire type 7: protobuf refuses it


async def _gossip_until_received(sender: Libp2pTransport,
                                 inbox: trio.MemoryReceiveChannel) -> bytes:  # type: ignore[type-arg]
    while True:  # best effort: re-send until the subscription has propagated
        await sender.publish("t", b"still here")
        with trio.move_on_after(0.3):
            return bytes((await inbox.receive()).data)


async def test_malformed_pubsub_rpc_resets_the_stream_only(
        caplog: pytest.LogCaptureFixture) -> None:
    with trio.fail_after(30):
        async with open_libp2p_transport(b"\x01" * 32, NET, LimitsConfig()) as server, \
                open_libp2p_transport(b"\x02" * 32, NET, LimitsConfig()) as client:
            await client.connect(server.listen_addrs()[0])
            assert isinstance(client, Libp2pTransport)
            stream = await client._host.new_stream(ID.from_base58(server.peer_id),
                                                   [TProtocol("/meshsub/1.1.0")])
            await stream.write(encode_uvarint(len(NOT_AN_RPC)) + NOT_AN_RPC)
            with trio.move_on_after(5), contextlib.suppress(StreamError):
                while await stream.read(1024):  # ends with the reset (or EOF)
                    pass
            # the server is still up, and gossip between the two still flows
            inbox = server.subscribe("t")
            await client.connect(server.listen_addrs()[0])
            assert await _gossip_until_received(client, inbox) == b"still here"
    assert any("malformed pubsub RPC" in r.getMessage() and client.peer_id in r.getMessage()
               for r in caplog.records)
