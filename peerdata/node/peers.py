"""Peers: the hello handshake, the book of known peers, and the dialer that keeps links up.

Rule: a peer's Hello is believed only about that peer (its peer ID must be the link's); the
book is bounded (MAX_KNOWN_PEERS peers, MAX_ADDRS_PER_PEER addresses each, newest first), and
the dialer runs one keeper per peer, not per address: it tries that peer's addresses newest
first with exponential back-off from `net.reconnect_initial_s` to `net.reconnect_max_s`,
forgets an address after MAX_DIAL_FAILURES failed dials in a row (configured bootstrap
addresses are pinned, never forgotten), and ends when the peer has no address left. It never
sleeps except between dials or while a peer is blocked (dropped for a protocol violation, for
`net.reconnect_max_s`).

Discovery: Hello has no peer-list field in protocol version 1, so a node appends the newest
dialable address of each connected peer (ending in that peer's /p2p/ID) after its own in
`Hello.listen_addrs`; a receiver dials the ones whose /p2p/ID is not the sender's. An address
a peer gives for itself (or one we reached it at) goes first; one introduced by a third party
goes last and only while there is room, so introductions can never push out a live address.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import trio

from peerdata.errors import RemoteProtocolError, TransportError
from peerdata.node.logs import event
from peerdata.wire.messages import MAX_LISTEN_ADDRS, Hello

log = logging.getLogger("peerdata.node.peers")

MAX_KNOWN_PEERS = 256  # peers in the book; introductions of further peers are ignored
MAX_ADDRS_PER_PEER = 4  # addresses kept per peer, newest first (a restart adds one)
MAX_DIAL_FAILURES = 6  # failed dials in a row before an unpinned address is forgotten
DIAL_QUEUE = 256


def addr_peer_id(addr: str) -> str | None:
    """The peer ID an address ends with (`.../p2p/ID`), or None."""
    head, sep, tail = addr.rpartition("/p2p/")
    return tail if sep and head and "/" not in tail and tail else None


def next_delay(delay: float, initial: float, maximum: float) -> float:
    """The back-off after a failed dial that waited `delay`: doubled, capped at `maximum`."""
    return min(max(delay, initial) * 2, maximum)


def split_hello_addrs(hello: Hello) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(the sender's own addresses, addresses of other peers it introduces)."""
    own, others = [], []
    for addr in hello.listen_addrs:
        pid = addr_peer_id(addr)
        if pid is None or pid == hello.peer_id:
            own.append(addr)
        else:
            others.append(addr)
    return tuple(own), tuple(others)


@dataclass
class PeerInfo:
    """What we know about one peer (mutable; snapshots go out as frozen PeerView records)."""

    peer_id: str
    addrs: tuple[str, ...] = ()  # dialable (each ends in /p2p/peer_id), newest first
    name: str = ""
    agent: str = ""
    samples: int = 0
    hello_at: float | None = None
    connected: bool = False
    failures: dict[str, int] = field(default_factory=dict)  # failed dials in a row per addr
    pinned: frozenset[str] = frozenset()  # configured addresses, never forgotten


@dataclass
class PeerBook:
    """Known peers, their addresses and link state; `changed` wakes anyone waiting on it."""

    own_peer_id: str
    peers: dict[str, PeerInfo] = field(default_factory=dict)
    blocked_until: dict[str, float] = field(default_factory=dict)
    _changed: trio.Event = field(default_factory=trio.Event)

    def get(self, peer_id: str) -> PeerInfo:
        info = self.peers.get(peer_id)
        if info is None:
            info = self.peers[peer_id] = PeerInfo(peer_id)
        return info

    def notify(self) -> None:
        """Wake every `wait_for` caller so it re-checks its condition."""
        self._changed.set()
        self._changed = trio.Event()

    async def changed(self) -> None:
        """Return at the next `notify`."""
        await self._changed.wait()

    async def wait_for(self, condition: Callable[[], bool]) -> None:
        """Return once `condition()` holds (re-checked after every `notify`)."""
        while not condition():
            await self._changed.wait()

    def learn(self, addr: str, *, live: bool = False, pinned: bool = False) -> bool:
        """Remember a dialable address of another peer; True if the book now holds it.

        `live` (the peer gave it for itself, or we reached it there) puts it first; otherwise
        it goes last, and only if the peer has room. A peer not yet known is added only while
        the book holds fewer than MAX_KNOWN_PEERS.
        """
        pid = addr_peer_id(addr)
        if pid is None or pid == self.own_peer_id:
            return False
        if pid not in self.peers and len(self.peers) >= MAX_KNOWN_PEERS:
            return False
        info = self.get(pid)
        if pinned:
            info.pinned = info.pinned | {addr}
        if live or pinned:
            info.addrs = (addr, *(a for a in info.addrs if a != addr))
            info.failures.pop(addr, None)
        elif addr not in info.addrs and len(info.addrs) < MAX_ADDRS_PER_PEER:
            info.addrs = (*info.addrs, addr)
        # Over the cap: the oldest unpinned addresses go.
        while len(info.addrs) > MAX_ADDRS_PER_PEER:
            drop = next((a for a in reversed(info.addrs) if a not in info.pinned), None)
            if drop is None:
                break
            self._forget_addr(info, drop)
        return addr in info.addrs

    def addresses(self, peer_id: str) -> tuple[str, ...]:
        """The peer's addresses, newest first (empty if unknown)."""
        info = self.peers.get(peer_id)
        return info.addrs if info else ()

    def dial_failed(self, peer_id: str, addr: str) -> bool:
        """Count a failed dial; True if the address was forgotten (MAX_DIAL_FAILURES)."""
        info = self.peers.get(peer_id)
        if info is None or addr not in info.addrs:
            return False
        info.failures[addr] = info.failures.get(addr, 0) + 1
        if info.failures[addr] < MAX_DIAL_FAILURES or addr in info.pinned:
            return False
        self._forget_addr(info, addr)
        if not info.addrs and not info.connected and info.hello_at is None:
            del self.peers[peer_id]  # only ever introduced, never reached: nothing to keep
        self.notify()
        return True

    def dial_succeeded(self, peer_id: str, addr: str) -> None:
        """The peer answered at `addr`: it becomes its newest address."""
        self.learn(addr, live=True)

    @staticmethod
    def _forget_addr(info: PeerInfo, addr: str) -> None:
        info.addrs = tuple(a for a in info.addrs if a != addr)
        info.failures.pop(addr, None)

    def record_hello(self, hello: Hello, at: float) -> tuple[str, ...]:
        """Store a peer's Hello (its own addresses become its newest); return the other
        peers' addresses it introduced."""
        own, others = split_hello_addrs(hello)
        info = self.get(hello.peer_id)
        info.name, info.agent, info.samples, info.hello_at = (
            hello.name, hello.agent, hello.samples, at)
        suffix = f"/p2p/{hello.peer_id}"
        for addr in reversed(own[:MAX_ADDRS_PER_PEER]):  # reversed: the first ends up first
            self.learn(addr if addr.endswith(suffix) else addr + suffix, live=True)
        self.notify()
        return others

    def block(self, peer_id: str, until: float) -> None:
        """Refuse `peer_id`'s traffic, and do not dial it, until time `until`."""
        self.blocked_until[peer_id] = max(until, self.blocked_until.get(peer_id, until))
        self.notify()

    def blocked_for(self, peer_id: str, now: float) -> float:
        """Seconds left before `peer_id` may talk to us again (0 if it may now)."""
        until = self.blocked_until.get(peer_id)
        if until is None:
            return 0.0
        if until <= now:
            del self.blocked_until[peer_id]
            return 0.0
        return until - now

    def is_disconnected(self, peer_id: str) -> bool:
        return not self.get(peer_id).connected

    def set_connected(self, peer_id: str, connected: bool) -> bool:
        """Record a link going up or down; True if that changed anything."""
        info = self.get(peer_id)
        if info.connected == connected:
            return False
        info.connected = connected
        self.notify()
        return True

    def introductions(self) -> tuple[str, ...]:
        """The newest address of each connected peer, for our Hello."""
        return tuple(info.addrs[0] for info in self.peers.values()
                     if info.connected and info.addrs)

    def live_addresses(self) -> dict[str, str]:
        """peer ID -> newest address, for every connected peer (what is worth saving)."""
        return {pid: info.addrs[0] for pid, info in self.peers.items()
                if info.connected and info.addrs}


def build_hello(book: PeerBook, own_addrs: tuple[str, ...], name: str, agent: str,
                samples: int, round_id: int, protocol_version: int) -> Hello:
    """Our Hello: own addresses first, then introductions, within the field's limit."""
    addrs = (*own_addrs, *book.introductions())[:MAX_LISTEN_ADDRS]
    return Hello(protocol_version=protocol_version, peer_id=book.own_peer_id, name=name[:64],
                 listen_addrs=addrs, agent=agent, samples=samples, round_id=round_id)


def check_hello(hello: Hello, link_peer_id: str) -> None:
    """Refuse a Hello that claims to come from a peer other than the link's.

    Raises:
        RemoteProtocolError: `hello.peer_id` is not the authenticated peer of the link.
    """
    if hello.peer_id != link_peer_id:
        raise RemoteProtocolError(
            f"Hello claims peer ID {hello.peer_id} on a link authenticated as {link_peer_id}"
        )


# Dial one address, then say hello; return the peer ID (raise TransportError or RPE).
Dial = Callable[[str], Awaitable[str]]


async def keep_connected(peer_id: str, dial: Dial, book: PeerBook, initial_s: float,
                         max_s: float) -> None:
    """Keep a link to `peer_id` up: dial its addresses (newest first, then hello) until one
    works; after the link drops, start over. Returns once the peer has no address left.

    `dial` is an async callable taking the address and returning the peer ID; it raises
    TransportError (unreachable) or RemoteProtocolError (bad hello).
    """
    delay = initial_s
    while True:
        if wait := book.blocked_for(peer_id, trio.current_time()):
            await trio.sleep(wait)  # we dropped this peer for misbehaving; not before then
        info = book.peers.get(peer_id)
        if info is not None and info.connected:
            # The link is up already (perhaps the peer dialled us): nothing to do until it drops.
            await book.wait_for(lambda: book.is_disconnected(peer_id))
        addrs = book.addresses(peer_id)
        if not addrs:
            event(log, logging.INFO, "peer_forgotten", peer=peer_id)
            return
        for addr in addrs:
            try:
                await dial(addr)
            except (TransportError, RemoteProtocolError) as exc:
                forgotten = book.dial_failed(peer_id, addr)
                event(log, logging.INFO, "dial_failed", peer=peer_id, addr=addr,
                      retry_in_s=delay, forgotten=forgotten, error=str(exc)[:200])
                continue
            book.dial_succeeded(peer_id, addr)
            delay = initial_s
            break
        else:
            if not book.addresses(peer_id):
                continue  # every address forgotten: end now (above), do not sleep first
            await trio.sleep(delay)
            delay = next_delay(delay, initial_s, max_s)
            continue
        await book.wait_for(lambda: book.is_disconnected(peer_id))


class Dialer:
    """Starts one `keep_connected` task per known peer, from a bounded queue."""

    def __init__(self, book: PeerBook, dial: Dial, initial_s: float, max_s: float) -> None:
        self._book = book
        self._dial = dial
        self._delays = (initial_s, max_s)
        self._keepers: set[str] = set()
        self._send, self._recv = trio.open_memory_channel[str](DIAL_QUEUE)

    def dial(self, addr: str, *, live: bool = False, pinned: bool = False) -> None:
        """Keep a link to the peer at `addr` up from now on (its keeper tries `addr` too)."""
        if not self._book.learn(addr, live=live, pinned=pinned):
            return
        pid = addr_peer_id(addr)
        if pid is None or pid in self._keepers:
            return
        try:
            self._send.send_nowait(pid)
            self._keepers.add(pid)
        except trio.WouldBlock:
            event(log, logging.WARNING, "dial_queue_full", addr=addr)

    def keepers(self) -> int:
        """How many peers have a keeper (at most MAX_KNOWN_PEERS)."""
        return len(self._keepers)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Run the keepers until cancelled."""
        async with trio.open_nursery() as nursery:
            task_status.started()
            async for pid in self._recv:
                nursery.start_soon(self._keep, pid)

    async def _keep(self, pid: str) -> None:
        try:
            await keep_connected(pid, self._dial, self._book, *self._delays)
        finally:
            self._keepers.discard(pid)
