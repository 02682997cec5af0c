"""The frozen records the Store keeps, and the checks and rules they share.

Rule: a record validates itself when built, so the Store stores only valid records and raises
only StoreError (or its subclass NotFoundError) on purpose.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Literal

from peerdata.errors import StoreError

CID_BYTES = 32
SampleSource = Literal["local", "received"]
SAMPLE_SOURCES: tuple[SampleSource, ...] = ("local", "received")
# Where a blob's bytes came from: captured here (raw, never leaves), made by the privacy
# filter, or received from a peer (already outside the robot).
Provenance = Literal["local", "filtered", "received"]
PROVENANCES: tuple[Provenance, ...] = ("local", "filtered", "received")


def may_leave(provenance: Provenance | None) -> bool:
    """The exit rule, the one place it is decided: bytes may leave this robot only if the
    privacy filter made them or a peer sent them. Raw local bytes and unknown cids may not.

    Every exit path (serving /fetch, offering, relaying) asks this through
    `SqliteStore.may_leave`, so a raw local content ID looks exactly like one we never held.
    """
    return provenance in ("filtered", "received")


def merge_provenance(old: Provenance | None, new: Provenance) -> Provenance:
    """The provenance of bytes stored again: "local" is replaced by what is learned later
    (the filter judged these exact bytes safe, or a peer already holds them); "filtered" and
    "received" are kept."""
    if new not in PROVENANCES:
        raise StoreError(f"provenance must be one of {PROVENANCES}, got {new!r}")
    return new if old is None or old == "local" else old


class NotFoundError(StoreError, LookupError):
    """The store holds nothing under that key (a blob, sample, shared item...)."""


def content_id(data: bytes) -> bytes:
    """Return the content ID of `data`: its 32-byte SHA-256 digest."""
    return hashlib.sha256(data).digest()


def check_cid(cid: bytes) -> bytes:
    """Return `cid` unchanged; raise StoreError unless it is 32 bytes."""
    if not isinstance(cid, bytes) or len(cid) != CID_BYTES:
        raise StoreError(f"a content ID is {CID_BYTES} bytes, got {cid!r:.80}")
    return cid


def check_count(name: str, value: int) -> None:
    """Raise StoreError unless `value` is an int >= 0."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise StoreError(f"{name} must be an int >= 0, got {value!r}")


def check_finite(name: str, value: float | None) -> None:
    """Raise StoreError unless `value` is None or a finite number."""
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value)
    ):
        raise StoreError(f"{name} must be a finite number, got {value!r}")


@dataclass(frozen=True)
class Sample:
    """One image this robot holds: captured locally or received from a peer."""

    cid: bytes
    source: SampleSource
    label: int | None
    origin: str | None  # peer ID that first shared it; None for local images
    domain: str | None  # ground-truth dataset tag, used only by experiments
    prediction: int | None
    confidence: float | None
    embedding: bytes | None  # float32 array bytes
    observed_round: int
    created_at: float

    def __post_init__(self) -> None:
        check_cid(self.cid)
        if self.source not in SAMPLE_SOURCES:
            raise StoreError(f"sample source must be one of {SAMPLE_SOURCES}, got {self.source!r}")
        if self.source == "local" and self.origin is not None:
            raise StoreError("a local sample has no origin peer")
        if self.source == "received" and not self.origin:
            raise StoreError("a received sample needs its origin peer ID")
        check_count("observed_round", self.observed_round)
        check_finite("confidence", self.confidence)
        check_finite("created_at", self.created_at)

    @property
    def cid_hex(self) -> str:
        return self.cid.hex()


@dataclass(frozen=True)
class SharedRecord:
    """One image sent to one peer in one round, with its utility once feedback arrived."""

    cid: bytes
    round_id: int
    peer_id: str
    nbytes: int
    shared_at: float
    utility: float | None = None
    voters: int | None = None
    novel_votes: int | None = None

    def __post_init__(self) -> None:
        check_cid(self.cid)
        check_count("round_id", self.round_id)
        check_count("nbytes", self.nbytes)
        check_finite("shared_at", self.shared_at)


@dataclass(frozen=True)
class VoteRecord:
    """One peer's out-of-distribution vote on one image."""

    cid: bytes
    origin: str  # peer that shared the image
    voter: str
    round_id: int
    novel: bool
    score: float
    received_at: float
    late: bool  # arrived after the round's vote deadline

    def __post_init__(self) -> None:
        check_cid(self.cid)
        check_count("round_id", self.round_id)
        check_finite("score", self.score)
        check_finite("received_at", self.received_at)


@dataclass(frozen=True)
class FeedbackRecord:
    """A utility report for one image, gossiped back by `reporter`."""

    cid: bytes
    round_id: int
    reporter: str
    utility: float
    voters: tuple[str, ...]
    novel_votes: int
    received_at: float

    def __post_init__(self) -> None:
        check_cid(self.cid)
        check_count("round_id", self.round_id)
        check_count("novel_votes", self.novel_votes)
        check_finite("utility", self.utility)
        check_finite("received_at", self.received_at)
        if not isinstance(self.voters, tuple):
            raise StoreError("FeedbackRecord.voters must be a tuple of peer IDs")


@dataclass(frozen=True)
class PeerRecord:
    """What this robot remembers about one peer across restarts."""

    peer_id: str
    address: str
    first_seen: float
    last_seen: float
    bytes_in: int
    bytes_out: int
    last_message_at: float | None


@dataclass(frozen=True)
class RoundRecord:
    """One sharing round; `finished_at` is None while it runs."""

    round_id: int
    started_at: float
    finished_at: float | None = None
    shared: int = 0
    bytes_sent: int = 0
    votes_received: int = 0
    feedback_received: int = 0
    mean_utility: float | None = None
    accuracy: float | None = None
    ranker_trained: bool = False

    def __post_init__(self) -> None:
        check_count("round_id", self.round_id)
        for name in ("shared", "bytes_sent", "votes_received", "feedback_received"):
            check_count(name, getattr(self, name))
        for name in ("started_at", "finished_at", "mean_utility", "accuracy"):
            check_finite(name, getattr(self, name))
