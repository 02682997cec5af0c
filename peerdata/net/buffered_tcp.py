"""libp2p's TCP transport with a read buffer under Noise.

Rule: this changes only how bytes are pulled off the socket, never what is sent or accepted.
py-libp2p reads each Noise message as a 2-byte `recv` for its length and one or more `recv`s
for its body, straight from the socket; under the yamux stream of a 20 MB transfer that is
thousands of tiny syscalls and scheduler wake-ups. Reading up to READ_BUFFER_BYTES at a time
and serving those small reads from memory made 20 MB transfers 25-30 % faster
(docs/performance.md).
"""

from __future__ import annotations

import trio
from libp2p.abc import IRawConnection
from libp2p.custom_types import THandler
from libp2p.io.abc import ReadWriteCloser
from libp2p.io.trio import TrioTCPStream
from libp2p.network.connection.raw_connection import RawConnection
from libp2p.transport.tcp.tcp import TCP, TCPListener
from multiaddr import Multiaddr

READ_BUFFER_BYTES = 256 * 1024


class BufferedTCPStream(TrioTCPStream):
    """A TrioTCPStream whose reads are served from one large `recv` when possible."""

    def __init__(self, stream: TrioTCPStream) -> None:
        super().__init__(stream.stream)
        self._buffer = bytearray()
        self._buffer_lock = trio.Lock()  # the parent's read_lock guards only the socket

    async def read(self, n: int | None = None) -> bytes:
        if n == 0:
            return b""
        async with self._buffer_lock:
            if not self._buffer:
                # The parent's read maps socket errors to libp2p's (and b"" at EOF).
                chunk = await super().read(max(n or 0, READ_BUFFER_BYTES))
                if n is None or len(chunk) <= n:
                    return chunk
                self._buffer += chunk
            take = len(self._buffer) if n is None else min(n, len(self._buffer))
            data = bytes(self._buffer[:take])
            del self._buffer[:take]  # bytearray drops a prefix without moving the rest
            return data


class BufferedTCP(TCP):
    """libp2p's TCP transport, with every connection (dialled or accepted) read-buffered."""

    async def _dial_resolved(self, maddr: Multiaddr,
                             source: tuple[str, int] | None = None) -> IRawConnection:
        raw = await super()._dial_resolved(maddr, source)
        if isinstance(raw, RawConnection) and isinstance(raw.stream, TrioTCPStream):
            raw.stream = BufferedTCPStream(raw.stream)  # nothing has been read from it yet
        return raw

    def create_listener(self, handler_function: THandler) -> TCPListener:
        async def buffered(stream: ReadWriteCloser) -> None:
            if isinstance(stream, TrioTCPStream):
                stream = BufferedTCPStream(stream)
            await handler_function(stream)

        return super().create_listener(buffered)
