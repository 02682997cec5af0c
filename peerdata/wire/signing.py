"""Signing and verifying Votes and Feedback.

Rule: a signature covers the canonical encoding of every other field of the message, prefixed
with a domain tag, the protocol version and the message's type tag, so a signature can never be
replayed as another message type, another protocol version, or another application's data.

    payload = b"peerdata-sig\\x00" + bytes([PROTOCOL_VERSION, TAG]) + msgpack({field: value,
              ... every field except "signature", in declaration order})
"""

from __future__ import annotations

import dataclasses
import os

from peerdata.identity import Identity, verify
from peerdata.wire.codec import pack, to_wire
from peerdata.wire.fields import NONCE_BYTES, SIGNATURE_BYTES, field_hints
from peerdata.wire.messages import Feedback, MemberCert, Message, Revocations, Vote
from peerdata.wire.versions import PROTOCOL_VERSION

SIGNING_DOMAIN = b"peerdata-sig\x00"
_PLACEHOLDER = b"\x00" * SIGNATURE_BYTES


Signed = Vote | Feedback | MemberCert | Revocations


def signing_payload(msg: Signed) -> bytes:
    """The exact bytes the signer signed: every field but `signature`, canonically encoded."""
    body = {name: to_wire(getattr(msg, name))
            for name in field_hints(type(msg)) if name != "signature"}
    return SIGNING_DOMAIN + bytes((PROTOCOL_VERSION, type(msg).TAG)) + pack(body)


def _signed(identity: Identity, unsigned: Signed) -> Message:
    signature = identity.sign(signing_payload(unsigned))
    return dataclasses.replace(unsigned, signature=signature)


def sign_vote(identity: Identity, *, origin: str, cid: bytes, round_id: int, novel: bool,
              score: float, timestamp: float, nonce: bytes | None = None) -> Vote:
    """A Vote by `identity` (the voter), signed; a random nonce unless one is given.

    Raises:
        LocalProtocolError: a field is invalid (e.g. voting on one's own image).
    """
    unsigned = Vote(voter=identity.peer_id, origin=origin, cid=cid, round_id=round_id,
                    novel=novel, score=score, timestamp=timestamp,
                    nonce=os.urandom(NONCE_BYTES) if nonce is None else nonce,
                    signature=_PLACEHOLDER)
    vote = _signed(identity, unsigned)
    assert isinstance(vote, Vote)
    return vote


def sign_feedback(identity: Identity, *, origin: str, cid: bytes, round_id: int,
                  novel_votes: int, voters: tuple[str, ...], timestamp: float,
                  nonce: bytes | None = None) -> Feedback:
    """Feedback by `identity` (the reporter); utility is computed as novel_votes/len(voters).

    Raises:
        LocalProtocolError: a field is invalid (e.g. the reporter is not among the voters).
    """
    utility = novel_votes / len(voters) if voters else 0.0
    unsigned = Feedback(reporter=identity.peer_id, origin=origin, cid=cid, round_id=round_id,
                        novel_votes=novel_votes, voters=voters, utility=utility,
                        timestamp=timestamp,
                        nonce=os.urandom(NONCE_BYTES) if nonce is None else nonce,
                        signature=_PLACEHOLDER)
    feedback = _signed(identity, unsigned)
    assert isinstance(feedback, Feedback)
    return feedback


def verify_vote(vote: Vote) -> None:
    """Check the vote was signed by `vote.voter` and not altered since.

    Raises:
        SignatureError: the signature does not verify.
    """
    verify(vote.voter, signing_payload(vote), vote.signature)


def verify_feedback(feedback: Feedback) -> None:
    """Check the feedback was signed by `feedback.reporter` and not altered since.

    Raises:
        SignatureError: the signature does not verify.
    """
    verify(feedback.reporter, signing_payload(feedback), feedback.signature)


def sign_member_cert(authority: Identity, *, member: str, issued_at: float,
                     expires_at: float, nonce: bytes | None = None) -> MemberCert:
    """A membership certificate for `member`, signed by the fleet `authority`.

    Raises:
        LocalProtocolError: a field is invalid (e.g. expires_at not after issued_at).
    """
    unsigned = MemberCert(authority=authority.peer_id, member=member, issued_at=issued_at,
                          expires_at=expires_at,
                          nonce=os.urandom(NONCE_BYTES) if nonce is None else nonce,
                          signature=_PLACEHOLDER)
    cert = _signed(authority, unsigned)
    assert isinstance(cert, MemberCert)
    return cert


def sign_revocations(authority: Identity, *, serial: int, revoked: tuple[str, ...],
                     issued_at: float, nonce: bytes | None = None) -> Revocations:
    """The fleet `authority`'s revocation list number `serial`, signed."""
    unsigned = Revocations(authority=authority.peer_id, serial=serial, revoked=revoked,
                           issued_at=issued_at,
                           nonce=os.urandom(NONCE_BYTES) if nonce is None else nonce,
                           signature=_PLACEHOLDER)
    rl = _signed(authority, unsigned)
    assert isinstance(rl, Revocations)
    return rl


def verify_authority_signature(msg: MemberCert | Revocations) -> None:
    """Check `msg` was signed by the `authority` it names (whether that is *our* fleet's
    authority is the caller's check).

    Raises:
        SignatureError: the signature does not verify.
    """
    verify(msg.authority, signing_payload(msg), msg.signature)
