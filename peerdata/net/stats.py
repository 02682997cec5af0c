"""Per-peer link counters shared by every Transport implementation.

Rule: counters are mutated only through `PeerLedger` methods and leave only as frozen
`PeerStats`/`TransportStats` snapshots; the time always comes from `trio.current_time()`.
"""

from __future__ import annotations

from dataclasses import dataclass

import trio

from peerdata.net.transport import PeerEvent, PeerStats, TransportStats


@dataclass
class _PeerCounters:
    address: str = ""
    connected: bool = False
    connected_since: float | None = None
    bytes_in: int = 0
    bytes_out: int = 0
    last_message_at: float | None = None
    errors: int = 0


class PeerLedger:
    """Mutable counters for every peer we have talked to, plus the peer-event channel."""

    def __init__(self, events_queue: int = 256) -> None:
        self._peers: dict[str, _PeerCounters] = {}
        self._events_send, self._events_receive = trio.open_memory_channel[PeerEvent](
            events_queue
        )
        self.events_dropped = 0
        self._by_protocol: dict[str, list[int]] = {}  # protocol -> [bytes in, bytes out]

    def _get(self, peer_id: str) -> _PeerCounters:
        return self._peers.setdefault(peer_id, _PeerCounters())

    def events(self) -> trio.MemoryReceiveChannel[PeerEvent]:
        """A clone of the receive side; each clone competes for the same events."""
        return self._events_receive.clone()

    def link_up(self, peer_id: str, address: str) -> None:
        """Record that a link to `peer_id` is open; emit an event if it was down."""
        counters = self._get(peer_id)
        if address:
            counters.address = address
        if not counters.connected:
            counters.connected = True
            counters.connected_since = trio.current_time()
            self._emit(PeerEvent(peer_id, True))

    def link_down(self, peer_id: str) -> None:
        """Record that the link to `peer_id` closed; emit an event if it was up."""
        counters = self._get(peer_id)
        if counters.connected:
            counters.connected = False
            counters.connected_since = None
            self._emit(PeerEvent(peer_id, False))

    def note_address(self, peer_id: str, address: str) -> None:
        """Remember the address we dialled `peer_id` at."""
        self._get(peer_id).address = address

    def received(self, peer_id: str, nbytes: int, protocol: str = "") -> None:
        """Count `nbytes` that arrived from `peer_id` as (part of) one message."""
        if protocol:
            self._by_protocol.setdefault(protocol, [0, 0])[0] += nbytes
        counters = self._get(peer_id)
        counters.bytes_in += nbytes
        counters.last_message_at = trio.current_time()

    def sent(self, peer_id: str, nbytes: int, protocol: str = "") -> None:
        """Count `nbytes` written to `peer_id`."""
        if protocol:
            self._by_protocol.setdefault(protocol, [0, 0])[1] += nbytes
        self._get(peer_id).bytes_out += nbytes

    def error(self, peer_id: str) -> None:
        """Count one protocol error or failed exchange with `peer_id`."""
        self._get(peer_id).errors += 1

    def errors(self, peer_id: str) -> int:
        """Protocol errors and failed exchanges seen with `peer_id` so far."""
        counters = self._peers.get(peer_id)
        return counters.errors if counters else 0

    def snapshot(self, peer_id: str, listen_addrs: tuple[str, ...]) -> TransportStats:
        """Return a frozen copy of every peer's counters."""
        peers = tuple(
            PeerStats(
                peer_id=pid,
                address=c.address,
                connected=c.connected,
                connected_since=c.connected_since,
                bytes_in=c.bytes_in,
                bytes_out=c.bytes_out,
                last_message_at=c.last_message_at,
            )
            for pid, c in sorted(self._peers.items())
        )
        return TransportStats(peer_id=peer_id, listen_addrs=listen_addrs, peers=peers,
                              bytes_by_protocol={p: (i, o) for p, (i, o)
                                                 in sorted(self._by_protocol.items())})

    def published(self, topic: str, nbytes: int) -> None:
        """Count `nbytes` of gossip we published on `topic` (to the mesh, not one peer)."""
        self._by_protocol.setdefault(topic, [0, 0])[1] += nbytes

    def _emit(self, event: PeerEvent) -> None:
        try:
            self._events_send.send_nowait(event)
        except trio.WouldBlock:
            # Nobody is draining peer_events(); statistics() still shows the truth.
            self.events_dropped += 1
