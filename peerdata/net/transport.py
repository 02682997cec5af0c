"""The network as the node sees it: peers, request/response streams, and gossip topics.

Rule: this interface moves opaque bytes. It knows nothing of peerdata's message types (those
live in `peerdata.wire`); it only frames, limits, times out and counts. Two implementations
satisfy it: `peerdata.net.libp2p_transport` (real libp2p) and
`peerdata.testing.memory_network` (in-process, for tests under trio's MockClock).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

import trio

# Gossip receivers silently drop any pubsub RPC over 1 MiB; this leaves room for the envelope
# (topic, sender ID, seqno, signature, public key). Larger data must go as a request.
MAX_GOSSIP_BYTES = 1024 * 1024 - 4096
# Each subscribe() channel holds this many undelivered messages.
GOSSIP_SUBSCRIBER_QUEUE = 256

# (peer_id, request payload) -> response payload. Raising RemoteProtocolError drops the link.
RequestHandler = Callable[[str, bytes], Awaitable[bytes]]
# (verified sender peer_id, data) -> accept? Rejected messages are neither delivered nor
# forwarded. Must be quick and must not block: it runs inside the gossip router.
GossipValidator = Callable[[str, bytes], bool]


class PeerEvent(NamedTuple):
    """A peer's link came up (`connected=True`) or went down."""

    peer_id: str
    connected: bool


@dataclass(frozen=True)
class GossipMessage:
    """One message received on a gossip topic; `sender` is the verified origin peer ID."""

    topic: str
    sender: str
    data: bytes


@dataclass(frozen=True)
class PeerStats:
    """What we know about one peer's link, for `peerdata peers`."""

    peer_id: str
    address: str
    connected: bool
    connected_since: float | None  # trio.current_time() when the link came up
    bytes_in: int
    bytes_out: int
    last_message_at: float | None


@dataclass(frozen=True)
class TransportStats:
    """A snapshot of the transport's counters."""

    peer_id: str
    listen_addrs: tuple[str, ...]
    peers: tuple[PeerStats, ...]
    # protocol or gossip topic -> (bytes in, bytes out), framing included (metrics)
    bytes_by_protocol: dict[str, tuple[int, int]] = field(default_factory=dict)


class Transport(Protocol):
    """A running network endpoint owned by one node."""

    @property
    def peer_id(self) -> str:
        """This node's peer ID (base58 libp2p form)."""
        ...

    def listen_addrs(self) -> tuple[str, ...]:
        """Full dialable multiaddrs, each ending in /p2p/<peer_id>."""
        ...

    async def connect(self, addr: str) -> str:
        """Dial a multiaddr that ends in /p2p/<peer_id>; return that peer ID.

        Raises TransportError when the peer cannot be reached within the connect timeout.
        """
        ...

    def connected_peers(self) -> tuple[str, ...]:
        """Peer IDs with an open link right now."""
        ...

    async def disconnect(self, peer_id: str) -> None:
        """Close the link to `peer_id` (no-op if there is none); in-flight requests fail."""
        ...

    def set_handler(self, protocol: str, handler: RequestHandler) -> None:
        """Serve `protocol` (e.g. "/peerdata/share/1.0.0") with `handler`."""
        ...

    async def request(self, peer_id: str, protocol: str, payload: bytes) -> bytes:
        """Open a stream, send one framed request, return the framed response.

        Raises TransportError on timeout, reset, or a vanished peer, and RemoteProtocolError
        when the response frame is oversized or malformed.
        """
        ...

    async def publish(self, topic: str, data: bytes) -> None:
        """Gossip `data` to the topic's subscribers (best effort; may be lost)."""
        ...

    def subscribe(self, topic: str) -> trio.MemoryReceiveChannel[GossipMessage]:
        """Receive what peers publish on `topic` (bounded channel: slow readers lose nothing
        already queued, but the publisher's gossip layer may drop under load)."""
        ...

    def set_gossip_validator(self, topic: str, validator: GossipValidator) -> None:
        """Check every message on `topic` before it is delivered or forwarded."""
        ...

    def set_gossip_score(self, score: Callable[[str], float]) -> None:
        """The node's score of each peer (peer ID -> [-1, 1], 0 neutral) for the gossip
        layer's peer scoring, where it has one (net/gossip.py)."""
        ...

    def peer_events(self) -> trio.MemoryReceiveChannel[PeerEvent]:
        """Links coming up and going down (bounded; unread events are dropped, not queued)."""
        ...

    def statistics(self) -> TransportStats:
        """Counters for the CLI."""
        ...
