"""Hello handshake, discovery through a bootstrap node, and reconnect back-off (MockClock)."""

from __future__ import annotations

import json
import socket
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
import trio
import trio.testing
from test_node_support import addr_of, raw_peer, start_node

from peerdata.config import NetConfig
from peerdata.errors import RemoteProtocolError
from peerdata.identity import Identity
from peerdata.node.addresses import reuse_ports
from peerdata.node.peers import (
    MAX_ADDRS_PER_PEER,
    MAX_DIAL_FAILURES,
    MAX_KNOWN_PEERS,
    PeerBook,
    addr_peer_id,
    check_hello,
    next_delay,
    split_hello_addrs,
)
from peerdata.store import SqliteStore
from peerdata.testing.memory_network import MemoryNetwork
from peerdata.wire.codec import encode
from peerdata.wire.messages import MAX_LISTEN_ADDRS, Hello
from peerdata.wire.versions import HELLO_PROTOCOL


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


def _addr(peer_id: str, port: int) -> str:
    return f"/ip4/127.0.0.1/tcp/{port}/p2p/{peer_id}"


def test_newest_live_address_goes_first_and_is_introduced() -> None:
    book = PeerBook(Identity.generate().peer_id)
    a = Identity.generate().peer_id
    book.record_hello(_hello(a, (_addr(a, 1000),)), at=1.0)
    book.record_hello(_hello(a, (_addr(a, 2000),)), at=2.0)  # restarted on another port
    assert book.addresses(a) == (_addr(a, 2000), _addr(a, 1000))
    book.set_connected(a, True)
    assert book.introductions() == (_addr(a, 2000),)
    assert book.live_addresses() == {a: _addr(a, 2000)}


def test_introductions_never_push_out_live_addresses() -> None:
    book = PeerBook(Identity.generate().peer_id)
    a = Identity.generate().peer_id
    assert book.learn(_addr(a, 1), live=True)
    for port in range(2, 40):  # a flood of (possibly bogus) introductions of the same peer
        book.learn(_addr(a, port))
    assert len(book.addresses(a)) == MAX_ADDRS_PER_PEER
    assert book.addresses(a)[0] == _addr(a, 1)
    book.learn(_addr(a, 99), live=True)
    assert book.addresses(a)[:2] == (_addr(a, 99), _addr(a, 1))
    assert len(book.addresses(a)) == MAX_ADDRS_PER_PEER


def test_book_holds_at_most_max_known_peers() -> None:
    book = PeerBook(Identity.generate().peer_id)
    ids = [Identity.generate().peer_id for _ in range(MAX_KNOWN_PEERS + 5)]
    added = [book.learn(_addr(pid, 1)) for pid in ids]
    assert added == [True] * MAX_KNOWN_PEERS + [False] * 5
    assert len(book.peers) == MAX_KNOWN_PEERS


def test_failed_address_is_forgotten_but_pinned_one_is_not() -> None:
    book = PeerBook(Identity.generate().peer_id)
    a, b = Identity.generate().peer_id, Identity.generate().peer_id
    book.learn(_addr(a, 1))
    book.learn(_addr(b, 1), pinned=True)
    results = [book.dial_failed(a, _addr(a, 1)) for _ in range(MAX_DIAL_FAILURES)]
    assert results == [False] * (MAX_DIAL_FAILURES - 1) + [True]
    assert a not in book.peers  # only ever introduced: nothing left to keep
    assert not any(book.dial_failed(b, _addr(b, 1)) for _ in range(3 * MAX_DIAL_FAILURES))
    assert book.addresses(b) == (_addr(b, 1),)


async def test_hello_flood_of_dead_peers_leaves_no_dialer_running(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Issue #10's flood: 31 introduced addresses per Hello each got a dialer that never
    stopped. Now each peer gets one keeper, which ends once its addresses failed."""
    with trio.fail_after(3600):
        network = MemoryNetwork()
        async with AsyncExitStack() as stack:
            a = await start_node(stack, network, "a")
            flooder = await raw_peer(stack, network)
            dead = [Identity.generate().peer_id for _ in range(MAX_LISTEN_ADDRS - 1)]
            for wave in range(3):  # the same flood, again and again
                hello = _hello(flooder.peer_id, (addr_of(flooder.peer_id),
                                                 *(f"/memory/x{wave}/p2p/{d}" for d in dead)))
                await flooder.connect(addr_of(a.node.peer_id))
                await flooder.request(a.node.peer_id, HELLO_PROTOCOL, encode(hello))
            assert 0 < a.node.dialer.keepers() <= len(dead) + 1
            assert all(len(a.node.book.addresses(d)) <= MAX_ADDRS_PER_PEER for d in dead)
            await a.node.book.wait_for(lambda: not any(d in a.node.book.peers for d in dead))
            await trio.testing.wait_all_tasks_blocked()
            assert a.node.dialer.keepers() == 1  # only the flooder's (it is linked)
            assert trio.current_time() < 600


async def test_saved_peers_are_redialled_after_both_restart(
    autojump_clock: trio.testing.MockClock, tmp_path: Path,
) -> None:
    """No bootstrap configured on either side: the store alone brings the link back."""
    with trio.fail_after(600):
        network = MemoryNetwork()
        ida, idb = Identity.generate(), Identity.generate()
        with SqliteStore.open(tmp_path / "a") as sa, SqliteStore.open(tmp_path / "b") as sb:
            async with AsyncExitStack() as life:
                a = await start_node(life, network, "a", identity=ida, store=sa)
                await start_node(life, network, "b", identity=idb, store=sb,
                                 bootstrap=(addr_of(ida.peer_id),))
                await a.node.wait_until(lambda s: s.peers_connected == 1)
                await trio.testing.wait_all_tasks_blocked()  # both savers wrote
                assert [p.address for p in sa.list_peers()] == [addr_of(idb.peer_id)]
                assert [p.address for p in sb.list_peers()] == [addr_of(ida.peer_id)]
                network.kill(ida.peer_id)
                network.kill(idb.peer_id)
            async with AsyncExitStack() as life:
                b = await start_node(life, network, "b", identity=idb, store=sb)  # no bootstrap
                a = await start_node(life, network, "a", identity=ida, store=sa)
                for n in (a, b):
                    await n.node.wait_until(lambda s: s.peers_connected == 1)


def test_reuse_ports_takes_the_previous_port_when_free() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        last = json.dumps([f"/ip4/127.0.0.1/tcp/{port}"])
        listen = ("/ip4/127.0.0.1/tcp/0",)
        sock.listen()
        assert reuse_ports(listen, last) == listen  # taken: any port
    assert reuse_ports(listen, last) == (f"/ip4/127.0.0.1/tcp/{port}",)
    assert reuse_ports(listen, None) == listen
    assert reuse_ports(listen, "not json") == listen
    assert reuse_ports(("/ip4/127.0.0.1/tcp/5000",), last) == ("/ip4/127.0.0.1/tcp/5000",)
