"""Every way a peer's bytes can be wrong gives its own RemoteProtocolError; our bugs give
LocalProtocolError."""

from __future__ import annotations

import re
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peerdata.config import LimitsConfig
from peerdata.errors import LocalProtocolError, RemoteProtocolError
from peerdata.identity import Identity
from peerdata.wire import (
    ErrorReply,
    Feedback,
    Hello,
    ImageData,
    ImageItem,
    ImageOffer,
    ImageRequest,
    OfferItem,
    OfferReply,
    RelayState,
    Vote,
    content_id,
    decode,
    decode_as,
    encode,
    sign_vote,
    verify_item,
)
from peerdata.wire.codec import to_wire

ALICE = Identity.from_private_bytes(b"\x01" * 32)
BOB = Identity.from_private_bytes(b"\x02" * 32)
CID = content_id(b"image")
VOTE = sign_vote(BOB, origin=ALICE.peer_id, cid=CID, round_id=1, novel=True, score=0.5,
                 timestamp=1.7e9, nonce=b"n" * 16)


def envelope(body: Any, version: int = 1, tag: int = Vote.TAG) -> bytes:
    return bytes((version, tag)) + msgpack.packb(body, use_bin_type=True)


def vote_body(**changes: Any) -> dict[str, Any]:
    body = to_wire(VOTE)
    body.update(changes)
    return {k: v for k, v in body.items() if v is not _DROP}


_DROP = object()


def rejects(data: bytes, pattern: str, limits: LimitsConfig | None = None) -> None:
    with pytest.raises(RemoteProtocolError, match=pattern):
        decode(data, limits)


def test_the_valid_vote_decodes() -> None:
    assert decode(envelope(vote_body())) == VOTE


def test_oversized_message_is_refused_before_parsing() -> None:
    limits = LimitsConfig(max_message_bytes=100, max_image_bytes=50)
    data = encode(VOTE)
    rejects(data, re.escape(f"message of {len(data)} bytes exceeds limit 100"), limits)


def test_unknown_protocol_version_is_named() -> None:
    rejects(envelope(vote_body(), version=2),
            r"unsupported protocol version 2 \(this node speaks 1\)")


def test_unknown_message_type() -> None:
    rejects(envelope({}, tag=200), "unknown message type tag 200")
    rejects(envelope({}, tag=0), "unknown message type tag 0")


@pytest.mark.parametrize("data", [b"", b"\x01", b"\x01\x07"])
def test_too_short_for_an_envelope(data: bytes) -> None:
    rejects(data, "shorter than an envelope")


@pytest.mark.parametrize(("body", "pattern"), [
    (b"\xc1", "malformed msgpack body"),                       # reserved, never valid
    (msgpack.packb(to_wire(VOTE))[:-5], "malformed msgpack body: truncated"),
    (msgpack.packb(to_wire(VOTE)) + b"\x00", "malformed msgpack body: 1 trailing bytes"),
    (b"\xa2\xff\xfe", "text is not UTF-8"),
    (b"\x82\xa1a\x01\xa1a\x02", "a map repeats keys"),
    (b"\x81\x01\x02", "malformed msgpack body"),               # int map key
    (b"\xd4\x05\x00", "malformed msgpack body|exceeds a limit"),  # ext type
])
def test_malformed_msgpack(body: bytes, pattern: str) -> None:
    rejects(bytes((1, Vote.TAG)) + body, pattern)


def test_body_must_be_a_map() -> None:
    rejects(envelope([1, 2, 3]), "invalid Vote: Vote must be a map, got array")


def test_missing_and_extra_fields() -> None:
    rejects(envelope(vote_body(nonce=_DROP, score=_DROP)),
            "Vote is missing field\\(s\\): score, nonce")
    rejects(envelope(vote_body(extra=1)), "Vote has unknown field\\(s\\): extra")


@pytest.mark.parametrize(("field", "value", "pattern"), [
    ("score", "high", "Vote.score must be float, got str"),
    ("round_id", 1.5, "Vote.round_id must be int, got float"),
    ("round_id", True, "Vote.round_id must be int, got bool"),
    ("novel", 1, "Vote.novel must be bool, got int"),
    ("cid", CID.hex(), "Vote.cid must be bytes, got str"),
    ("voter", b"x", "Vote.voter must be str, got bytes"),
    ("cid", CID[:31], "Vote.cid must be 32 bytes, got 31"),
    ("nonce", b"n" * 15, "Vote.nonce must be 16 bytes"),
    ("round_id", -1, "Vote.round_id must be >= 0"),
    ("origin", "not a peer id!", "Vote.origin is not a base58 peer ID"),
    ("origin", BOB.peer_id, "Vote.voter must differ from origin"),
    ("round_id", 2**64 - 1, "does not fit a signed 64-bit integer"),
])
def test_wrong_field_types_and_values(field: str, value: Any, pattern: str) -> None:
    rejects(envelope(vote_body(**{field: value})), pattern)


def test_nan_float_is_refused() -> None:
    rejects(envelope(vote_body(score=float("nan"))), "Vote.score must be finite")


def test_nested_item_errors_are_reported() -> None:
    item = to_wire(OfferItem(CID, 5, True, ALICE.peer_id, 1, 0, (), 0))
    del item["hops"]
    body = {"sender": ALICE.peer_id, "round_id": 1, "items": [item]}
    rejects(envelope(body, tag=ImageOffer.TAG),
            "invalid ImageOffer: OfferItem is missing field\\(s\\): hops")
    body["items"] = [5]
    rejects(envelope(body, tag=ImageOffer.TAG), "OfferItem must be a map, got int")


def test_image_larger_than_the_image_limit() -> None:
    limits = LimitsConfig(max_message_bytes=10_000, max_image_bytes=1000)
    data = b"x" * 1001
    msg = ImageData(items=(ImageItem(content_id(data), data, 3, "image/png"),))
    rejects(encode(msg), "exceeds a limit: 1001 exceeds max_bin_len\\(1000\\)", limits)


def test_list_longer_than_the_list_limit() -> None:
    limits = LimitsConfig(max_list_len=3)
    msg = OfferReply(wanted=tuple(content_id(bytes([i])) for i in range(4)))
    rejects(encode(msg), "exceeds a limit: 4 exceeds max_array_len\\(3\\)", limits)


def test_vote_state_invariants() -> None:
    body = to_wire(RelayState(CID, ALICE.peer_id, 1, 1, (BOB.peer_id,), 1))
    rejects(envelope({**body, "novel_votes": 2}, tag=RelayState.TAG),
            "RelayState.novel_votes must be in \\[0, 1\\]")
    rejects(envelope({**body, "voters": [BOB.peer_id, BOB.peer_id]}, tag=RelayState.TAG),
            "RelayState.voters holds a peer twice")
    rejects(envelope({**body, "voters": [ALICE.peer_id]}, tag=RelayState.TAG),
            "RelayState.voters must not hold the origin")


def test_feedback_utility_must_match_the_votes() -> None:
    body = {"reporter": BOB.peer_id, "origin": ALICE.peer_id, "cid": CID, "round_id": 1,
            "novel_votes": 1, "voters": [BOB.peer_id], "utility": 0.5, "timestamp": 1.0,
            "nonce": b"n" * 16, "signature": b"s" * 64}
    rejects(envelope(body, tag=Feedback.TAG), "Feedback.utility must equal")
    rejects(envelope({**body, "utility": 1.0, "reporter": ALICE.peer_id}, tag=Feedback.TAG),
            "Feedback.reporter must be one of the voters")


def test_duplicate_cids_are_refused() -> None:
    rejects(envelope({"cids": [CID, CID]}, tag=ImageRequest.TAG),
            "ImageRequest.cids holds duplicate content IDs")


def test_image_bytes_must_hash_to_the_cid() -> None:
    good = ImageItem(CID, b"image", None, "image/png")
    verify_item(good)
    with pytest.raises(RemoteProtocolError, match="hash to .*not to its content ID"):
        verify_item(ImageItem(CID, b"imagE", None, "image/png"))


def test_decode_as_insists_on_the_expected_types() -> None:
    data = encode(ErrorReply("busy", "try later"))
    assert decode_as(data, OfferReply, ErrorReply) == ErrorReply("busy", "try later")
    with pytest.raises(RemoteProtocolError, match="expected OfferReply, got ErrorReply"):
        decode_as(data, OfferReply)


def test_building_a_bad_message_is_a_local_error() -> None:
    with pytest.raises(LocalProtocolError, match="Hello.name must not be empty"):
        Hello(1, ALICE.peer_id, "", (), "peerdata/0.1", 0, 0)
    with pytest.raises(LocalProtocolError, match="must be list\\[str\\] \\(a tuple\\), got list"):
        Hello(1, ALICE.peer_id, "a", ["/ip4/1.2.3.4/tcp/1"], "peerdata/0.1", 0, 0)  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError, match="ImageRequest.cids must not be empty"):
        ImageRequest(())
    with pytest.raises(LocalProtocolError, match="ErrorReply.code"):
        ErrorReply("Busy!", "")
    with pytest.raises(LocalProtocolError, match="not a top-level message"):
        encode(OfferItem(CID, 5, True, ALICE.peer_id, 1, 0, (), 0))  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError, match="Vote.voter must differ from origin"):
        sign_vote(ALICE, origin=ALICE.peer_id, cid=CID, round_id=0, novel=True, score=0.0,
                  timestamp=0.0)


def test_integer_scores_are_floats() -> None:
    vote = sign_vote(BOB, origin=ALICE.peer_id, cid=CID, round_id=0, novel=True, score=1,
                     timestamp=2)
    assert isinstance(vote.score, float) and isinstance(vote.timestamp, float)


VALID = encode(ImageOffer(ALICE.peer_id, 3, (OfferItem(CID, 5, True, ALICE.peer_id, 1, 1,
                                                       (BOB.peer_id,), 1),)))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_escape_as_anything_but_remote_errors(body: bytes) -> None:
    for tag in (Vote.TAG, ImageOffer.TAG):
        try:
            decode(bytes((1, tag)) + body)
        except RemoteProtocolError:
            pass


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(VALID) - 1), st.integers(1, 255))
def test_corrupted_valid_messages_decode_or_fail_cleanly(at: int, xor: int) -> None:
    data = bytearray(VALID)
    data[at] ^= xor
    try:
        decode(bytes(data))
    except RemoteProtocolError:
        pass
