"""The memory network's own promises: virtual time, seeded faults, partitions and crashes."""

from __future__ import annotations

from contextlib import AsyncExitStack

import pytest
import trio
import trio.testing

from peerdata.config import NetConfig
from peerdata.errors import LocalProtocolError, TransportError
from peerdata.net.transport import PeerEvent
from peerdata.testing import Faults, MemoryNetwork, MemoryTransport

NET = NetConfig(connect_timeout_s=5.0, request_timeout_s=10.0)
ECHO = "/echo/1"


async def echo(peer_id: str, payload: bytes) -> bytes:
    return payload


async def open_chain(stack: AsyncExitStack, network: MemoryNetwork,
                     names: list[str]) -> list[MemoryTransport]:
    """Open peers and link each to the next: a - b - c ..."""
    peers = [await stack.enter_async_context(network.open_transport(n)) for n in names]
    for left, right in zip(peers, peers[1:], strict=False):
        await left.connect(right.listen_addrs()[0])
    return peers


async def gossip_log(seed: int) -> list[tuple[str, bytes]]:
    """Who received what, in arrival order, on a lossy three-peer chain."""
    network = MemoryNetwork(seed=seed, net=NET)
    network.set_faults(gossip=Faults(drop=0.3, duplicate=0.3, delay=0.5, max_delay_s=2.0))
    log: list[tuple[str, bytes]] = []
    async with AsyncExitStack() as stack:
        a, b, c = await open_chain(stack, network, ["a", "b", "c"])
        inboxes = {"b": b.subscribe("t"), "c": c.subscribe("t")}
        for i in range(30):
            await a.publish("t", b"%d" % i)
            await trio.sleep(0.1)
        await trio.sleep(5.0)  # longer than any injected delay
        for name, inbox in inboxes.items():
            while True:
                try:
                    message = inbox.receive_nowait()
                except trio.WouldBlock:
                    break
                log.append((name, message.data))
    return log


async def test_same_seed_same_faults(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(60):
        first, again, other = await gossip_log(1), await gossip_log(1), await gossip_log(2)
    assert first == again
    assert first != other
    assert 0 < len({data for name, data in first if name == "c"}) < 30  # some lost ...
    assert len(first) > len(set(first))  # ... some duplicated
    assert [d for n, d in first if n == "b"] != sorted(
        (d for n, d in first if n == "b"), key=int)  # ... some overtaken by later ones


async def test_drop_everything_and_duplicate_everything(
        autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork(seed=0, net=NET)
    with trio.fail_after(60):
        async with AsyncExitStack() as stack:
            a, b = await open_chain(stack, network, ["a", "b"])
            inbox = b.subscribe("t")
            network.set_faults(gossip=Faults(drop=1.0))
            await a.publish("t", b"lost")
            network.set_faults(gossip=Faults(duplicate=1.0))
            await a.publish("t", b"twice")
            await trio.sleep(1.0)
            assert [inbox.receive_nowait().data for _ in range(2)] == [b"twice", b"twice"]
            with pytest.raises(trio.WouldBlock):
                inbox.receive_nowait()

            b.set_handler(ECHO, echo)
            network.set_faults(requests=Faults(drop=1.0))
            start = trio.current_time()
            with pytest.raises(TransportError, match="no response"):
                await a.request("b", ECHO, b"x")
            assert trio.current_time() - start == NET.request_timeout_s  # virtual time


async def test_gossip_hops_along_links_and_validators_stop_forwarding(
        autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork(seed=0, net=NET)
    with trio.fail_after(60):
        async with AsyncExitStack() as stack:
            a, b, c = await open_chain(stack, network, ["a", "b", "c"])
            inbox = c.subscribe("t")
            await a.publish("t", b"hop")
            assert (await inbox.receive()).sender == "a"
            b.set_gossip_validator("t", lambda sender, data: data != b"blocked")
            await a.publish("t", b"blocked")
            await a.publish("t", b"after")
            assert (await inbox.receive()).data == b"after"
            with pytest.raises(LocalProtocolError):
                await a.publish("t", b"x" * (2 * 1024 * 1024))


async def test_partition_and_heal(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork(seed=0, net=NET)
    with trio.fail_after(60):
        async with AsyncExitStack() as stack:
            a, b = await open_chain(stack, network, ["a", "b"])
            b.set_handler(ECHO, echo)
            events = a.peer_events()
            assert await events.receive() == PeerEvent("b", True)
            network.partition("a", "b")
            assert await events.receive() == PeerEvent("b", False)
            assert a.connected_peers() == ()
            start = trio.current_time()
            with pytest.raises(TransportError):
                await a.connect(b.listen_addrs()[0])
            assert trio.current_time() - start == NET.connect_timeout_s
            with pytest.raises(TransportError):
                await a.request("b", ECHO, b"x")
            network.heal("a", "b")
            await a.connect(b.listen_addrs()[0])
            assert await events.receive() == PeerEvent("b", True)
            assert await a.request("b", ECHO, b"x") == b"x"


async def test_kill_fails_inflight_requests_and_restart_rejoins(
        autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork(seed=0, net=NET)

    async def stall(peer_id: str, payload: bytes) -> bytes:
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    with trio.fail_after(60):
        async with network.open_transport("a") as a:
            events = a.peer_events()
            async with network.open_transport("b") as b:
                b.set_handler("/stall/1", stall)
                await a.connect(b.listen_addrs()[0])
                assert await events.receive() == PeerEvent("b", True)

                async def kill_soon() -> None:
                    await trio.sleep(1.0)
                    network.kill("b")

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(kill_soon)
                    start = trio.current_time()
                    with pytest.raises(TransportError, match="vanished"):
                        await a.request("b", "/stall/1", b"x")
                    assert trio.current_time() - start == 1.0
                assert await events.receive() == PeerEvent("b", False)
                with pytest.raises(TransportError):
                    await b.publish("t", b"from the dead")
                with pytest.raises(TransportError):
                    await a.connect("/memory/b/p2p/b")
            async with network.open_transport("b") as restarted:
                restarted.set_handler(ECHO, echo)
                assert await a.connect(restarted.listen_addrs()[0]) == "b"
                assert await a.request("b", ECHO, b"back") == b"back"
