"""The Transport contract, run against every implementation (real libp2p and the memory fake)."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any

import pytest
import trio

from peerdata.config import LimitsConfig, NetConfig
from peerdata.errors import LocalProtocolError, RemoteProtocolError, TransportError
from peerdata.net.transport import MAX_GOSSIP_BYTES, GossipMessage, PeerEvent, Transport

if TYPE_CHECKING:
    from peerdata.net.libp2p_transport import Libp2pTransport
    from peerdata.testing import MemoryTransport

    def _both_are_transports(a: Libp2pTransport, b: MemoryTransport) -> tuple[Transport, ...]:
        """mypy checks here that both implementations satisfy the Transport protocol."""
        return a, b


NET = NetConfig(connect_timeout_s=5.0, request_timeout_s=3.0, gossip_heartbeat_s=0.5)
LIMITS = LimitsConfig(max_message_bytes=256 * 1024, max_image_bytes=128 * 1024)
ECHO = "/peerdata/test-echo/1.0.0"

Opener = Callable[..., AbstractAsyncContextManager[Any]]


def _libp2p_opener() -> Opener:
    from peerdata.net.libp2p_transport import open_libp2p_transport

    seeds = itertools.count(1)

    def open_one(net: NetConfig = NET, limits: LimitsConfig = LIMITS) -> Any:
        return open_libp2p_transport(next(seeds).to_bytes(32, "big"), net, limits)

    return open_one


def _memory_opener() -> Opener:
    from peerdata.testing import MemoryNetwork

    network = MemoryNetwork(seed=7, net=NET, limits=LIMITS)
    names = itertools.count(1)

    def open_one(net: NetConfig = NET, limits: LimitsConfig = LIMITS) -> Any:
        return network.open_transport(f"peer-{next(names)}", net=net, limits=limits)

    return open_one


@pytest.fixture(params=["libp2p", "memory"])
def opener(request: pytest.FixtureRequest) -> Opener:
    return _libp2p_opener() if request.param == "libp2p" else _memory_opener()


@asynccontextmanager
async def linked_pair(opener: Opener, *, client_limits: LimitsConfig = LIMITS,
                      server_limits: LimitsConfig = LIMITS,
                      net: NetConfig = NET) -> AsyncIterator[tuple[Transport, Transport]]:
    """(client, server), with the client already connected to the server."""
    async with opener(net=net, limits=client_limits) as client, \
            opener(net=net, limits=server_limits) as server:
        assert await client.connect(server.listen_addrs()[0]) == server.peer_id
        yield client, server


async def echo(peer_id: str, payload: bytes) -> bytes:
    return peer_id.encode() + b"|" + payload[::-1]


async def receive_published(publisher: Transport, channel: trio.MemoryReceiveChannel[
        GossipMessage], topic: str, data: bytes) -> GossipMessage:
    """Publish until the message arrives: gossip is best effort and the subscription needs a
    moment to reach the publisher, so re-sending is the documented way to use it."""
    while True:
        await publisher.publish(topic, data)
        with trio.move_on_after(0.2):
            while True:
                message = await channel.receive()
                if message.data == data and message.sender == publisher.peer_id:
                    return message


async def test_request_response_carries_peer_ids(opener: Opener) -> None:
    with trio.fail_after(20):
        async with linked_pair(opener) as (client, server):
            server.set_handler(ECHO, echo)
            assert await client.request(server.peer_id, ECHO, b"abc") == \
                client.peer_id.encode() + b"|cba"
            assert await client.request(server.peer_id, ECHO, b"") == \
                client.peer_id.encode() + b"|"
            assert server.peer_id in client.connected_peers()
            assert client.peer_id in server.connected_peers()
            for addr in client.listen_addrs():
                assert addr.endswith(f"/p2p/{client.peer_id}")


async def test_concurrent_requests_on_one_link(opener: Opener) -> None:
    with trio.fail_after(20):
        async with linked_pair(opener) as (client, server):
            server.set_handler(ECHO, echo)
            results: dict[int, bytes] = {}

            async def one(i: int) -> None:
                results[i] = await client.request(server.peer_id, ECHO, bytes([i]) * 1000)

            async with trio.open_nursery() as nursery:
                for i in range(20):
                    nursery.start_soon(one, i)
            assert all(results[i].endswith(bytes([i]) * 1000) for i in range(20))


async def test_handler_errors_reset_the_stream_and_serving_continues(opener: Opener) -> None:
    async def refuse(peer_id: str, payload: bytes) -> bytes:
        raise RemoteProtocolError("malformed request")

    async def buggy(peer_id: str, payload: bytes) -> bytes:
        raise ValueError("bug in a handler")

    with trio.fail_after(20):
        async with linked_pair(opener) as (client, server):
            server.set_handler("/refuse/1", refuse)
            server.set_handler("/buggy/1", buggy)
            server.set_handler(ECHO, echo)
            with pytest.raises(TransportError):
                await client.request(server.peer_id, "/refuse/1", b"x")
            with pytest.raises(TransportError):
                await client.request(server.peer_id, "/buggy/1", b"x")
            assert (await client.request(server.peer_id, ECHO, b"ok")).endswith(b"ko")


async def test_unknown_protocol_is_a_transport_error(opener: Opener) -> None:
    with trio.fail_after(20):
        async with linked_pair(opener) as (client, server):
            with pytest.raises(TransportError):
                await client.request(server.peer_id, "/nobody/serves/this", b"x")


async def test_oversize_request_is_refused_before_sending(opener: Opener) -> None:
    with trio.fail_after(20):
        async with linked_pair(opener) as (client, server):
            server.set_handler(ECHO, echo)
            with pytest.raises(LocalProtocolError):
                await client.request(server.peer_id, ECHO,
                                     b"x" * (LIMITS.max_message_bytes + 1))


async def test_server_refuses_a_frame_over_its_limit_and_keeps_serving(opener: Opener) -> None:
    small = LimitsConfig(max_message_bytes=1024, max_image_bytes=1024)
    with trio.fail_after(20):
        async with linked_pair(opener, server_limits=small) as (client, server):
            server.set_handler(ECHO, echo)
            with pytest.raises(TransportError):
                await client.request(server.peer_id, ECHO, b"x" * 100_000)
            assert (await client.request(server.peer_id, ECHO, b"ok")).endswith(b"ko")


async def test_response_over_the_client_limit_is_a_remote_protocol_error(
        opener: Opener) -> None:
    small = LimitsConfig(max_message_bytes=1024, max_image_bytes=1024)

    async def big(peer_id: str, payload: bytes) -> bytes:
        return b"y" * 100_000

    with trio.fail_after(20):
        async with linked_pair(opener, client_limits=small) as (client, server):
            server.set_handler("/big/1", big)
            server.set_handler(ECHO, echo)
            with pytest.raises(RemoteProtocolError):
                await client.request(server.peer_id, "/big/1", b"x")
            assert (await client.request(server.peer_id, ECHO, b"ok")).endswith(b"ko")


async def test_a_silent_peer_times_out(opener: Opener) -> None:
    net = NetConfig(connect_timeout_s=5.0, request_timeout_s=0.5, gossip_heartbeat_s=0.5)

    async def stall(peer_id: str, payload: bytes) -> bytes:
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    with trio.fail_after(20):
        async with linked_pair(opener, net=net) as (client, server):
            server.set_handler("/stall/1", stall)
            server.set_handler(ECHO, echo)
            with pytest.raises(TransportError, match="no response"):
                await client.request(server.peer_id, "/stall/1", b"x")
            assert (await client.request(server.peer_id, ECHO, b"ok")).endswith(b"ko")


async def test_connect_failures_are_transport_errors(opener: Opener) -> None:
    with trio.fail_after(20):
        async with opener() as a:
            with pytest.raises(TransportError):
                await a.connect("not a multiaddr")
            with pytest.raises(TransportError):
                await a.connect(a.listen_addrs()[0])
            async with opener() as gone:
                addr = gone.listen_addrs()[0]
            with pytest.raises(TransportError):
                await a.connect(addr)


async def test_publish_subscribe_with_self_delivery(opener: Opener) -> None:
    with trio.fail_after(20):
        async with linked_pair(opener) as (publisher, subscriber):
            inbox = subscriber.subscribe("votes")
            own = publisher.subscribe("votes")
            message = await receive_published(publisher, inbox, "votes", b"vote-1")
            assert message == GossipMessage("votes", publisher.peer_id, b"vote-1")
            assert (await own.receive()).sender == publisher.peer_id


async def test_gossip_validator_rejects_before_delivery(opener: Opener) -> None:
    with trio.fail_after(20):
        async with linked_pair(opener) as (publisher, subscriber):
            subscriber.set_gossip_validator("votes", lambda sender, data: data != b"bad")
            inbox = subscriber.subscribe("votes")
            await receive_published(publisher, inbox, "votes", b"warm-up")
            await publisher.publish("votes", b"bad")
            await receive_published(publisher, inbox, "votes", b"good")
            while True:  # whatever is still queued must not be the rejected message
                try:
                    assert inbox.receive_nowait().data != b"bad"
                except trio.WouldBlock:
                    break


async def test_gossip_over_the_size_limit_is_refused(opener: Opener) -> None:
    with trio.fail_after(20):
        async with opener() as a:
            with pytest.raises(LocalProtocolError):
                await a.publish("votes", b"x" * (MAX_GOSSIP_BYTES + 1))


async def test_statistics_count_frames_and_times(opener: Opener) -> None:
    with trio.fail_after(20):
        async with linked_pair(opener) as (client, server):
            server.set_handler(ECHO, echo)
            before = trio.current_time()
            response = await client.request(server.peer_id, ECHO, b"z" * 1000)
            mine = {p.peer_id: p for p in client.statistics().peers}[server.peer_id]
            theirs = {p.peer_id: p for p in server.statistics().peers}[client.peer_id]
            assert (mine.bytes_out, mine.bytes_in) == (4 + 1000, 4 + len(response))
            assert (theirs.bytes_in, theirs.bytes_out) == (4 + 1000, 4 + len(response))
            assert mine.connected and theirs.connected
            assert mine.connected_since is not None and mine.connected_since <= before
            assert mine.last_message_at is not None and mine.last_message_at >= before
            assert mine.address.endswith(f"/p2p/{server.peer_id}")
            stats = client.statistics()
            assert stats.peer_id == client.peer_id
            assert stats.listen_addrs == client.listen_addrs()


async def test_peer_events_report_links_up_and_down(opener: Opener) -> None:
    with trio.fail_after(20):
        async with opener() as a:
            events = a.peer_events()
            async with opener() as b:
                await a.connect(b.listen_addrs()[0])
                assert await events.receive() == PeerEvent(b.peer_id, True)
            assert await events.receive() == PeerEvent(b.peer_id, False)
            assert b.peer_id not in a.connected_peers()


async def test_disconnect_closes_the_link_at_both_ends(opener: Opener) -> None:
    with trio.fail_after(20):
        async with linked_pair(opener) as (client, server):
            server.set_handler(ECHO, echo)
            client_events, server_events = client.peer_events(), server.peer_events()
            assert await client_events.receive() == PeerEvent(server.peer_id, True)
            assert await server_events.receive() == PeerEvent(client.peer_id, True)
            await client.disconnect(server.peer_id)
            assert await client_events.receive() == PeerEvent(server.peer_id, False)
            assert await server_events.receive() == PeerEvent(client.peer_id, False)
            assert server.peer_id not in client.connected_peers()
            await client.disconnect(server.peer_id)  # already gone: a no-op
            await client.connect(server.listen_addrs()[0])
            assert await client.request(server.peer_id, ECHO, b"again") != b""
