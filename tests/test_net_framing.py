"""Length-prefixed framing on live streams: any chunking works; oversize is refused before
buffering; a stream ending inside a frame is an error."""

from __future__ import annotations

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from peerdata.errors import LocalProtocolError, RemoteProtocolError
from peerdata.net.framing import FrameEOF, ReadSome, encode_header, read_frame


def _stream(data: bytes, cuts: list[int]) -> tuple[list[int], ReadSome]:
    """A read_some over `data` that hands out at most cuts[i] bytes per call; also returns
    the list of sizes it was asked for."""
    asked: list[int] = []
    state = {"pos": 0, "i": 0}

    async def read_some(max_bytes: int) -> bytes:
        asked.append(max_bytes)
        pos, i = state["pos"], state["i"]
        chunk = data[pos:pos + min(max_bytes, cuts[i % len(cuts)])]
        state["pos"], state["i"] = pos + len(chunk), i + 1
        return chunk

    return asked, read_some


def test_frame_layout() -> None:
    assert encode_header(3, 10) == b"\x00\x00\x00\x03"
    assert encode_header(0, 10) == b"\x00\x00\x00\x00"
    with pytest.raises(LocalProtocolError):
        encode_header(11, 10)


@given(st.lists(st.binary(max_size=50), max_size=8), st.lists(st.integers(1, 20), min_size=1))
def test_any_chunking_yields_the_payloads_in_order(payloads: list[bytes],
                                                   cuts: list[int]) -> None:
    data = b"".join(encode_header(len(p), 50) + p for p in payloads)
    _, read_some = _stream(data, cuts)

    async def main() -> list[bytes]:
        return [await read_frame(read_some, 50) for _ in payloads]

    assert trio.run(main) == payloads


async def test_oversized_declared_length_is_refused_from_the_header_alone() -> None:
    asked, read_some = _stream(b"\x00\x00\x00\x0b" + b"x" * 11, [100])
    with pytest.raises(RemoteProtocolError, match="11-byte frame"):
        await read_frame(read_some, 10)
    assert asked == [4]  # nothing of the payload was read
    _, huge = _stream(b"\xff\xff\xff\xff", [100])
    with pytest.raises(RemoteProtocolError, match="4294967295-byte frame"):
        await read_frame(huge, 10)


async def test_stream_ending_mid_frame_is_an_error() -> None:
    _, read_some = _stream(b"\x00\x00\x00\x05ab", [100])
    with pytest.raises(FrameEOF, match="stream ended after 2 of 5 bytes"):
        await read_frame(read_some, 10)
    _, half_header = _stream(b"\x00\x00", [100])
    with pytest.raises(FrameEOF):
        await read_frame(half_header, 10)
