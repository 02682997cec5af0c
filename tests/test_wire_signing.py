"""Signed Votes and Feedback: forgeries and tampering are caught; replays are refused."""

from __future__ import annotations

import dataclasses

import pytest

from peerdata.errors import LocalProtocolError, RemoteProtocolError, SignatureError
from peerdata.identity import Identity
from peerdata.wire import (
    ReplayGuard,
    Vote,
    content_id,
    decode,
    encode,
    sign_feedback,
    sign_vote,
    signing_payload,
    verify_feedback,
    verify_vote,
)
from peerdata.wire.codec import pack, to_wire

ALICE = Identity.from_private_bytes(b"\x01" * 32)
BOB = Identity.from_private_bytes(b"\x02" * 32)
CAROL = Identity.from_private_bytes(b"\x03" * 32)
CID = content_id(b"image")


def bob_vote() -> Vote:
    return sign_vote(BOB, origin=ALICE.peer_id, cid=CID, round_id=4, novel=True, score=2.5,
                     timestamp=1000.0, nonce=b"\x07" * 16)


def test_signed_vote_verifies_and_signature_is_deterministic() -> None:
    vote = bob_vote()
    verify_vote(vote)
    assert vote == bob_vote()  # Ed25519 is deterministic; same fields, same bytes


def test_vote_signed_by_someone_else_is_a_forgery() -> None:
    honest = bob_vote()
    forged = dataclasses.replace(honest, signature=CAROL.sign(signing_payload(honest)))
    with pytest.raises(SignatureError, match="bad signature by 12D3KooW"):
        verify_vote(forged)
    impersonated = dataclasses.replace(honest, voter=CAROL.peer_id)
    with pytest.raises(SignatureError):
        verify_vote(impersonated)


@pytest.mark.parametrize(("field", "value"), [
    ("novel", False), ("score", 2.5000001), ("round_id", 5), ("cid", content_id(b"other")),
    ("timestamp", 1001.0), ("nonce", b"\x08" * 16), ("origin", CAROL.peer_id),
])
def test_tampering_with_any_vote_field_breaks_the_signature(field: str, value: object) -> None:
    tampered = dataclasses.replace(bob_vote(), **{field: value})  # type: ignore[arg-type]
    with pytest.raises(SignatureError):
        verify_vote(tampered)


def test_tampered_bytes_on_the_wire_are_caught() -> None:
    data = bytearray(encode(bob_vote()))
    index = data.index(b"\xa5score\xcb") + 7  # the score's float64 payload
    data[index + 7] ^= 1
    received = decode(bytes(data))
    assert isinstance(received, Vote)
    with pytest.raises(SignatureError):
        verify_vote(received)


def test_feedback_sign_verify_and_tamper() -> None:
    fb = sign_feedback(CAROL, origin=ALICE.peer_id, cid=CID, round_id=4, novel_votes=1,
                       voters=(BOB.peer_id, CAROL.peer_id), timestamp=1000.0)
    assert fb.utility == 0.5
    verify_feedback(fb)
    with pytest.raises(SignatureError):
        verify_feedback(dataclasses.replace(fb, novel_votes=2, utility=1.0))
    with pytest.raises(SignatureError):
        verify_feedback(dataclasses.replace(fb, reporter=BOB.peer_id))


def test_feedback_from_a_non_voter_cannot_be_built() -> None:
    with pytest.raises(LocalProtocolError, match="reporter must be one of the voters"):
        sign_feedback(ALICE, origin=BOB.peer_id, cid=CID, round_id=1, novel_votes=0,
                      voters=(CAROL.peer_id,), timestamp=0.0)


def test_signing_payload_covers_type_and_every_field_but_the_signature() -> None:
    vote = bob_vote()
    body = to_wire(vote)
    del body["signature"]
    assert signing_payload(vote) == b"peerdata-sig\x00\x01\x07" + pack(body)


def test_replay_guard_accepts_once_then_refuses() -> None:
    guard = ReplayGuard(window_s=60, max_skew_s=5)
    guard.check(BOB.peer_id, b"\x01" * 16, timestamp=100.0, now=100.0)
    with pytest.raises(RemoteProtocolError, match="replayed nonce 0101"):
        guard.check(BOB.peer_id, b"\x01" * 16, timestamp=100.0, now=101.0)
    guard.check(CAROL.peer_id, b"\x01" * 16, timestamp=100.0, now=101.0)  # per signer
    assert guard.statistics().remembered == 2
    assert guard.statistics().rejected == 1


def test_replay_guard_refuses_stale_and_future_timestamps() -> None:
    guard = ReplayGuard(window_s=60, max_skew_s=5)
    with pytest.raises(RemoteProtocolError, match="older than the 60 s window"):
        guard.check(BOB.peer_id, b"\x02" * 16, timestamp=39.0, now=100.0)
    with pytest.raises(RemoteProtocolError, match="in the future"):
        guard.check(BOB.peer_id, b"\x03" * 16, timestamp=106.0, now=100.0)
    guard.check(BOB.peer_id, b"\x04" * 16, timestamp=105.0, now=100.0)


def test_replay_guard_forgets_only_what_the_window_would_refuse_anyway() -> None:
    guard = ReplayGuard(window_s=60, max_skew_s=5, max_entries=2)
    guard.check(BOB.peer_id, b"\x01" * 16, timestamp=0.0, now=0.0)
    guard.check(BOB.peer_id, b"\x02" * 16, timestamp=30.0, now=30.0)
    with pytest.raises(RemoteProtocolError, match="replay guard full"):
        guard.check(BOB.peer_id, b"\x03" * 16, timestamp=30.0, now=30.0)
    guard.check(BOB.peer_id, b"\x03" * 16, timestamp=61.0, now=61.0)  # nonce 1 expired
    assert guard.statistics().remembered == 2
    with pytest.raises(RemoteProtocolError, match="older than"):  # replay of the forgotten one
        guard.check(BOB.peer_id, b"\x01" * 16, timestamp=0.0, now=61.0)
