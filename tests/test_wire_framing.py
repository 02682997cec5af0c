"""Length-prefixed framing: any chunking works; oversize is refused before buffering."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from peerdata.errors import RemoteProtocolError
from peerdata.wire import FrameDecoder, frame


def test_frame_layout() -> None:
    assert frame(b"abc") == b"\x00\x00\x00\x03abc"
    assert frame(b"") == b"\x00\x00\x00\x00"


@given(st.lists(st.binary(max_size=50), max_size=8), st.lists(st.integers(1, 20), min_size=1))
def test_any_chunking_yields_the_payloads_in_order(payloads: list[bytes],
                                                   cuts: list[int]) -> None:
    stream = b"".join(frame(p) for p in payloads)
    decoder = FrameDecoder(max_frame=50)
    out: list[bytes] = []
    pos, i = 0, 0
    while pos < len(stream):
        step = cuts[i % len(cuts)]
        out += decoder.feed(stream[pos:pos + step])
        pos, i = pos + step, i + 1
    assert out == payloads
    assert decoder.buffered == 0
    decoder.close()


def test_oversized_declared_length_is_refused_from_the_header_alone() -> None:
    decoder = FrameDecoder(max_frame=10)
    with pytest.raises(RemoteProtocolError, match="frame of 11 bytes exceeds limit 10"):
        decoder.feed(b"\x00\x00\x00\x0b")
    with pytest.raises(RemoteProtocolError, match="frame of 4294967295 bytes"):
        FrameDecoder(max_frame=10).feed(b"\xff\xff\xff\xff")


def test_stream_ending_mid_frame_is_an_error() -> None:
    decoder = FrameDecoder(max_frame=10)
    assert decoder.feed(b"\x00\x00\x00\x05ab") == []
    assert decoder.buffered == 2
    with pytest.raises(RemoteProtocolError, match="stream ended inside a frame"):
        decoder.close()
    half_header = FrameDecoder(max_frame=10)
    half_header.feed(b"\x00\x00")
    with pytest.raises(RemoteProtocolError):
        half_header.close()
