"""The peerdata message set: frozen dataclasses that validate themselves when built.

Rule: a message that exists is valid. Building a bad one raises LocalProtocolError (our bug);
the codec is the one place that turns the same failure on received bytes into
RemoteProtocolError. Field order here is wire order and signing order: never reorder fields.
Field checks and the `Record` base live in `wire.fields` (re-exported here).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from peerdata.errors import RemoteProtocolError
from peerdata.wire.fields import (
    _ERROR_CODE_RE,
    _MEDIA_TYPE_RE,
    CID_BYTES,
    MAX_ADDR_CHARS,
    MAX_AGENT_CHARS,
    MAX_ERROR_MESSAGE_CHARS,
    MAX_LABEL,
    MAX_LISTEN_ADDRS,
    MAX_MEDIA_TYPE_CHARS,
    MAX_NAME_CHARS,
    NONCE_BYTES,
    SIGNATURE_BYTES,
    UTILITY_TOLERANCE,
    Message,
    Record,
    _cids,
    _fail,
    _fixed_bytes,
    _non_negative,
    _peer_id,
    _text,
    _vote_state,
    content_id,
)

# --- hello ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Hello(Message):
    """Request and reply of /peerdata/hello: who I am and how far along I am."""

    TAG: ClassVar[int] = 1
    protocol_version: int  # the highest protocol version the sender speaks
    peer_id: str
    name: str
    listen_addrs: tuple[str, ...]
    agent: str  # software name and version, e.g. "peerdata/0.1.0"
    samples: int  # labelled samples the node holds, for display
    round_id: int  # the sender's current sharing round

    def _check(self) -> None:
        cls = type(self)
        if self.protocol_version < 1:
            _fail(cls, "protocol_version", f"must be >= 1, got {self.protocol_version}")
        _peer_id(cls, "peer_id", self.peer_id)
        _text(cls, "name", self.name, MAX_NAME_CHARS)
        if len(self.listen_addrs) > MAX_LISTEN_ADDRS:
            _fail(cls, "listen_addrs", f"has {len(self.listen_addrs)} entries, limit "
                                       f"{MAX_LISTEN_ADDRS}")
        for i, addr in enumerate(self.listen_addrs):
            _text(cls, f"listen_addrs[{i}]", addr, MAX_ADDR_CHARS)
            if not addr.startswith("/"):
                _fail(cls, f"listen_addrs[{i}]", f"is not a multiaddr: {addr[:80]!r}")
        _text(cls, "agent", self.agent, MAX_AGENT_CHARS)
        _non_negative(cls, "samples", self.samples)
        _non_negative(cls, "round_id", self.round_id)


# --- share: offer -> reply ------------------------------------------------------------------

@dataclass(frozen=True)
class OfferItem(Record):
    """One offered image and the vote state travelling with it."""

    cid: bytes
    size: int  # bytes of the image data
    has_label: bool
    origin: str  # peer ID of the robot that first shared the image
    origin_round: int
    novel_votes: int  # the utility counter: voters whose OoD detector found it novel
    voters: tuple[str, ...]  # peers that have voted so far, in vote order
    hops: int  # transfers so far; the origin sends 0

    def _check(self) -> None:
        cls = type(self)
        _fixed_bytes(cls, "cid", self.cid, CID_BYTES)
        if self.size <= 0:
            _fail(cls, "size", f"must be > 0, got {self.size}")
        _non_negative(cls, "origin_round", self.origin_round)
        _vote_state(cls, self.origin, self.novel_votes, self.voters, self.hops)


@dataclass(frozen=True)
class ImageOffer(Message):
    """Request of /peerdata/share: images the sender holds and can serve over /fetch."""

    TAG: ClassVar[int] = 2
    sender: str
    round_id: int
    items: tuple[OfferItem, ...]

    def _check(self) -> None:
        cls = type(self)
        _peer_id(cls, "sender", self.sender)
        _non_negative(cls, "round_id", self.round_id)
        if len({item.cid for item in self.items}) != len(self.items):
            _fail(cls, "items", "holds duplicate content IDs")


@dataclass(frozen=True)
class OfferReply(Message):
    """Reply of /peerdata/share and /peerdata/relay: the offered cids the receiver lacks."""

    TAG: ClassVar[int] = 3
    wanted: tuple[bytes, ...]

    def _check(self) -> None:
        _cids(type(self), "wanted", self.wanted)


# --- fetch: request -> data -----------------------------------------------------------------

@dataclass(frozen=True)
class ImageRequest(Message):
    """Request of /peerdata/fetch: send me these images."""

    TAG: ClassVar[int] = 4
    cids: tuple[bytes, ...]

    def _check(self) -> None:
        if not self.cids:
            _fail(type(self), "cids", "must not be empty")
        _cids(type(self), "cids", self.cids)


@dataclass(frozen=True)
class ImageItem(Record):
    """One image's bytes (already privacy-filtered) and its label, if the sender has one."""

    cid: bytes
    data: bytes
    label: int | None
    media_type: str  # e.g. "image/png"

    def _check(self) -> None:
        cls = type(self)
        _fixed_bytes(cls, "cid", self.cid, CID_BYTES)
        if not self.data:
            _fail(cls, "data", "must not be empty")
        if self.label is not None and not 0 <= self.label <= MAX_LABEL:
            _fail(cls, "label", f"must be in [0, {MAX_LABEL}] or None, got {self.label}")
        _text(cls, "media_type", self.media_type, MAX_MEDIA_TYPE_CHARS)
        if not _MEDIA_TYPE_RE.fullmatch(self.media_type):
            _fail(cls, "media_type", f"is not a lower-case media type: {self.media_type!r}")


def verify_item(item: ImageItem) -> None:
    """Check that a received image's bytes hash to its content ID.

    Raises:
        RemoteProtocolError: sha256(item.data) != item.cid.
    """
    actual = content_id(item.data)
    if actual != item.cid:
        raise RemoteProtocolError(
            f"image {item.cid.hex()[:16]}: its {len(item.data)} bytes hash to "
            f"{actual.hex()[:16]}, not to its content ID"
        )


@dataclass(frozen=True)
class ImageData(Message):
    """Reply of /peerdata/fetch: the requested images the sender still holds (maybe fewer)."""

    TAG: ClassVar[int] = 5
    items: tuple[ImageItem, ...]

    def _check(self) -> None:
        if len({item.cid for item in self.items}) != len(self.items):
            _fail(type(self), "items", "holds duplicate content IDs")


# --- relay and votes ------------------------------------------------------------------------

@dataclass(frozen=True)
class RelayState(Message):
    """Request of /peerdata/relay: the vote state of an image the receiver already holds."""

    TAG: ClassVar[int] = 6
    cid: bytes
    origin: str
    origin_round: int
    novel_votes: int
    voters: tuple[str, ...]
    hops: int

    def _check(self) -> None:
        cls = type(self)
        _fixed_bytes(cls, "cid", self.cid, CID_BYTES)
        _non_negative(cls, "origin_round", self.origin_round)
        _vote_state(cls, self.origin, self.novel_votes, self.voters, self.hops)


@dataclass(frozen=True)
class Vote(Message):
    """One peer's signed OoD verdict on one image; gossiped on peerdata/votes/1."""

    TAG: ClassVar[int] = 7
    voter: str  # the signer
    origin: str
    cid: bytes
    round_id: int  # the origin's round the image was shared in
    novel: bool
    score: float  # the OoD detector's score (higher = more novel)
    timestamp: float  # signer's wall clock, unix seconds
    nonce: bytes
    signature: bytes  # Ed25519 over the signing payload of every other field

    def _check(self) -> None:
        cls = type(self)
        _peer_id(cls, "voter", self.voter)
        _peer_id(cls, "origin", self.origin)
        if self.voter == self.origin:
            _fail(cls, "voter", "must differ from origin (no one votes on its own image)")
        _fixed_bytes(cls, "cid", self.cid, CID_BYTES)
        _non_negative(cls, "round_id", self.round_id)
        if self.timestamp < 0:
            _fail(cls, "timestamp", f"must be >= 0, got {self.timestamp}")
        _fixed_bytes(cls, "nonce", self.nonce, NONCE_BYTES)
        _fixed_bytes(cls, "signature", self.signature, SIGNATURE_BYTES)


@dataclass(frozen=True)
class Feedback(Message):
    """The final, signed utility of one image, addressed to its origin on peerdata/feedback/1."""

    TAG: ClassVar[int] = 8
    reporter: str  # the signer: the last voter in the relay chain
    origin: str
    cid: bytes
    round_id: int
    novel_votes: int
    voters: tuple[str, ...]
    utility: float  # novel_votes / len(voters), in [0, 1]
    timestamp: float
    nonce: bytes
    signature: bytes

    def _check(self) -> None:
        cls = type(self)
        _peer_id(cls, "reporter", self.reporter)
        _fixed_bytes(cls, "cid", self.cid, CID_BYTES)
        _non_negative(cls, "round_id", self.round_id)
        _vote_state(cls, self.origin, self.novel_votes, self.voters, 0)
        if not self.voters:
            _fail(cls, "voters", "must not be empty (feedback reports at least one vote)")
        if self.reporter not in self.voters:
            _fail(cls, "reporter", "must be one of the voters")
        expected = self.novel_votes / len(self.voters)
        if not 0.0 <= self.utility <= 1.0 or abs(self.utility - expected) > UTILITY_TOLERANCE:
            _fail(cls, "utility", f"must equal novel_votes/len(voters) = {expected}, "
                                  f"got {self.utility}")
        if self.timestamp < 0:
            _fail(cls, "timestamp", f"must be >= 0, got {self.timestamp}")
        _fixed_bytes(cls, "nonce", self.nonce, NONCE_BYTES)
        _fixed_bytes(cls, "signature", self.signature, SIGNATURE_BYTES)


MAX_REPORTS = 256  # Votes + Feedbacks one Reports request may carry


@dataclass(frozen=True)
class Reports(Message):
    """Request of /peerdata/reports/1.0.0: several signed Votes and Feedbacks on one origin's
    images in one stream (each keeps its own signature; judged one by one, in order)."""

    TAG: ClassVar[int] = 12
    origin: str  # every item's origin: the peer the request goes to
    votes: tuple[Vote, ...]
    feedback: tuple[Feedback, ...]

    def _check(self) -> None:
        cls = type(self)
        _peer_id(cls, "origin", self.origin)
        if not 1 <= len(self.votes) + len(self.feedback) <= MAX_REPORTS:
            _fail(cls, "votes", f"votes + feedback must hold 1..{MAX_REPORTS} items, got "
                                f"{len(self.votes) + len(self.feedback)}")
        if any(v.origin != self.origin for v in self.votes):
            _fail(cls, "votes", "holds a vote on another origin's image")
        if any(f.origin != self.origin for f in self.feedback):
            _fail(cls, "feedback", "holds feedback on another origin's image")
        if len({(v.cid, v.round_id, v.voter) for v in self.votes}) != len(self.votes):
            _fail(cls, "votes", "holds a voter's vote on an image twice")
        if len({(f.cid, f.round_id, f.reporter) for f in self.feedback}) != len(self.feedback):
            _fail(cls, "feedback", "holds a reporter's feedback on an image twice")


# --- errors ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class ErrorReply(Message):
    """A responder's reply instead of the expected one; the link stays up."""

    TAG: ClassVar[int] = 9
    code: str  # one of ERROR_CODES for version-1 senders
    message: str  # for humans; never parsed

    def _check(self) -> None:
        cls = type(self)
        if not _ERROR_CODE_RE.fullmatch(self.code):
            _fail(cls, "code", f"must match [a-z][a-z0-9_]{{0,63}}, got {self.code[:80]!r}")
        _text(cls, "message", self.message, MAX_ERROR_MESSAGE_CHARS, empty=True)


# --- fleet membership -----------------------------------------------------------------------

MAX_REVOKED = 10_000  # peers one revocation list may name (also bounded by limits.max_list_len)


@dataclass(frozen=True)
class MemberCert(Message):
    """The fleet authority's signed statement that `member` belongs to the fleet until
    `expires_at`; exchanged on /peerdata/member before any other request."""

    TAG: ClassVar[int] = 10
    authority: str  # the signer: the fleet authority's peer ID
    member: str  # the robot's peer ID
    issued_at: float  # unix seconds
    expires_at: float  # unix seconds; after it (plus the skew tolerance) the cert is void
    nonce: bytes
    signature: bytes

    def _check(self) -> None:
        cls = type(self)
        _peer_id(cls, "authority", self.authority)
        _peer_id(cls, "member", self.member)
        if not 0 <= self.issued_at < self.expires_at:
            _fail(cls, "expires_at", "must be later than issued_at >= 0")
        _fixed_bytes(cls, "nonce", self.nonce, NONCE_BYTES)
        _fixed_bytes(cls, "signature", self.signature, SIGNATURE_BYTES)


@dataclass(frozen=True)
class Revocations(Message):
    """The fleet authority's signed list of revoked members; a higher `serial` replaces a
    lower one. Gossiped on peerdata/fleet/1."""

    TAG: ClassVar[int] = 11
    authority: str  # the signer
    serial: int  # increases with every list the authority signs
    revoked: tuple[str, ...]
    issued_at: float
    nonce: bytes
    signature: bytes

    def _check(self) -> None:
        cls = type(self)
        _peer_id(cls, "authority", self.authority)
        _non_negative(cls, "serial", self.serial)
        if len(self.revoked) > MAX_REVOKED:
            _fail(cls, "revoked", f"names more than {MAX_REVOKED} peers")
        for i, peer in enumerate(self.revoked):
            _peer_id(cls, f"revoked[{i}]", peer)
        if len(set(self.revoked)) != len(self.revoked):
            _fail(cls, "revoked", "holds a peer twice")
        if self.issued_at < 0:
            _fail(cls, "issued_at", f"must be >= 0, got {self.issued_at}")
        _fixed_bytes(cls, "nonce", self.nonce, NONCE_BYTES)
        _fixed_bytes(cls, "signature", self.signature, SIGNATURE_BYTES)


MESSAGE_TYPES: tuple[type[Message], ...] = (
    Hello, ImageOffer, OfferReply, ImageRequest, ImageData, RelayState, Vote, Feedback, ErrorReply,
    MemberCert, Revocations, Reports,
)
RECORD_TYPES: tuple[type[Record], ...] = (OfferItem, ImageItem)
MESSAGES_BY_TAG: dict[int, type[Message]] = {cls.TAG: cls for cls in MESSAGE_TYPES}
