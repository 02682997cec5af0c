"""Glue between a Transport and the exchange: serve /peerdata/model/1.0.0 into a bounded inbox.

Rule: only bytes pass through here. The handler checks the size and queues (sender, payload)
with backpressure; decoding and verification happen in the exchange, never in the handler.
The handler is served through the node's receive guard (`Node.serve`), like every other
protocol: an oversize update drops the sender's link. Updates that arrived a round early (a
sender whose clock runs ahead) are held, at most `capacity` of them, until `release`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable

import trio

from peerdata.errors import RemoteProtocolError
from peerdata.net.transport import Transport
from peerdata.wire.versions import MODEL_PROTOCOL

INBOX_CAPACITY = 32  # queued updates; each may be up to federation.max_update_bytes
ACK = b"ok"

Handler = Callable[[str, bytes], Awaitable[bytes]]
Serve = Callable[[str, Handler], None]
"""(protocol, handler) -> None: answer `protocol` with `handler` (e.g. `Node.serve`)."""


class ModelInbox:
    """Receives model updates on MODEL_PROTOCOL; `collect` is the exchange's Collect."""

    def __init__(self, max_update_bytes: int, capacity: int = INBOX_CAPACITY) -> None:
        self._max, self._capacity = max_update_bytes, capacity
        self._send, self._receive = trio.open_memory_channel[tuple[str, bytes]](capacity)
        self._held: deque[tuple[str, bytes]] = deque(maxlen=capacity)
        self._ready: list[tuple[str, bytes]] = []

    def attach(self, serve: Serve) -> None:
        """Serve MODEL_PROTOCOL with this inbox through `serve` (e.g. `Node.serve`)."""
        serve(MODEL_PROTOCOL, self.handle)

    def hold(self, peer: str, payload: bytes) -> None:
        """Keep an update for the next round (the oldest goes when `capacity` are held)."""
        self._held.append((peer, payload))

    def release(self) -> None:
        """A new round starts: what was held is handed out first by the next `collect`."""
        self._ready = [*self._ready, *self._held][-self._capacity :]
        self._held.clear()

    async def handle(self, peer: str, payload: bytes) -> bytes:
        """Request handler: refuse oversize payloads, queue the rest, acknowledge."""
        if len(payload) > self._max:
            raise RemoteProtocolError(
                f"model update of {len(payload)} bytes exceeds federation.max_update_bytes"
            )
        await self._send.send((peer, payload))
        return ACK

    async def receive_one(self) -> tuple[str, bytes]:
        """The next update (held ones first), waiting as long as it takes."""
        if self._ready:
            return self._ready.pop(0)
        return await self._receive.receive()

    def drain(self) -> list[tuple[str, bytes]]:
        """Everything received so far (held ones first), without waiting."""
        out, self._ready = self._ready, []
        while True:
            try:
                out.append(self._receive.receive_nowait())
            except trio.WouldBlock:
                return out

    async def collect(self, deadline: float, expected: frozenset[str]) -> list[tuple[str, bytes]]:
        """Everything received until `deadline`, or until each of `expected` has sent once."""
        received, self._ready = self._ready, []
        heard = {peer for peer, _ in received}
        with trio.move_on_at(deadline):
            while not expected <= heard:
                peer, payload = await self._receive.receive()
                received.append((peer, payload))
                heard.add(peer)
        return received


def transport_sender(transport: Transport) -> Callable[[str, bytes], Awaitable[None]]:
    """A SendUpdate that delivers over `transport` on MODEL_PROTOCOL."""

    async def send_update(peer: str, payload: bytes) -> None:
        await transport.request(peer, MODEL_PROTOCOL, payload)

    return send_update
