"""Length-prefixed frames over any byte stream: 4-byte big-endian length, then the payload.

Rule: a declared length above the limit is refused *before* a single payload byte is read,
and a stream that ends inside a frame is a protocol error, never a short message. Both raise
RemoteProtocolError here, the one place frame bytes from a peer are judged (the layout is
documented in `proto/PROTOCOL.md`). The reader is async and copy-avoiding, for live streams.
"""

from __future__ import annotations

import struct
from collections.abc import Awaitable, Callable

from peerdata.errors import LocalProtocolError, RemoteProtocolError

HEADER = struct.Struct(">I")
HEADER_BYTES = HEADER.size
MAX_FRAME_BYTES = 2**32 - 1  # what the 4-byte header can express
# Upper bound on one read() call: large enough that a 20 MB frame takes few calls, small
# enough that a stream cannot make us allocate more than this ahead of its data.
READ_CHUNK = 1024 * 1024

# read_some(max_bytes) -> up to max_bytes; raises EOFError (or returns b"") at end of stream.
ReadSome = Callable[[int], Awaitable[bytes]]


class FrameEOF(RemoteProtocolError):
    """The stream ended before a complete frame arrived."""


def encode_header(length: int, max_bytes: int) -> bytes:
    """Return the 4-byte header for a payload of `length` bytes.

    Raises:
        LocalProtocolError: the payload is larger than `max_bytes` (we must not send it).
    """
    if length > max_bytes or length > MAX_FRAME_BYTES:
        raise LocalProtocolError(f"frame of {length} bytes exceeds the limit of {max_bytes}")
    return HEADER.pack(length)


def decode_header(header: bytes, max_bytes: int) -> int:
    """Return the declared payload length; refuse one above `max_bytes`."""
    (length,) = HEADER.unpack(header)
    if length > max_bytes:
        raise RemoteProtocolError(f"peer declared a {length}-byte frame (limit {max_bytes})")
    return int(length)


async def read_exactly(read_some: ReadSome, n: int) -> bytes:
    """Read exactly `n` bytes; raise FrameEOF if the stream ends first."""
    if n == 0:
        return b""
    first = await _read_or_eof(read_some, min(n, READ_CHUNK), 0, n)
    if len(first) == n:  # the common case for small frames: no copy at all
        return first
    buf = bytearray(first)
    while len(buf) < n:
        buf += await _read_or_eof(read_some, min(n - len(buf), READ_CHUNK), len(buf), n)
    return bytes(buf)


async def _read_or_eof(read_some: ReadSome, want: int, have: int, total: int) -> bytes:
    try:
        chunk = await read_some(want)
    except EOFError:
        chunk = b""
    if not chunk:
        raise FrameEOF(f"stream ended after {have} of {total} bytes")
    return chunk


async def read_frame(read_some: ReadSome, max_bytes: int) -> bytes:
    """Read one frame and return its payload.

    Raises:
        RemoteProtocolError: the declared length is above `max_bytes` (nothing more is read).
        FrameEOF: the stream ended inside the frame (or before it began).
    """
    header = await read_exactly(read_some, HEADER_BYTES)
    length = decode_header(header, max_bytes)
    return await read_exactly(read_some, length)

