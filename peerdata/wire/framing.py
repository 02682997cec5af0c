"""Length-prefixed frames for byte streams: 4-byte big-endian length, then the payload.

Rule: pure and incremental. The decoder refuses a frame by its declared length before buffering
any of its payload, so a peer cannot make us hold more than `max_frame` bytes per stream.
"""

from __future__ import annotations

from peerdata.errors import LocalProtocolError, RemoteProtocolError

LENGTH_BYTES = 4
MAX_FRAME_LIMIT = 2**32 - 1


def frame(payload: bytes) -> bytes:
    """`payload` prefixed with its length.

    Raises:
        LocalProtocolError: the payload does not fit a 4-byte length.
    """
    if len(payload) > MAX_FRAME_LIMIT:
        raise LocalProtocolError(f"payload of {len(payload)} bytes does not fit one frame")
    return len(payload).to_bytes(LENGTH_BYTES, "big") + payload


class FrameDecoder:
    """Feed stream bytes in any chunking; get complete payloads back in order."""

    def __init__(self, max_frame: int) -> None:
        if not 0 <= max_frame <= MAX_FRAME_LIMIT:
            raise LocalProtocolError(f"max_frame must be in [0, {MAX_FRAME_LIMIT}]")
        self._max_frame = max_frame
        self._buffer = bytearray()
        self._expected: int | None = None  # payload length of the frame being read

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return the payloads they complete (possibly none).

        Raises:
            RemoteProtocolError: a frame declares a length above `max_frame`.
        """
        self._buffer += data
        payloads: list[bytes] = []
        while True:
            if self._expected is None:
                if len(self._buffer) < LENGTH_BYTES:
                    return payloads
                length = int.from_bytes(self._buffer[:LENGTH_BYTES], "big")
                if length > self._max_frame:
                    raise RemoteProtocolError(
                        f"frame of {length} bytes exceeds limit {self._max_frame}"
                    )
                del self._buffer[:LENGTH_BYTES]
                self._expected = length
            if len(self._buffer) < self._expected:
                return payloads
            payloads.append(bytes(self._buffer[:self._expected]))
            del self._buffer[:self._expected]
            self._expected = None

    @property
    def buffered(self) -> int:
        """Bytes held for a frame that is not complete yet."""
        return len(self._buffer)

    def close(self) -> None:
        """Declare end of stream.

        Raises:
            RemoteProtocolError: the stream ended inside a frame.
        """
        if self._expected is not None or self._buffer:
            raise RemoteProtocolError(
                f"stream ended inside a frame ({len(self._buffer)} bytes of it received)"
            )
