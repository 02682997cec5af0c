"""What `peerdata status` and `peerdata peers` show of a node: frozen snapshots.

Rule: plain values only; `Node.statistics()` and `Node.peers()` build them.
"""

from __future__ import annotations

from dataclasses import dataclass

from peerdata.node.share import ShareStats


@dataclass(frozen=True)
class PeerView:
    """One peer as `peerdata peers` shows it."""

    peer_id: str
    name: str
    address: str
    connected: bool
    connection_age_s: float | None
    bytes_in: int
    bytes_out: int
    last_message_age_s: float | None


@dataclass(frozen=True)
class NodeStats:
    """A snapshot of the whole node, rendered by `peerdata status`."""

    peer_id: str
    name: str
    listen_addrs: tuple[str, ...]
    uptime_s: float
    peers_connected: int
    peers: tuple[PeerView, ...]
    share: ShareStats
    samples_local: int
    samples_received: int
    gossip_received: int
    gossip_rejected: int
    links_dropped: int
