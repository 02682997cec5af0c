"""Peers: the hello handshake, the book of known peers, and the dialer that keeps links up.

Rule: a peer's Hello is believed only about that peer (its peer ID must be the link's); the
dialer retries every known address forever with exponential back-off from
`net.reconnect_initial_s` to `net.reconnect_max_s`, and never sleeps except between dials or
while a peer is blocked (dropped for a protocol violation, for `net.reconnect_max_s`).

Discovery: Hello has no peer-list field in protocol version 1, so a node appends the dialable
addresses of its connected peers (each ending in that peer's /p2p/ID) after its own in
`Hello.listen_addrs`; a receiver dials the ones whose /p2p/ID is not the sender's.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import trio

from peerdata.errors import RemoteProtocolError, TransportError
from peerdata.node.logs import event
from peerdata.wire.messages import MAX_LISTEN_ADDRS, Hello

log = logging.getLogger("peerdata.node.peers")


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
    addrs: tuple[str, ...] = ()
    name: str = ""
    agent: str = ""
    samples: int = 0
    hello_at: float | None = None
    connected: bool = False


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

    def learn(self, addr: str) -> bool:
        """Remember a dialable address; True if it names a peer we did not know."""
        pid = addr_peer_id(addr)
        if pid is None or pid == self.own_peer_id:
            return False
        new = pid not in self.peers
        info = self.get(pid)
        if addr not in info.addrs:
            info.addrs = (*info.addrs, addr)
        return new

    def record_hello(self, hello: Hello, at: float) -> tuple[str, ...]:
        """Store a peer's Hello; return the other peers' addresses it introduced."""
        own, others = split_hello_addrs(hello)
        info = self.get(hello.peer_id)
        info.name, info.agent, info.samples, info.hello_at = (
            hello.name, hello.agent, hello.samples, at)
        info.addrs = tuple(dict.fromkeys((*info.addrs, *own)))
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
        """One dialable address of each connected peer, for our Hello."""
        out = []
        for info in self.peers.values():
            if info.connected and info.addrs:
                out.append(info.addrs[0])
        return tuple(out)


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


async def keep_connected(
    addr: str,
    dial: Dial,
    book: PeerBook,
    initial_s: float,
    max_s: float,
) -> None:
    """Dial `addr` (and hello) until it works; after the link drops, start over. Forever.

    `dial` is an async callable taking the address and returning the peer ID; it raises
    TransportError (unreachable) or RemoteProtocolError (bad hello).
    """
    delay = initial_s
    pid = addr_peer_id(addr) or ""
    while True:
        if pid and (wait := book.blocked_for(pid, trio.current_time())):
            await trio.sleep(wait)  # we dropped this peer for misbehaving; not before then
        if pid and book.get(pid).connected:
            # The link is up already (perhaps the peer dialled us): nothing to do until it drops.
            await book.wait_for(lambda: not book.get(pid).connected)
        try:
            peer_id = await dial(addr)
        except (TransportError, RemoteProtocolError) as exc:
            event(log, logging.INFO, "dial_failed", peer=pid, addr=addr, retry_in_s=delay,
                  error=str(exc)[:200])
            await trio.sleep(delay)
            delay = next_delay(delay, initial_s, max_s)
            continue
        delay = initial_s
        await book.wait_for(functools.partial(book.is_disconnected, peer_id))
