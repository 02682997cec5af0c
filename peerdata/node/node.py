"""The node: `open_node()` owns one nursery in which every service of a robot runs.

Rule: services are `run_*(..., task_status)` tasks started in that nursery, talking over
bounded channels; a peer that sends anything invalid is handled at the transport's handler
boundary (RemoteProtocolError), logged with its peer ID, and its link dropped; the node goes on.

Services: link watcher (PeerEvents -> PeerBook), dialer (one keeper per known peer, with
back-off), peer saver, hello/share/fetch handlers, the share fetcher, the gossip intake
(node/gossip_intake.py). The daemon composes its services on top (node/daemon.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import trio

from peerdata import __version__ as _version
from peerdata.config import NodeConfig
from peerdata.errors import RemoteProtocolError, StoreError, TransportError
from peerdata.fleet import Membership, load_membership, load_swarm_key
from peerdata.identity import Identity, load_identity
from peerdata.net.transport import Transport
from peerdata.node.addresses import (
    LAST_LISTEN_KEY,
    remember_listen,
    reuse_ports,
    run_peer_saver,
    saved_addresses,
)
from peerdata.node.gossip_intake import GossipIntake
from peerdata.node.logs import event
from peerdata.node.membership import MemberService
from peerdata.node.peers import Dialer, PeerBook, build_hello, check_hello
from peerdata.node.share import ReceivedImage, ShareService
from peerdata.node.views import NodeStats, PeerView
from peerdata.store import Store
from peerdata.wire.codec import decode_as, encode
from peerdata.wire.messages import ErrorReply, Hello, Message
from peerdata.wire.versions import (
    FETCH_PROTOCOL,
    HELLO_PROTOCOL,
    MEMBER_PROTOCOL,
    PROTOCOL_VERSION,
    RELAY_PROTOCOL,
    SHARE_PROTOCOL,
)

log = logging.getLogger("peerdata.node")

AGENT = f"peerdata/{_version}"
THREADS = 2  # CPU/disk work in flight at once (hashing, store writes)
Offload = Callable[..., Awaitable[Any]]  # runs a blocking fn off the loop: await offload(fn, *a)


def thread_offload(limiter: trio.CapacityLimiter) -> Offload:
    """The default Offload: a worker thread, at most `limiter` at once."""

    async def offload(fn: Callable[..., Any], *args: Any) -> Any:
        return await trio.to_thread.run_sync(fn, *args, limiter=limiter)

    return offload


async def inline_offload(fn: Callable[..., Any], *args: Any) -> Any:
    """Run `fn` on the event loop (tests under MockClock: a thread would let the clock jump)."""
    await trio.lowlevel.checkpoint()
    return fn(*args)


class Node:
    """A running robot; get one from `open_node`."""

    def __init__(self, config: NodeConfig, identity: Identity, store: Store,
                 transport: Transport, nursery: trio.Nursery,
                 wall_clock: Callable[[], float], offload: Offload | None = None,
                 membership: Membership | None = None, home: Path | None = None) -> None:
        self.config = config
        self.identity = identity
        self.store = store
        self.transport = transport
        self.peer_id = transport.peer_id
        self.book = PeerBook(self.peer_id)
        self.limiter = trio.CapacityLimiter(THREADS)
        self.offload: Offload = offload or thread_offload(self.limiter)
        self.started_at = trio.current_time()
        self._nursery = nursery
        self._wall_clock = wall_clock
        self.dialer = Dialer(self.book, self._dial_and_hello, config.net.reconnect_initial_s,
                             config.net.reconnect_max_s)
        self._links_dropped = 0
        # Who may take part (peerdata.fleet): every handler, offer and gossip message asks it.
        self.membership = membership or Membership.open(self.peer_id, wall_clock)
        self.members = MemberService(self.membership, transport, config.limits, home,
                                     self.drop_link)
        self.share = ShareService(transport, store, config, self.offload, self.drop_link,
                                  wall_clock, self.book.notify,
                                  is_member=self.membership.is_member)
        self.gossip = GossipIntake(transport, config.limits, self.membership.is_member,
                                   self.book.notify)

    @property
    def gossip_inbox(self) -> trio.MemoryReceiveChannel[tuple[str, Message]]:
        """Valid Votes and Feedback from gossip, with their sender (bounded; full = dropped)."""
        return self.gossip.inbox

    @property
    def inbox(self) -> trio.MemoryReceiveChannel[ReceivedImage]:
        """Verified images as they arrive (bounded; the round logic reads it)."""
        return self.share.inbox

    async def start_service(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """Start `fn(*args, task_status=...)` in the node's nursery; return what it started."""
        return await self._nursery.start(fn, *args)

    def serve(self, protocol: str, handler: Callable[[str, bytes], Awaitable[bytes]]) -> None:
        """Answer `protocol` with `handler`, behind the receive boundary (`_guard`)."""
        self.transport.set_handler(protocol, self._guard(protocol, handler))

    def cancel(self) -> None:
        """Stop every service (the `open_node` block then exits)."""
        self._nursery.cancel_scope.cancel()

    # -- peers -----------------------------------------------------------------------------

    async def hello(self) -> Hello:
        """Our current Hello (the store's counts read in a thread)."""
        samples, last_round = await self.offload(
            lambda: (self.store.count_samples(), self.store.last_round_id()))
        return build_hello(self.book, self.transport.listen_addrs(), self.config.name, AGENT,
                           samples, last_round, PROTOCOL_VERSION)

    async def say_hello(self, peer_id: str) -> Hello:
        """Exchange Hellos with a connected peer and learn the peers it introduces.

        Raises:
            TransportError: the peer is unreachable. RemoteProtocolError: its Hello is bad
            (the link is dropped first).
        """
        raw = await self.transport.request(peer_id, HELLO_PROTOCOL, encode(await self.hello()))
        try:
            reply = decode_as(raw, Hello, limits=self.config.limits)
            check_hello(reply, peer_id)
        except RemoteProtocolError as exc:
            await self.drop_link(peer_id, f"bad hello reply: {exc}")
            raise
        self._learn_from(reply)
        return reply

    async def _handle_hello(self, peer_id: str, payload: bytes) -> bytes:
        hello = decode_as(payload, Hello, limits=self.config.limits)
        check_hello(hello, peer_id)
        self._learn_from(hello)
        return encode(await self.hello())

    def _learn_from(self, hello: Hello) -> None:
        introduced = self.book.record_hello(hello, trio.current_time())
        event(log, logging.INFO, "hello", peer=hello.peer_id, name=hello.name,
              agent=hello.agent, samples=hello.samples, introduced=len(introduced))
        for addr in (*self.book.addresses(hello.peer_id)[:1], *introduced):
            self.dial(addr)

    def dial(self, addr: str) -> None:
        """Keep a link to the peer at `addr` up from now on (see `peers.Dialer`)."""
        self.dialer.dial(addr)

    async def _dial_and_hello(self, addr: str) -> str:
        peer_id = await self.transport.connect(addr)
        await self.members.introduce(peer_id)  # fleet mode: certificates first
        await self.say_hello(peer_id)
        return peer_id

    async def drop_link(self, peer_id: str, reason: str) -> None:
        """Log a peer's protocol violation and drop its link (the node keeps running).

        The peer is blocked for `net.reconnect_max_s`: its requests are refused and we do not
        dial it, and its link is closed (`Transport.disconnect`).
        """
        self._links_dropped += 1
        blocked = self.config.net.reconnect_max_s
        event(log, logging.WARNING, "link_dropped", peer=peer_id, blocked_s=blocked,
              reason=reason[:300])
        self.book.block(peer_id, trio.current_time() + blocked)
        await self.transport.disconnect(peer_id)

    # -- services --------------------------------------------------------------------------

    def _guard(self, protocol: str,
               handler: Callable[[str, bytes], Awaitable[bytes]]
               ) -> Callable[[str, bytes], Awaitable[bytes]]:
        """The receive boundary: a RemoteProtocolError drops the peer's link, then propagates
        so the transport resets the stream."""

        async def guarded(peer_id: str, payload: bytes) -> bytes:
            wait = self.book.blocked_for(peer_id, trio.current_time())
            if wait:
                raise RemoteProtocolError(f"link dropped; refused for another {wait:.1f} s")
            if protocol != MEMBER_PROTOCOL and not self.membership.is_member(peer_id):
                exc = self.members.refuse(peer_id, protocol)
                await self.drop_link(peer_id, f"{protocol}: {exc}")
                raise exc
            try:
                return await handler(peer_id, payload)
            except RemoteProtocolError as exc:
                await self.drop_link(peer_id, f"{protocol}: {exc}")
                raise
            except StoreError as exc:  # our disk, not the peer: refuse this request, go on
                event(log, logging.ERROR, "store_failed", peer=peer_id, protocol=protocol,
                      error=str(exc)[:300])
                return encode(ErrorReply(code="internal", message="store unavailable"))

        return guarded

    async def run_discovery(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                            ) -> None:
        """Dial the peers the transport discovers: on the LAN (mDNS, `net.mdns`) or at a
        rendezvous point (`net.rendezvous`)."""
        discovered = getattr(self.transport, "discovered", None)
        task_status.started()
        if discovered is None or not (self.config.net.mdns or self.config.net.rendezvous):
            return
        async for addr in discovered():
            event(log, logging.INFO, "peer_discovered", addr=addr)
            self.dialer.dial(addr, live=True)

    async def run_link_watcher(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Mirror the transport's PeerEvents into the PeerBook and the log."""
        events = self.transport.peer_events()
        task_status.started()
        async for ev in events:
            if self.book.set_connected(ev.peer_id, ev.connected):
                event(log, logging.INFO, "link_up" if ev.connected else "link_down",
                      peer=ev.peer_id)

    async def start(self) -> None:
        """Set handlers and start every service; dial the bootstrap peers."""
        t = self.transport
        t.set_handler(HELLO_PROTOCOL, self._guard(HELLO_PROTOCOL, self._handle_hello))
        t.set_handler(SHARE_PROTOCOL, self._guard(SHARE_PROTOCOL, self.share.handle_offer))
        t.set_handler(FETCH_PROTOCOL, self._guard(FETCH_PROTOCOL, self.share.handle_fetch))
        t.set_handler(RELAY_PROTOCOL, self._guard(RELAY_PROTOCOL, self.share.handle_relay))
        t.set_handler(MEMBER_PROTOCOL, self._guard(MEMBER_PROTOCOL, self.members.handle_member))
        for service in (self.run_link_watcher, self.share.run_fetcher, self.gossip.run,
                        self.members.run, self.dialer.run, self.run_discovery):
            await self._nursery.start(service)
        await self._nursery.start(run_peer_saver, self.book, self.store, self.offload,
                                  self._wall_clock)
        # Peers reached in an earlier life, most recently seen first (they may have moved:
        # their keepers forget dead addresses, and Hellos bring the new ones).
        saved = await self.offload(saved_addresses, self.store, self.peer_id)
        for addr in self.config.net.bootstrap:
            self.dialer.dial(addr, pinned=True)
        for addr in saved:
            self.dialer.dial(addr)
        event(log, logging.INFO, "node_started", peer_id=self.peer_id, name=self.config.name,
              listen=",".join(t.listen_addrs()))

    # -- statistics ------------------------------------------------------------------------

    def peers(self) -> tuple[PeerView, ...]:
        """Every peer we know or have counters for, connected first."""
        now = trio.current_time()
        stats = {p.peer_id: p for p in self.transport.statistics().peers}
        connected = set(self.transport.connected_peers())
        views = []
        for pid in sorted(set(stats) | set(self.book.peers)):
            s = stats.get(pid)
            info = self.book.peers.get(pid)
            # The address it advertised in Hello (dialable) beats the link's remote address,
            # which for a link it opened is an ephemeral port.
            address = (info.addrs[0] if info and info.addrs else "") or (
                s.address if s and s.address else "")
            views.append(PeerView(
                peer_id=pid, name=info.name if info else "", address=address,
                connected=pid in connected,
                connection_age_s=(now - s.connected_since)
                if s and s.connected_since is not None and pid in connected else None,
                bytes_in=s.bytes_in if s else 0, bytes_out=s.bytes_out if s else 0,
                last_message_age_s=(now - s.last_message_at)
                if s and s.last_message_at is not None else None,
            ))
        views.sort(key=lambda v: (not v.connected, v.peer_id))
        return tuple(views)

    async def statistics(self) -> NodeStats:
        """A frozen snapshot for the CLI: the store's counts are read in a thread, everything
        else when they are back (no await after it, so `wait_until` misses no change)."""
        local, received = await self.offload(
            lambda: (self.store.count_samples("local"), self.store.count_samples("received")))
        peers = self.peers()
        return NodeStats(
            peer_id=self.peer_id, name=self.config.name,
            listen_addrs=self.transport.listen_addrs(),
            uptime_s=trio.current_time() - self.started_at,
            peers_connected=sum(p.connected for p in peers), peers=peers,
            share=self.share.statistics(),
            samples_local=local, samples_received=received,
            gossip_received=self.gossip.counts["received"],
            gossip_rejected=self.gossip.counts["rejected"],
            links_dropped=self._links_dropped,
        )

    async def wait_until(self, condition: Callable[[NodeStats], bool]) -> NodeStats:
        """Return the first snapshot for which `condition` holds (re-checked on every change).

        Link and counter changes call `PeerBook.notify`, which wakes this.
        """
        while True:
            stats = await self.statistics()
            if condition(stats):
                return stats
            await self.book.changed()

    def wall_time(self) -> float:
        """Wall-clock seconds for records that outlive the process (store timestamps)."""
        return self._wall_clock()


@asynccontextmanager
async def open_node(home: Path, config: NodeConfig, *, identity: Identity | None = None,
                    store: Store | None = None, transport: Transport | None = None,
                    wall_clock: Callable[[], float] = time.time,
                    offload: Offload | None = None) -> AsyncIterator[Node]:
    """Run a node for the block: its store, transport and every service.

    Missing pieces come from `home`: the identity from `home/node.key`, a SqliteStore in
    `home`, a libp2p transport listening on `config.net.listen`. Pieces passed in are used as
    they are (tests pass MemoryNetwork transports) and are not closed here.
    `offload` runs blocking store/hash work (default: worker threads, THREADS at once).

    Raises:
        IdentityError, StoreError, TransportError: a piece could not be opened.
    """
    async with AsyncExitStack() as stack:
        if identity is None:
            identity = load_identity(home)
        membership = load_membership(home, config.trust, identity.peer_id, wall_clock)
        if membership.is_open:
            event(log, logging.WARNING, "membership_open",
                  note="OPEN FLEET: any libp2p key may join and take part; for local "
                       "experiments only (set [trust] membership = \"fleet\", docs/trust.md)")
        if store is None:
            from peerdata.store import SqliteStore

            store = await trio.to_thread.run_sync(SqliteStore.open, home)
            stack.callback(store.close)
        if transport is None:
            from peerdata.net.libp2p_transport import open_libp2p_transport

            transport = await stack.enter_async_context(
                _open_reusing_port(open_libp2p_transport, identity, config, store,
                                   psk=load_swarm_key(home)))  # optional fence (docs/trust.md)
        async with trio.open_nursery() as nursery:
            node = Node(config, identity, store, transport, nursery, wall_clock, offload,
                        membership, home)
            await node.start()
            try:
                yield node
            finally:
                nursery.cancel_scope.cancel()
                event(log, logging.INFO, "node_stopped", peer_id=node.peer_id)


@asynccontextmanager
async def _open_reusing_port(open_transport: Callable[..., Any], identity: Identity,
                             config: NodeConfig, store: Store, psk: str | None = None
                             ) -> AsyncIterator[Transport]:
    """The libp2p transport on the port this home listened on last time, when that port is
    free (`addresses.reuse_ports`), else as configured; the addresses are then remembered."""
    last = await trio.to_thread.run_sync(store.get_meta, LAST_LISTEN_KEY)
    listen = reuse_ports(config.net.listen, last)
    async with AsyncExitStack() as stack:
        try:
            transport = await stack.enter_async_context(open_transport(
                identity.private_key_bytes, replace(config.net, listen=listen), config.limits,
                psk=psk))
        except TransportError:
            if listen == config.net.listen:
                raise
            # taken between our check and the bind: any port, as configured
            transport = await stack.enter_async_context(open_transport(
                identity.private_key_bytes, config.net, config.limits, psk=psk))
        bare = tuple(a.rsplit("/p2p/", 1)[0] for a in transport.listen_addrs())
        await trio.to_thread.run_sync(remember_listen, store, bare)
        yield transport
