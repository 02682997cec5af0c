"""Inbound request streams served within per-peer limits (the libp2p transport's serving half).

Rule: one peer holds at most `limits.max_streams_per_peer` inbound request streams and
`limits.max_buffered_bytes_per_peer` request bytes at once (reserved from the frame header,
before the payload is read); more are reset at once, with whatever the muxer buffered for
them, and a peer refused twice its stream limit at once loses its link. libp2p's own resource
manager counts streams for all peers together, so one peer could exhaust it for everyone
(docs/trust.md). Every exception a stream raises ends here, logged with the peer.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import trio
from libp2p.abc import INetStream
from libp2p.exceptions import BaseLibp2pError

from peerdata.config import LimitsConfig, NetConfig
from peerdata.errors import RemoteProtocolError
from peerdata.net.framing import HEADER_BYTES, decode_header, encode_header, read_exactly
from peerdata.net.stats import PeerLedger
from peerdata.net.transport import RequestHandler

logger = logging.getLogger("peerdata.net")

# Below this size header and payload go out in one write (one yamux frame, one Noise
# message); above it the copy costs more than the extra write.
COALESCE_BYTES = 64 * 1024
# Errors that mean "this stream or link is gone"; anything else from libp2p is a bug there.
LINK_ERRORS = (BaseLibp2pError, trio.BrokenResourceError, trio.ClosedResourceError, OSError)


class InboundServer:
    """Per-peer accounting of inbound request streams, and serving them (see module rule)."""

    def __init__(self, ledger: PeerLedger, net: NetConfig, limits: LimitsConfig,
                 disconnect: Callable[[str], Awaitable[None]]) -> None:
        self._ledger = ledger
        self._net = net
        self._limits = limits
        self._disconnect = disconnect
        self._streams: dict[str, int] = {}  # per peer: inbound request streams open now
        self._buffered: dict[str, int] = {}  # per peer: request bytes held now
        self._refused: dict[tuple[str, str], int] = {}  # per peer and limit: refusals so far
        self._burst: dict[str, int] = {}  # per peer: refusals since it last had no stream open

    async def _refuse(self, peer_id: str, protocol: str, limit: str, why: str,
                      stream: INetStream) -> None:
        """Reset a stream that exceeds a per-peer limit; log the first and every 100th of each
        limit (a flood must not flood the log too). A peer refused twice its stream limit
        while it still holds streams is flooding: its link is closed, which frees everything
        the muxer holds for it at once (a well-behaved peer never gets near)."""
        key = (peer_id, limit)
        n = self._refused[key] = self._refused.get(key, 0) + 1
        burst = self._burst[peer_id] = self._burst.get(peer_id, 0) + 1
        self._ledger.error(peer_id)
        if n == 1 or n % 100 == 0:
            logger.warning("peer %s: %s stream refused (%d so far): %s", peer_id, protocol, n,
                           why)
        await reset_stream(stream)
        if burst == 2 * self._limits.max_streams_per_peer:
            logger.warning("peer %s: link closed: %d streams refused at once (flood)",
                           peer_id, burst)
            await self._disconnect(peer_id)

    async def serve(self, protocol: str, handler: RequestHandler, stream: INetStream) -> None:
        """Serve one inbound request stream with `handler`, within the peer's limits."""
        peer_id = stream.muxed_conn.peer_id.to_base58()
        limits = self._limits
        if self._streams.get(peer_id, 0) >= limits.max_streams_per_peer:
            await self._refuse(peer_id, protocol, "streams", "more than limits."
                               f"max_streams_per_peer={limits.max_streams_per_peer} open at "
                               "once", stream)
            return
        self._streams[peer_id] = self._streams.get(peer_id, 0) + 1
        held = 0
        try:
            with trio.fail_after(self._net.request_timeout_s):
                length = decode_header(await read_exactly(stream.read, HEADER_BYTES),
                                       limits.max_message_bytes)
                if self._buffered.get(peer_id, 0) + length > limits.max_buffered_bytes_per_peer:
                    await self._refuse(peer_id, protocol, "bytes", f"{length} more bytes would "
                                       "exceed limits.max_buffered_bytes_per_peer="
                                       f"{limits.max_buffered_bytes_per_peer}", stream)
                    return
                held = length
                self._buffered[peer_id] = self._buffered.get(peer_id, 0) + held
                request = await read_exactly(stream.read, length)
                self._ledger.received(peer_id, HEADER_BYTES + len(request), protocol)
                response = await handler(peer_id, request)
                header = encode_header(len(response), self._limits.max_message_bytes)
                await write_frame(self._ledger, peer_id, stream, header, response, protocol)
                await stream.close()
        except RemoteProtocolError as exc:
            self._ledger.error(peer_id)
            logger.warning("peer %s: %s request refused: %s", peer_id, protocol, exc)
            await reset_stream(stream)
        except trio.TooSlowError:
            self._ledger.error(peer_id)
            logger.warning("peer %s: %s request not completed within %s s", peer_id, protocol,
                           self._net.request_timeout_s)
            await reset_stream(stream)
        except LINK_ERRORS as exc:
            self._ledger.error(peer_id)
            logger.info("peer %s: %s stream failed: %s: %s", peer_id, protocol,
                        type(exc).__name__, exc)
            await reset_stream(stream)
        except Exception:
            # A bug in our own handler must not take the listener (or libp2p) down with it.
            self._ledger.error(peer_id)
            logger.exception("handler for %s failed on a request from %s", protocol, peer_id)
            await reset_stream(stream)
        finally:
            _release(self._streams, peer_id, 1)
            _release(self._buffered, peer_id, held)
            if peer_id not in self._streams:
                self._burst.pop(peer_id, None)


async def write_frame(ledger: PeerLedger, peer_id: str, stream: INetStream, header: bytes,
                      payload: bytes, protocol: str) -> None:
    """Write one frame (header and payload), counted in `ledger`."""
    if len(payload) <= COALESCE_BYTES:
        await stream.write(header + payload)
    else:
        await stream.write(header)
        await stream.write(payload)
    ledger.sent(peer_id, len(header) + len(payload), protocol)


def _release(counts: dict[str, int], peer_id: str, n: int) -> None:
    left = counts.get(peer_id, 0) - n
    if left > 0:
        counts[peer_id] = left
    else:
        counts.pop(peer_id, None)


async def reset_stream(stream: INetStream | None) -> None:
    """Reset `stream` (bounded, shielded from cancellation) and drop what the muxer holds."""
    if stream is None:
        return
    with trio.move_on_after(1.0) as scope:
        scope.shield = True  # runs while the caller is being cancelled
        try:
            await stream.reset()
        except Exception:
            logger.debug("stream reset failed", exc_info=True)
    _discard_unread(stream)


def _discard_unread(stream: INetStream) -> None:
    """Drop what the muxer still holds for a stream we reset.

    py-libp2p 0.8.1's yamux keeps a reset stream's unread bytes, and appends whatever the peer
    sent before it saw our RST, until a sweeper reclaims it 60-90 s later: a peer opening many
    streams we refuse made us hold up to its 256 KiB window for each. After a reset nobody can
    read them; without the entry, late frames for the stream are read and dropped.
    """
    muxed = getattr(stream, "muxed_stream", None)
    if not getattr(muxed, "_backlog_slot_released", False):
        return  # the reset did not finish: leave the entry to libp2p (it owns a slot)
    conn, sid = getattr(muxed, "conn", None), getattr(muxed, "stream_id", None)
    for table in ("stream_buffers", "streams", "stream_events"):
        entries = getattr(conn, table, None)
        if isinstance(entries, dict):
            entries.pop(sid, None)
