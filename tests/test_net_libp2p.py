"""What only the real libp2p transport can show: encryption, crashes, restarts, gossip size."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from multiaddr import Multiaddr

from peerdata.config import LimitsConfig, NetConfig
from peerdata.errors import IdentityError, TransportError
from peerdata.net.host import build_host, key_pair_from_seed, peer_id_from_seed, run_host
from peerdata.net.libp2p_transport import Libp2pTransport, open_libp2p_transport
from peerdata.net.transport import MAX_GOSSIP_BYTES, PeerEvent

NET = NetConfig(connect_timeout_s=5.0, request_timeout_s=30.0, gossip_heartbeat_s=0.5)
LIMITS = LimitsConfig()
ECHO = "/peerdata/test-echo/1.0.0"

# A peer in its own process, so that it can be killed with SIGKILL like a crashing robot.
# It prints its address, then one line each time a request reaches it, then stalls.
PEER_PROCESS = """
import sys, trio
from peerdata.config import LimitsConfig, NetConfig
from peerdata.net.libp2p_transport import open_libp2p_transport

async def main():
    async with open_libp2p_transport(bytes.fromhex(sys.argv[1]), NetConfig(),
                                     LimitsConfig()) as transport:
        async def stall(peer_id, payload):
            print("request", len(payload), flush=True)
            await trio.sleep_forever()

        async def read_a_little(stream):
            await stream.read(65536)
            print("reading", flush=True)
            await trio.sleep_forever()  # flow control now stops the sender mid-write

        transport.set_handler("/stall/1", stall)
        transport._host.set_stream_handler("/slow-reader/1", read_a_little)
        print(transport.listen_addrs()[0], flush=True)
        await trio.sleep_forever()

trio.run(main)
"""


def seed(n: int) -> bytes:
    return n.to_bytes(32, "big")


async def echo(peer_id: str, payload: bytes) -> bytes:
    return payload


class PeerProcess:
    """A transport in a child process; `kill()` sends SIGKILL."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self._buffer = b""

    async def line(self) -> str:
        assert self.process.stdout is not None
        while b"\n" not in self._buffer:
            chunk = await self.process.stdout.receive_some(4096)
            if not chunk:
                raise AssertionError("peer process exited")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode()

    def kill(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)


@asynccontextmanager
async def peer_process(n: int) -> AsyncIterator[tuple[PeerProcess, str]]:
    process = await trio.lowlevel.open_process(
        [sys.executable, "-c", PEER_PROCESS, seed(n).hex()], stdout=subprocess.PIPE
    )
    peer = PeerProcess(process)
    try:
        yield peer, await peer.line()
    finally:
        if process.returncode is None:
            peer.kill()
        with trio.CancelScope(shield=True):
            await process.wait()
        if process.stdout is not None:
            await process.stdout.aclose()


def test_identity_from_seed() -> None:
    assert peer_id_from_seed(seed(1)) == peer_id_from_seed(seed(1)) != peer_id_from_seed(seed(2))
    with pytest.raises(IdentityError):
        key_pair_from_seed(b"short")


async def test_peer_id_is_derived_from_the_seed() -> None:
    with trio.fail_after(20):
        async with open_libp2p_transport(seed(3), NET, LIMITS) as transport:
            assert transport.peer_id == peer_id_from_seed(seed(3))


async def test_plaintext_peers_are_refused_both_ways() -> None:
    with trio.fail_after(20):
        async with open_libp2p_transport(seed(1), NET, LIMITS) as ours:
            insecure = build_host(key_pair_from_seed(seed(2)), NET, secure=False)
            async with run_host(insecure, NET):
                with pytest.raises(Exception):  # noqa: B017 - any libp2p dial failure
                    await insecure.connect(info_from_p2p_addr(Multiaddr(ours.listen_addrs()[0])))
                plain_addr = f"{insecure.get_addrs()[0]}"
                if "/p2p/" not in plain_addr:
                    plain_addr += f"/p2p/{insecure.get_id().to_base58()}"
                with pytest.raises(TransportError):
                    await ours.connect(plain_addr)
                assert ours.connected_peers() == ()


async def test_peer_killed_while_we_wait_for_its_response() -> None:
    """The request fails long before its 30 s timeout and the node keeps serving others."""
    with trio.fail_after(20):
        async with open_libp2p_transport(seed(1), NET, LIMITS) as node, \
                open_libp2p_transport(seed(2), NET, LIMITS) as other, \
                peer_process(3) as (crashing, addr):
            node.set_handler(ECHO, echo)
            other.set_handler(ECHO, echo)
            events = node.peer_events()
            crashing_id = await node.connect(addr)
            assert await events.receive() == PeerEvent(crashing_id, True)

            async def kill_when_request_arrives() -> None:
                assert (await crashing.line()).startswith("request")
                crashing.kill()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(kill_when_request_arrives)
                with pytest.raises(TransportError):
                    await node.request(crashing_id, "/stall/1", b"x" * 1000)
            assert await events.receive() == PeerEvent(crashing_id, False)

            await other.connect(node.listen_addrs()[0])
            assert await other.request(node.peer_id, ECHO, b"still") == b"still"
            assert await node.request(other.peer_id, ECHO, b"serving") == b"serving"


async def test_peer_killed_mid_transfer() -> None:
    with trio.fail_after(20):
        async with open_libp2p_transport(seed(1), NET, LIMITS) as node, \
                peer_process(4) as (crashing, addr):
            events = node.peer_events()
            crashing_id = await node.connect(addr)
            assert await events.receive() == PeerEvent(crashing_id, True)

            async def kill_when_reading() -> None:
                assert await crashing.line() == "reading"
                crashing.kill()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(kill_when_reading)
                with pytest.raises(TransportError):
                    await node.request(crashing_id, "/slow-reader/1", bytes(30_000_000))
            assert await events.receive() == PeerEvent(crashing_id, False)
            assert crashing_id not in node.connected_peers()


async def test_reconnect_after_restart_skips_the_negative_dial_cache() -> None:
    with trio.fail_after(20):
        async with open_libp2p_transport(seed(1), NET, LIMITS) as node:
            async with open_libp2p_transport(seed(2), NET, LIMITS) as peer:
                peer.set_handler(ECHO, echo)
                addr = peer.listen_addrs()[0]
                await node.connect(addr)
                assert await node.request(peer.peer_id, ECHO, b"1") == b"1"
            with pytest.raises(TransportError):
                await node.connect(addr)  # down: this dial failure enters libp2p's cache
            swarm = node._host.get_network()
            assert swarm._negative_peer_cache.is_blocked(peer_id_from_seed(seed(2)))  # type: ignore[attr-defined]

            port = Multiaddr(addr).value_for_protocol("tcp")
            restarted_net = NetConfig(listen=(f"/ip4/127.0.0.1/tcp/{port}",),
                                      connect_timeout_s=5.0, request_timeout_s=30.0)
            async with open_libp2p_transport(seed(2), restarted_net, LIMITS) as restarted:
                restarted.set_handler(ECHO, echo)
                assert await node.connect(addr) == restarted.peer_id
                assert await node.request(restarted.peer_id, ECHO, b"2") == b"2"


async def test_largest_allowed_gossip_message_is_delivered() -> None:
    with trio.fail_after(20):
        async with open_libp2p_transport(seed(1), NET, LIMITS) as a, \
                open_libp2p_transport(seed(2), NET, LIMITS) as b:
            await a.connect(b.listen_addrs()[0])
            inbox = b.subscribe("big")
            data = os.urandom(MAX_GOSSIP_BYTES)
            while True:  # re-send until b's subscription has reached a (best effort)
                await a.publish("big", data)
                with trio.move_on_after(0.5):
                    message = await inbox.receive()
                    break
            assert message.data == data and message.sender == a.peer_id


async def test_gossip_sender_is_verified_by_signature() -> None:
    """Pubsub signing is on: the sender we report is the key that signed the message."""
    with trio.fail_after(20):
        async with open_libp2p_transport(seed(1), NET, LIMITS) as a, \
                open_libp2p_transport(seed(2), NET, LIMITS) as b:
            assert isinstance(a, Libp2pTransport)
            await a.connect(b.listen_addrs()[0])
            assert b._gossip._pubsub.strict_signing  # type: ignore[attr-defined]
            inbox = b.subscribe("votes")
            while True:
                await a.publish("votes", b"v")
                with trio.move_on_after(0.2):
                    message = await inbox.receive()
                    break
            assert ID.from_base58(message.sender) == a._host.get_id()


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc (Linux)")
async def test_short_lived_peers_leak_no_file_descriptors() -> None:
    """Leaving libp2p's host.run() alone left the listener socket (and its system task) open
    for every peer that came and went; open_libp2p_transport closes the host explicitly."""
    with trio.fail_after(40):
        async with open_libp2p_transport(seed(1), NET, LIMITS) as node:
            node.set_handler(ECHO, echo)
            events = node.peer_events()
            before = open_fds()
            for n in range(10):
                async with open_libp2p_transport(seed(100 + n), NET, LIMITS) as short:
                    await short.connect(node.listen_addrs()[0])
                    assert await short.request(node.peer_id, ECHO, b"hi") == b"hi"
                    assert (await events.receive()).connected
                assert not (await events.receive()).connected
            assert open_fds() - before <= 1  # not one (or more) per peer


async def test_malformed_frames_reset_the_stream_and_are_logged_with_the_peer(
        caplog: pytest.LogCaptureFixture) -> None:
    """Frames written straight onto a libp2p stream, bypassing our client-side checks."""
    from libp2p.custom_types import TProtocol
    from libp2p.network.stream.exceptions import StreamError

    from peerdata.net.framing import HEADER

    small = LimitsConfig(max_message_bytes=1024, max_image_bytes=1024)
    with trio.fail_after(20):
        async with open_libp2p_transport(seed(1), NET, small) as server, \
                open_libp2p_transport(seed(2), NET, LIMITS) as client:
            server.set_handler(ECHO, echo)
            await client.connect(server.listen_addrs()[0])
            server_id = ID.from_base58(server.peer_id)
            for bad in (HEADER.pack(10_000_000) + b"x" * 10,  # declared length over the limit
                        HEADER.pack(100) + b"only ten b"):     # stream ends inside the frame
                stream = await client._host.new_stream(server_id, [TProtocol(ECHO)])
                await stream.write(bad)
                await stream.close_write()  # type: ignore[attr-defined]
                with pytest.raises((StreamError, EOFError)):
                    while await stream.read(1024):  # the reset (or EOF) is all that comes back
                        pass
            assert await client.request(server.peer_id, ECHO, b"fine") == b"fine"
    refused = [r.getMessage() for r in caplog.records
               if r.name == "peerdata.net" and "refused" in r.getMessage()]
    assert len(refused) == 2 and all(client.peer_id in m for m in refused), refused
