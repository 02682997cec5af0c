"""Hello handshake, discovery through a bootstrap node, and reconnect back-off (MockClock)."""

from __future__ import annotations

from contextlib import AsyncExitStack

import pytest
import trio
import trio.testing
from test_node_support import addr_of, start_node

from peerdata.config import NetConfig
from peerdata.errors import RemoteProtocolError
from peerdata.identity import Identity
from peerdata.node.peers import PeerBook, addr_peer_id, check_hello, next_delay, split_hello_addrs
from peerdata.testing.memory_network import MemoryNetwork
from peerdata.wire.messages import Hello


def _hello(peer_id: str, addrs: tuple[str, ...]) -> Hello:
    return Hello(protocol_version=1, peer_id=peer_id, name="r", listen_addrs=addrs,
                 agent="peerdata/test", samples=0, round_id=0)


def test_next_delay_doubles_and_caps() -> None:
    delays = [0.5]
    for _ in range(8):
        delays.append(next_delay(delays[-1], 0.5, 30.0))
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]


def test_hello_addresses_split_own_from_introduced() -> None:
    a, b = Identity.generate().peer_id, Identity.generate().peer_id
    hello = _hello(a, (f"/ip4/1.2.3.4/tcp/1/p2p/{a}", "/ip4/1.2.3.4/tcp/2",
                       f"/ip4/5.6.7.8/tcp/3/p2p/{b}"))
    own, others = split_hello_addrs(hello)
    assert own == (f"/ip4/1.2.3.4/tcp/1/p2p/{a}", "/ip4/1.2.3.4/tcp/2")
    assert others == (f"/ip4/5.6.7.8/tcp/3/p2p/{b}",)
    assert addr_peer_id(others[0]) == b
    assert addr_peer_id("/ip4/1.2.3.4/tcp/2") is None


def test_hello_from_another_peer_id_is_refused() -> None:
    a, b = Identity.generate().peer_id, Identity.generate().peer_id
    with pytest.raises(RemoteProtocolError, match="authenticated as"):
        check_hello(_hello(a, ()), b)


def test_peer_book_never_learns_itself() -> None:
    me = Identity.generate().peer_id
    book = PeerBook(me)
    assert not book.learn(addr_of(me))
    assert book.learn(addr_of(Identity.generate().peer_id))
    assert len(book.peers) == 1


async def test_handshake_exchanges_names(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(60):
        network = MemoryNetwork()
        async with AsyncExitStack() as stack:
            a = await start_node(stack, network, "alpha")
            b = await start_node(stack, network, "beta", bootstrap=(addr_of(a.node.peer_id),))
            await b.node.wait_until(lambda s: s.peers_connected == 1)
            await a.node.book.wait_for(lambda: b.node.peer_id in a.node.book.peers
                                       and a.node.book.get(b.node.peer_id).name == "beta")
            await b.node.book.wait_for(lambda: b.node.book.get(a.node.peer_id).name == "alpha")
            views = a.node.peers()
            assert [v.peer_id for v in views] == [b.node.peer_id]
            assert views[0].connected and views[0].bytes_in > 0 and views[0].bytes_out > 0


async def test_three_nodes_mesh_through_the_bootstrap(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(60):
        network = MemoryNetwork()
        async with AsyncExitStack() as stack:
            boot = await start_node(stack, network, "boot")
            boot_addr = (addr_of(boot.node.peer_id),)
            r1 = await start_node(stack, network, "r1", bootstrap=boot_addr)
            await r1.node.wait_until(lambda s: s.peers_connected == 1)
            r2 = await start_node(stack, network, "r2", bootstrap=boot_addr)
            for n in (boot, r1, r2):
                await n.node.wait_until(lambda s: s.peers_connected == 2)
            assert set(r2.node.transport.connected_peers()) == {boot.node.peer_id,
                                                                 r1.node.peer_id}


async def test_dialer_retries_with_exponential_backoff(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(600):
        network = MemoryNetwork()
        late = Identity.generate()
        attempts: list[float] = []
        net = NetConfig(reconnect_initial_s=0.5, reconnect_max_s=4.0)
        async with AsyncExitStack() as stack:
            a = await start_node(stack, network, "a", bootstrap=(addr_of(late.peer_id),),
                                 net=net)
            real_connect = a.node.transport.connect

            async def counting_connect(addr: str) -> str:
                attempts.append(trio.current_time())
                return await real_connect(addr)

            a.node.transport.connect = counting_connect  # type: ignore[method-assign]
            await trio.sleep(20)
            gaps = [round(y - x, 3) for x, y in zip(attempts, attempts[1:], strict=False)]
            assert gaps[:6] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
            # the peer appears: the next retry connects and the handshake completes
            await start_node(stack, network, "late", identity=late)
            await a.node.book.wait_for(lambda: a.node.book.get(late.peer_id).name == "late")
            assert a.node.transport.connected_peers() == (late.peer_id,)


async def test_restarted_peer_is_redialled(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(600):
        network = MemoryNetwork()
        boot_id = Identity.generate()
        async with AsyncExitStack() as stack:
            # r1 first (it keeps dialling), so each life of the bootstrap nests inside it
            r1 = await start_node(stack, network, "r1", bootstrap=(addr_of(boot_id.peer_id),))
            async with AsyncExitStack() as first_life:
                await start_node(first_life, network, "boot", identity=boot_id)
                await r1.node.wait_until(lambda s: s.peers_connected == 1)
                network.kill(boot_id.peer_id)  # a crash: links drop, its tasks stop
                await r1.node.wait_until(lambda s: s.peers_connected == 0)
            async with AsyncExitStack() as second_life:
                await start_node(second_life, network, "boot", identity=boot_id)
                await r1.node.wait_until(lambda s: s.peers_connected == 1)
                assert r1.node.transport.connected_peers() == (boot_id.peer_id,)
