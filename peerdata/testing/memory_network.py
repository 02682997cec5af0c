"""An in-process network of Transports for tests, with seeded, deterministic fault injection.

Rule: only trio primitives and `trio.current_time()`, so a whole swarm runs under
`trio.testing.MockClock(autojump_threshold=0)`; every random choice is drawn from the
network's seeded generator at the moment a message is sent, so a seed replays a run.

It mirrors the libp2p transport's observable behaviour: length-prefix byte counts, limits,
timeouts, error types, self-delivery of gossip, multi-hop gossip over the link graph (a
validator that rejects a message also stops it from being forwarded), and PeerEvents.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import trio

from peerdata.config import LimitsConfig, NetConfig
from peerdata.errors import LocalProtocolError
from peerdata.testing.memory_transport import MemoryTransport

__all__ = ["Faults", "MemoryNetwork", "MemoryTransport"]


@dataclass(frozen=True)
class Faults:
    """Probabilities applied independently to each message (each gossip delivery, each
    request and each response)."""

    drop: float = 0.0
    duplicate: float = 0.0
    delay: float = 0.0
    max_delay_s: float = 1.0

    def __post_init__(self) -> None:
        for name in ("drop", "duplicate", "delay"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"Faults.{name} must be in [0, 1]")
        if self.max_delay_s < 0:
            raise ValueError("Faults.max_delay_s must be >= 0")


@dataclass(frozen=True)
class _Plan:
    """What happens to one message: how many copies, each after what delay."""

    delays: tuple[float, ...]


class MemoryNetwork:
    """A set of in-process peers; links, partitions and crashes are controlled by the test."""

    def __init__(self, seed: int = 0, net: NetConfig | None = None,
                 limits: LimitsConfig | None = None) -> None:
        self.net = net or NetConfig()
        self.limits = limits or LimitsConfig()
        self._random = random.Random(seed)
        self._peers: dict[str, MemoryTransport] = {}
        self._links: set[frozenset[str]] = set()
        self._partitions: set[frozenset[str]] = set()
        self.gossip_faults = Faults()
        self.request_faults = Faults()

    def set_faults(self, *, gossip: Faults | None = None,
                   requests: Faults | None = None) -> None:
        """Replace the fault probabilities for gossip deliveries and/or request messages."""
        if gossip is not None:
            self.gossip_faults = gossip
        if requests is not None:
            self.request_faults = requests

    @asynccontextmanager
    async def open_transport(self, peer_id: str, *, net: NetConfig | None = None,
                             limits: LimitsConfig | None = None
                             ) -> AsyncIterator[MemoryTransport]:
        """Join the network as `peer_id` for the block (again after `kill`: a restart)."""
        if peer_id in self._peers:
            raise LocalProtocolError(f"peer {peer_id} is already running on this network")
        async with trio.open_nursery() as nursery:
            transport = MemoryTransport(self, peer_id, net or self.net, limits or self.limits,
                                        nursery)
            self._peers[peer_id] = transport
            try:
                yield transport
            finally:
                self._leave(transport)
                nursery.cancel_scope.cancel()

    def partition(self, a: str, b: str) -> None:
        """Cut the link between `a` and `b` and refuse any traffic between them until heal."""
        pair = frozenset((a, b))
        self._partitions.add(pair)
        self.unlink(a, b)

    def heal(self, a: str, b: str) -> None:
        """Allow traffic between `a` and `b` again (they stay unlinked until one connects)."""
        self._partitions.discard(frozenset((a, b)))

    def kill(self, peer_id: str) -> None:
        """Crash `peer_id`: links drop, in-flight requests to it fail, its tasks stop."""
        transport = self._peers.get(peer_id)
        if transport is not None:
            self._leave(transport)

    # -- used by MemoryTransport ------------------------------------------------------------

    def reachable(self, a: str, b: str) -> bool:
        return a in self._peers and b in self._peers and frozenset((a, b)) not in self._partitions

    def peer(self, peer_id: str) -> MemoryTransport | None:
        return self._peers.get(peer_id)

    def link(self, a: str, b: str) -> None:
        pair = frozenset((a, b))
        if pair in self._links:
            return
        self._links.add(pair)
        self._peers[a].ledger.link_up(b, self._peers[b].listen_addrs()[0])
        self._peers[b].ledger.link_up(a, self._peers[a].listen_addrs()[0])

    def neighbours(self, peer_id: str) -> list[str]:
        return sorted(p for pair in self._links if peer_id in pair for p in pair
                      if p != peer_id)

    def plan(self, faults: Faults) -> _Plan:
        """Draw the fate of one message now, in call order (hence deterministic)."""
        if self._random.random() < faults.drop:
            return _Plan(())
        copies = 2 if self._random.random() < faults.duplicate else 1
        delays = tuple(
            self._random.uniform(0.0, faults.max_delay_s)
            if self._random.random() < faults.delay else 0.0
            for _ in range(copies)
        )
        return _Plan(delays)

    def unlink(self, a: str, b: str) -> None:
        pair = frozenset((a, b))
        if pair not in self._links:
            return
        self._links.discard(pair)
        for me, other in ((a, b), (b, a)):
            transport = self._peers.get(me)
            if transport is not None:
                transport.ledger.link_down(other)

    def _leave(self, transport: MemoryTransport) -> None:
        if self._peers.get(transport.peer_id) is not transport:
            return
        for other in self.neighbours(transport.peer_id):
            self.unlink(transport.peer_id, other)
        del self._peers[transport.peer_id]
        transport.die()
