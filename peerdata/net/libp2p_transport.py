"""The Transport protocol over real libp2p: Noise + yamux links, framed request streams, gossip.

Rule: every libp2p exception stops here. Callers see TransportError (the peer is unreachable,
slow, or vanished), RemoteProtocolError (the peer sent something invalid) or
LocalProtocolError (we tried to send something invalid), and every network wait is bounded by
a timeout from NetConfig. Inbound request streams are served within per-peer limits by
`peerdata.net.inbound`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import trio
from libp2p.abc import IHost, INetConn, INetStream, INetwork, INotifee
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from multiaddr import Multiaddr

from peerdata.config import LimitsConfig, NetConfig
from peerdata.errors import LocalProtocolError, RemoteProtocolError, TransportError
from peerdata.net.framing import (
    HEADER_BYTES,
    FrameEOF,
    encode_header,
    read_frame,
)
from peerdata.net.gossip import Gossip, open_gossip
from peerdata.net.host import build_host, key_pair_from_seed, run_host
from peerdata.net.inbound import LINK_ERRORS, InboundServer, reset_stream, write_frame
from peerdata.net.rendezvous import run_rendezvous_client, serve_rendezvous
from peerdata.net.stats import PeerLedger
from peerdata.net.transport import (
    GossipMessage,
    GossipValidator,
    PeerEvent,
    RequestHandler,
    TransportStats,
)

logger = logging.getLogger("peerdata.net")

MAX_DISCOVERED = 64  # mDNS/rendezvous finds queued for the node; more are dropped (found again)


class Libp2pTransport:
    """A running libp2p endpoint; create with `open_libp2p_transport`."""

    def __init__(self, host: IHost, gossip: Gossip, ledger: PeerLedger, net: NetConfig,
                 limits: LimitsConfig) -> None:
        self._host = host
        self._gossip = gossip
        self._ledger = ledger
        self._net = net
        self._limits = limits
        self._peer_id = host.get_id().to_base58()
        gossip.on_receive = self._count_gossip
        self._inbound = InboundServer(ledger, net, limits, self.disconnect)
        self._token = trio.lowlevel.current_trio_token()
        self._discovered_send, self._discovered = trio.open_memory_channel[str](MAX_DISCOVERED)

    @property
    def peer_id(self) -> str:
        """This node's peer ID (base58)."""
        return self._peer_id

    def listen_addrs(self) -> tuple[str, ...]:
        """Full dialable multiaddrs, each ending in /p2p/<peer_id>."""
        suffix = f"/p2p/{self._peer_id}"
        addrs = (str(a) for a in self._host.get_addrs())
        return tuple(a if a.endswith(suffix) else a + suffix for a in addrs)

    async def connect(self, addr: str) -> str:
        """Dial `addr` (ending in /p2p/<peer_id>) and return the peer ID.

        A peer that failed recently is dialled anyway: libp2p's 60 s negative cache entry for
        it is cleared first, so a restarted peer is reachable at once.

        Raises:
            TransportError: the address is malformed, is ours, or the peer did not answer
                within `net.connect_timeout_s`.
        """
        try:
            info = info_from_p2p_addr(Multiaddr(addr))
        except Exception as exc:
            raise TransportError(f"{addr!r} is not a multiaddr ending in /p2p/<id>: {exc}") \
                from None
        peer_id = info.peer_id.to_base58()
        if peer_id == self._peer_id:
            raise TransportError(f"{addr} is this node's own address")
        self._host.get_network().unblock_peer(info.peer_id)  # type: ignore[attr-defined]
        try:
            with trio.fail_after(self._net.connect_timeout_s):
                await self._host.connect(info)
        except trio.TooSlowError:
            raise TransportError(
                f"peer {peer_id} at {addr}: no connection within {self._net.connect_timeout_s} s"
            ) from None
        except Exception as exc:  # libp2p's dial errors have no common base
            raise TransportError(f"peer {peer_id} at {addr}: connect failed: {exc}") from exc
        self._ledger.note_address(peer_id, addr)
        self._ledger.link_up(peer_id, addr)
        logger.debug("connected to %s at %s", peer_id, addr)
        return peer_id

    def connected_peers(self) -> tuple[str, ...]:
        """Peer IDs with an open link right now."""
        network = self._host.get_network()
        return tuple(
            pid.to_base58()
            for pid, conns in network.connections.items()
            if any(not c.is_closed for c in conns)
        )

    async def disconnect(self, peer_id: str) -> None:
        """Close the link to `peer_id`; libp2p takes ~200 ms, so links are normally kept."""
        pid = _parse_peer_id(peer_id)
        with trio.move_on_after(self._net.connect_timeout_s):
            try:
                await self._host.disconnect(pid)
            except Exception:
                logger.debug("disconnect from %s failed", peer_id, exc_info=True)

    def discovered(self) -> trio.MemoryReceiveChannel[str]:
        """Dialable addresses (ending in /p2p/ID) of peers found by mDNS (`net.mdns`) or at
        a rendezvous point (`net.rendezvous`); bounded: found peers beyond MAX_DISCOVERED
        unread are dropped."""
        return self._discovered

    def _on_discovered(self, info: Any) -> None:
        # zeroconf's thread: hand each address to the trio loop, never block it
        pid = info.peer_id.to_base58()
        if pid == self._peer_id:
            return
        for addr in info.addrs:
            text = str(addr)
            full = text if "/p2p/" in text else f"{text}/p2p/{pid}"
            with contextlib.suppress(trio.RunFinishedError):
                self._token.run_sync_soon(self._queue_discovered, full)

    def _queue_discovered(self, addr: str) -> None:
        with contextlib.suppress(trio.WouldBlock, trio.ClosedResourceError):
            self._discovered_send.send_nowait(addr)

    def peer_events(self) -> trio.MemoryReceiveChannel[PeerEvent]:
        """Links coming up and going down, in order (bounded: if nobody reads, events are
        dropped and counted, never queued without limit)."""
        return self._ledger.events()

    def set_handler(self, protocol: str, handler: RequestHandler) -> None:
        """Serve `protocol` with `handler`; each request arrives on its own stream."""

        async def on_stream(stream: INetStream) -> None:
            await self._inbound.serve(protocol, handler, stream)

        self._host.set_stream_handler(TProtocol(protocol), on_stream)

    async def request(self, peer_id: str, protocol: str, payload: bytes) -> bytes:
        """Send one framed request on a new stream and return the framed response.

        Raises:
            LocalProtocolError: `payload` exceeds `limits.max_message_bytes`.
            TransportError: no link, the peer does not serve `protocol`, reset, vanished,
                or no full response within `net.request_timeout_s`.
            RemoteProtocolError: the response declares a length above the limit.
        """
        header = encode_header(len(payload), self._limits.max_message_bytes)
        pid = _parse_peer_id(peer_id)
        timeout = self._net.request_timeout_s
        stream: INetStream | None = None
        try:
            with trio.fail_after(timeout):
                stream = await self._host.new_stream(pid, [TProtocol(protocol)])
                await write_frame(self._ledger, peer_id, stream, header, payload, protocol)
                response = await read_frame(stream.read, self._limits.max_message_bytes)
                self._ledger.received(peer_id, HEADER_BYTES + len(response), protocol)
                await stream.close()
                return response
        except trio.TooSlowError:
            self._ledger.error(peer_id)
            await reset_stream(stream)
            raise TransportError(
                f"{protocol} request to {peer_id}: no response within {timeout} s"
            ) from None
        except FrameEOF as exc:
            self._ledger.error(peer_id)
            await reset_stream(stream)
            raise TransportError(f"{protocol} request to {peer_id}: {exc}") from None
        except RemoteProtocolError as exc:
            self._ledger.error(peer_id)
            await reset_stream(stream)
            logger.warning("peer %s: bad %s response: %s", peer_id, protocol, exc)
            raise
        except LINK_ERRORS as exc:
            self._ledger.error(peer_id)
            await reset_stream(stream)
            raise TransportError(
                f"{protocol} request to {peer_id} failed: {type(exc).__name__}: {exc}"
            ) from exc
        except BaseException:
            await reset_stream(stream)  # cancelled (or a bug): do not leave the stream half-open
            raise

    async def publish(self, topic: str, data: bytes) -> None:
        """Gossip `data` on `topic` (best effort).

        Raises:
            LocalProtocolError: `data` is larger than receivers accept (see gossip.py).
        """
        await self._gossip.publish(topic, data)
        self._ledger.published(topic, len(data))

    def subscribe(self, topic: str) -> trio.MemoryReceiveChannel[GossipMessage]:
        """Receive every message delivered on `topic` (a new bounded channel per call)."""
        return self._gossip.subscribe(topic)

    def set_gossip_validator(self, topic: str, validator: GossipValidator) -> None:
        """Reject messages on `topic` before delivery and before they are forwarded."""
        self._gossip.set_validator(topic, validator)

    def set_gossip_score(self, score: Callable[[str], float]) -> None:
        """Feed GossipSub's application score (net/gossip.py: what it does with it)."""
        self._gossip.set_peer_score(score)

    def connection_counts(self) -> dict[str, int]:
        """py-libp2p's own connection counters (Swarm.get_metrics: total, inbound, outbound)."""
        return {str(k): int(v) for k, v in self._host.get_network().get_metrics().items()}

    def statistics(self) -> TransportStats:
        """A frozen snapshot of per-peer counters."""
        return self._ledger.snapshot(self._peer_id, self.listen_addrs())

    def _count_gossip(self, message: GossipMessage) -> None:
        self._ledger.received(message.sender, len(message.data), message.topic)


class _LinkNotifee(INotifee):
    """Feeds libp2p's connection events into the ledger (which emits PeerEvents)."""

    def __init__(self, ledger: PeerLedger) -> None:
        self._ledger = ledger

    async def connected(self, network: INetwork, conn: INetConn) -> None:
        peer_id = conn.muxed_conn.peer_id
        addrs = conn.get_transport_addresses()
        address = f"{addrs[0]}/p2p/{peer_id.to_base58()}" if addrs else ""
        self._ledger.link_up(peer_id.to_base58(), address)

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        peer_id = conn.muxed_conn.peer_id
        # With one connection a peer this is the link going down, but a simultaneous dial
        # from both ends briefly makes two: only report when none is left.
        remaining = [c for c in network.connections.get(peer_id, ()) if not c.is_closed]
        if not remaining:
            self._ledger.link_down(peer_id.to_base58())

    async def opened_stream(self, network: INetwork, stream: INetStream) -> None:
        return None

    async def closed_stream(self, network: INetwork, stream: INetStream) -> None:
        return None

    async def listen(self, network: INetwork, multiaddr: Multiaddr) -> None:
        return None

    async def listen_close(self, network: INetwork, multiaddr: Multiaddr) -> None:
        return None


def _parse_peer_id(peer_id: str) -> ID:
    try:
        return ID.from_base58(peer_id)
    except Exception:
        raise LocalProtocolError(f"{peer_id!r} is not a base58 peer ID") from None


@asynccontextmanager
async def open_libp2p_transport(private_key_bytes: bytes, net: NetConfig,
                                limits: LimitsConfig, *, psk: str | None = None
                                ) -> AsyncIterator[Libp2pTransport]:
    """Start a libp2p host with this identity, listening on `net.listen`, for the block.

    Args:
        private_key_bytes: the raw 32-byte Ed25519 seed from the node's identity file.
        net: listen addresses, timeouts and the gossip heartbeat.
        limits: `max_message_bytes` bounds every request and response frame.
        psk: a fleet's pre-shared key (64 hex chars): only peers with it can connect.

    Raises:
        IdentityError: the key is not a 32-byte seed.
        TransportError: the listen addresses cannot be bound.
    """
    host = build_host(key_pair_from_seed(private_key_bytes), net, psk=psk)
    ledger = PeerLedger()
    host.get_network().register_notifee(_LinkNotifee(ledger))
    async with run_host(host, net), open_gossip(host, net) as gossip:
        transport = Libp2pTransport(host, gossip, ledger, net, limits)
        logger.info("listening as %s on %s", transport.peer_id,
                    ", ".join(transport.listen_addrs()))
        if net.rendezvous_serve:
            serve_rendezvous(host)
        async with trio.open_nursery() as nursery:
            if net.rendezvous:
                nursery.start_soon(run_rendezvous_client, host, net,
                                   transport._queue_discovered)
            if not net.mdns:
                yield transport
                nursery.cancel_scope.cancel()
                return
            from libp2p.discovery.events.peerDiscovery import peerDiscovery

            # libp2p's discovery events are one process-wide emitter: our handler leaves with us
            peerDiscovery.register_peer_discovered_handler(transport._on_discovered)
            try:
                yield transport
            finally:
                peerDiscovery.unregister_peer_discovered_handler(transport._on_discovered)
                nursery.cancel_scope.cancel()
