"""One peer of the in-process `MemoryNetwork`: the Transport a test node runs on.

Rule: as `peerdata.testing.memory_network` (trio primitives and `trio.current_time()` only;
every fault drawn from the network's seeded generator when a message is sent); the observable
behaviour mirrors the libp2p transport: length-prefix byte counts, limits, timeouts, error
types, self-delivery of gossip, multi-hop gossip (a rejecting validator stops forwarding).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import trio

from peerdata.config import LimitsConfig, NetConfig
from peerdata.errors import LocalProtocolError, RemoteProtocolError, TransportError
from peerdata.net.framing import HEADER_BYTES, encode_header
from peerdata.net.stats import PeerLedger
from peerdata.net.transport import (
    GOSSIP_SUBSCRIBER_QUEUE,
    MAX_GOSSIP_BYTES,
    GossipMessage,
    GossipValidator,
    PeerEvent,
    RequestHandler,
    TransportStats,
)

if TYPE_CHECKING:
    from peerdata.testing.memory_network import MemoryNetwork

logger = logging.getLogger("peerdata.net")


class _Reply:
    """The one response slot of an in-flight request."""

    def __init__(self) -> None:
        self.done = trio.Event()
        self.payload: bytes | None = None
        self.error: Exception | None = None

    def set(self, payload: bytes | None = None, error: Exception | None = None) -> None:
        if not self.done.is_set():
            self.payload, self.error = payload, error
            self.done.set()


class MemoryTransport:
    """One peer on a MemoryNetwork; implements `peerdata.net.transport.Transport`."""

    def __init__(self, network: MemoryNetwork, peer_id: str, net: NetConfig,
                 limits: LimitsConfig, nursery: trio.Nursery) -> None:
        self._network = network
        self._peer_id = peer_id
        self._net = net
        self._limits = limits
        self._nursery = nursery
        self._handlers: dict[str, RequestHandler] = {}
        self._subscribers: dict[str, list[trio.MemorySendChannel[GossipMessage]]] = {}
        self._validators: dict[str, GossipValidator] = {}
        self._alive = True
        self._task_scopes: set[trio.CancelScope] = set()
        self.ledger = PeerLedger()
        self.gossip_dropped = 0  # deliveries lost because a subscriber's queue was full

    @property
    def peer_id(self) -> str:
        """This peer's ID (any string chosen by the test)."""
        return self._peer_id

    def listen_addrs(self) -> tuple[str, ...]:
        """One pseudo-multiaddr ending in /p2p/<peer_id>."""
        return (f"/memory/{self._peer_id}/p2p/{self._peer_id}",)

    async def connect(self, addr: str) -> str:
        """Link to the peer named at the end of `addr`."""
        self._check_alive()
        head, sep, peer_id = addr.rpartition("/p2p/")
        if not sep or not peer_id:
            raise TransportError(f"{addr!r} is not an address ending in /p2p/<id>")
        if peer_id == self._peer_id:
            raise TransportError(f"{addr} is this node's own address")
        await trio.lowlevel.checkpoint()
        if self._network.peer(peer_id) is None:
            raise TransportError(f"peer {peer_id} at {addr}: connection refused")
        if not self._network.reachable(self._peer_id, peer_id):
            await trio.sleep(self._net.connect_timeout_s)  # a partition is a black hole
            raise TransportError(
                f"peer {peer_id} at {addr}: no connection within {self._net.connect_timeout_s} s"
            )
        self._network.link(self._peer_id, peer_id)
        self.ledger.note_address(peer_id, addr)
        return peer_id

    def connected_peers(self) -> tuple[str, ...]:
        """Peer IDs with an open link right now."""
        if not self._alive:
            return ()
        return tuple(self._network.neighbours(self._peer_id))

    async def disconnect(self, peer_id: str) -> None:
        """Close the link to `peer_id` (both ends see the link go down)."""
        await trio.lowlevel.checkpoint()
        self._network.unlink(self._peer_id, peer_id)

    def peer_events(self) -> trio.MemoryReceiveChannel[PeerEvent]:
        """Links coming up and going down, in order."""
        return self.ledger.events()

    def set_handler(self, protocol: str, handler: RequestHandler) -> None:
        """Serve `protocol` with `handler`."""
        self._handlers[protocol] = handler

    async def request(self, peer_id: str, protocol: str, payload: bytes) -> bytes:
        """Deliver one request to `peer_id`'s handler and wait for its response."""
        self._check_alive()
        encode_header(len(payload), self._limits.max_message_bytes)
        timeout = self._net.request_timeout_s
        server = self._network.peer(peer_id)
        if server is None or not self._network.reachable(self._peer_id, peer_id):
            await trio.lowlevel.checkpoint()
            self.ledger.error(peer_id)
            raise TransportError(f"{protocol} request to {peer_id}: peer unreachable")
        self._network.link(self._peer_id, peer_id)
        reply = _Reply()
        self.ledger.sent(peer_id, HEADER_BYTES + len(payload))
        for delay in self._network.plan(self._network.request_faults).delays:
            server.spawn(server.serve_request, self, protocol, payload, reply, delay)
        with trio.move_on_after(timeout):
            await reply.done.wait()
        if not reply.done.is_set():
            self.ledger.error(peer_id)
            raise TransportError(f"{protocol} request to {peer_id}: no response within "
                                 f"{timeout} s")
        if reply.error is not None:
            self.ledger.error(peer_id)
            raise reply.error
        assert reply.payload is not None
        if len(reply.payload) > self._limits.max_message_bytes:
            self.ledger.error(peer_id)
            logger.warning("peer %s: bad %s response: %d bytes over the limit", peer_id,
                           protocol, len(reply.payload))
            raise RemoteProtocolError(
                f"peer declared a {len(reply.payload)}-byte frame "
                f"(limit {self._limits.max_message_bytes})"
            )
        self.ledger.received(peer_id, HEADER_BYTES + len(reply.payload))
        return reply.payload

    async def publish(self, topic: str, data: bytes) -> None:
        """Flood `data` over the link graph to every reachable subscriber (with faults)."""
        self._check_alive()
        if len(data) > MAX_GOSSIP_BYTES:
            raise LocalProtocolError(
                f"gossip message of {len(data)} bytes exceeds {MAX_GOSSIP_BYTES}"
            )
        await trio.lowlevel.checkpoint()
        message = GossipMessage(topic=topic, sender=self._peer_id, data=data)
        if self.accepts(message):  # libp2p validates and delivers our own messages too
            self.deliver(message, 0.0)
        seen = {self._peer_id}
        frontier = [self._peer_id]
        while frontier:
            hop = frontier.pop(0)
            for peer_id in self._network.neighbours(hop):
                if peer_id in seen:
                    continue
                seen.add(peer_id)
                peer = self._network.peer(peer_id)
                if peer is None or not self._network.reachable(hop, peer_id):
                    continue
                if not peer.accepts(message):
                    continue  # rejected: neither delivered nor forwarded
                frontier.append(peer_id)
                for delay in self._network.plan(self._network.gossip_faults).delays:
                    peer.spawn(peer.deliver_later, message, delay)

    def subscribe(self, topic: str) -> trio.MemoryReceiveChannel[GossipMessage]:
        """A new bounded channel receiving every message delivered on `topic`."""
        send, receive = trio.open_memory_channel[GossipMessage](GOSSIP_SUBSCRIBER_QUEUE)
        self._subscribers.setdefault(topic, []).append(send)
        return receive

    def set_gossip_validator(self, topic: str, validator: GossipValidator) -> None:
        """Reject messages on `topic` before delivery and forwarding."""
        self._validators[topic] = validator

    def set_gossip_score(self, score: Callable[[str], float]) -> None:
        """Kept for inspection only: the memory network has no peer scoring."""
        self.gossip_score = score

    def statistics(self) -> TransportStats:
        """A frozen snapshot of per-peer counters."""
        return self.ledger.snapshot(self._peer_id, self.listen_addrs())

    # -- used by the network and by other peers ---------------------------------------------

    def die(self) -> None:
        self._alive = False
        for scope in list(self._task_scopes):
            scope.cancel()

    def spawn(self, fn: Callable[..., Awaitable[None]], *args: object) -> None:
        if self._alive:
            self._nursery.start_soon(self._run_task, fn, *args)

    async def _run_task(self, fn: Callable[..., Awaitable[None]], *args: object) -> None:
        # One scope a task, not the nursery's: the test's own code runs in that nursery's
        # scope (it is the body of open_transport) and must survive kill().
        with trio.CancelScope() as scope:
            self._task_scopes.add(scope)
            try:
                await fn(*args)
            finally:
                self._task_scopes.discard(scope)

    def accepts(self, message: GossipMessage) -> bool:
        validator = self._validators.get(message.topic)
        if validator is None:
            return True
        try:
            return bool(validator(message.sender, message.data))
        except Exception:
            logger.warning("gossip validator for %s raised; message rejected", message.topic,
                           exc_info=True)
            return False

    async def deliver_later(self, message: GossipMessage, delay: float) -> None:
        if delay:
            await trio.sleep(delay)
        self.deliver(message, delay)

    def deliver(self, message: GossipMessage, _delay: float) -> None:
        if message.sender != self._peer_id:
            self.ledger.received(message.sender, len(message.data))
        live = []
        for send in self._subscribers.get(message.topic, []):
            try:
                send.send_nowait(message)
            except trio.WouldBlock:
                self.gossip_dropped += 1
            except trio.BrokenResourceError:
                continue
            live.append(send)
        self._subscribers[message.topic] = live

    async def serve_request(self, client: MemoryTransport, protocol: str, payload: bytes,
                            reply: _Reply, delay: float) -> None:
        try:
            if delay:
                await trio.sleep(delay)
            await self._serve(client.peer_id, protocol, payload, reply)
        except trio.Cancelled:
            # Killed mid-request: the client sees the stream end, as with a crashed process.
            reply.set(error=TransportError(f"{protocol} request to {self._peer_id}: "
                                           "stream ended (peer vanished)"))
            raise

    async def _serve(self, peer_id: str, protocol: str, payload: bytes, reply: _Reply) -> None:
        reset = TransportError(f"{protocol} request to {self._peer_id}: stream reset by peer")
        if len(payload) > self._limits.max_message_bytes:
            self.ledger.error(peer_id)
            logger.warning("peer %s: %s request refused: %d-byte frame over the limit",
                           peer_id, protocol, len(payload))
            reply.set(error=reset)
            return
        self.ledger.received(peer_id, HEADER_BYTES + len(payload))
        handler = self._handlers.get(protocol)
        if handler is None:
            reply.set(error=TransportError(
                f"{protocol} request to {self._peer_id}: protocol not supported"))
            return
        try:
            with trio.fail_after(self._net.request_timeout_s):
                response = await handler(peer_id, payload)
            encode_header(len(response), self._limits.max_message_bytes)
        except RemoteProtocolError as exc:
            self.ledger.error(peer_id)
            logger.warning("peer %s: %s request refused: %s", peer_id, protocol, exc)
            reply.set(error=reset)
            return
        except trio.TooSlowError:
            # The client's identical timeout started first and has already fired.
            self.ledger.error(peer_id)
            return
        except Exception:
            self.ledger.error(peer_id)
            logger.exception("handler for %s failed on a request from %s", protocol, peer_id)
            reply.set(error=reset)
            return
        client = self._network.peer(peer_id)
        if client is None or not self._network.reachable(self._peer_id, peer_id):
            return  # the response is lost; the client times out
        self.ledger.sent(peer_id, HEADER_BYTES + len(response))
        plan = self._network.plan(self._network.request_faults)
        if not plan.delays:
            return
        if plan.delays[0]:
            await trio.sleep(plan.delays[0])
        reply.set(payload=response)

    def _check_alive(self) -> None:
        if not self._alive:
            raise TransportError(f"transport {self._peer_id} was killed")
