"""The abstract Store and the frozen records it keeps.

Rule: a record validates itself when built, so every Store implementation stores only valid
records and raises only StoreError (or its subclass NotFoundError) on purpose.
"""

from __future__ import annotations

import hashlib
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from types import TracebackType
from typing import Literal, Self

from peerdata.errors import StoreError
from peerdata.store.outbox import Outbox

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
    `Store.may_leave`, so a raw local content ID looks exactly like one we never held.
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

    @property
    def cid_hex(self) -> str:
        return self.cid.hex()


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

    @property
    def cid_hex(self) -> str:
        return self.cid.hex()


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

    @property
    def cid_hex(self) -> str:
        return self.cid.hex()


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


class Store(Outbox, ABC):
    """A node's durable memory: image blobs plus everything it learned about them.

    Implementations are safe to call from several threads (e.g. via `trio.to_thread.run_sync`);
    calls are serialised internally. Lists come back in insertion order unless said otherwise.
    Every method raises StoreError once `close()` was called.
    """

    # -- blobs ---------------------------------------------------------------------------------
    @abstractmethod
    def put_blob(self, data: bytes, provenance: Provenance = "local",
                 received_from: str | None = None) -> bytes:
        """Store `data` durably and return its content ID.

        `provenance` says where the bytes came from (default "local": raw, never leaves);
        storing them again only merges it (`merge_provenance`). `received_from` names the
        peer that sent them (for its storage quota; kept from the first time).
        """

    @abstractmethod
    def blob_provenance(self, cid: bytes) -> Provenance | None:
        """Where the blob `cid` came from, or None if it is not stored."""

    def may_leave(self, cid: bytes) -> bool:
        """Whether the bytes of `cid` may be served, offered or relayed (`may_leave`)."""
        return may_leave(self.blob_provenance(cid))

    @abstractmethod
    def stored_bytes(self, received_from: str | None = None) -> int:
        """Bytes of all blobs, or of those first received from one peer."""

    def free_bytes(self) -> int | None:
        """Free space where blobs are written (None: not on a disk, e.g. in memory)."""
        return None

    @abstractmethod
    def get_blob(self, cid: bytes) -> bytes:
        """Return the bytes stored under `cid`, verified against it.

        Raises NotFoundError if absent, StoreError if the stored bytes do not match `cid`.
        """

    @abstractmethod
    def has_blob(self, cid: bytes) -> bool:
        """Whether a blob with this content ID is stored."""

    # -- samples -------------------------------------------------------------------------------
    @abstractmethod
    def add_sample(self, sample: Sample) -> bool:
        """Add `sample`; return False (and change nothing) if its cid is already a sample.

        Raises NotFoundError unless the sample's blob was stored first with `put_blob`.
        """

    @abstractmethod
    def get_sample(self, cid: bytes) -> Sample | None:
        """The sample with this cid, or None."""

    @abstractmethod
    def list_samples(
        self,
        source: SampleSource | None = None,
        since_round: int | None = None,
        limit: int | None = None,
    ) -> list[Sample]:
        """Samples in insertion order, filtered by source and `observed_round >= since_round`."""

    @abstractmethod
    def count_samples(self, source: SampleSource | None = None) -> int:
        """How many samples (of this source) are stored."""

    @abstractmethod
    def update_prediction(
        self, cid: bytes, prediction: int, confidence: float, embedding: bytes | None
    ) -> None:
        """Replace the model's prediction for a sample. Raises NotFoundError if absent."""

    # -- shared items --------------------------------------------------------------------------
    @abstractmethod
    def record_shared(
        self, cid: bytes, round_id: int, peer_id: str, nbytes: int, at: float
    ) -> bool:
        """Record that sample `cid` was sent to `peer_id` in `round_id`.

        Returns False if that (cid, round_id, peer_id) was recorded already.
        Raises NotFoundError unless `cid` is a stored sample.
        """

    @abstractmethod
    def list_shared(self, round_id: int | None = None) -> list[SharedRecord]:
        """Shared items (of one round), each carrying its cid's utility if known."""

    @abstractmethod
    def set_utility(self, cid: bytes, utility: float, voters: int, novel_votes: int) -> None:
        """Set the utility feedback for a shared cid (replaces an earlier value).

        Raises NotFoundError if `cid` was never shared.
        """

    # -- votes and feedback --------------------------------------------------------------------
    @abstractmethod
    def add_vote(self, vote: VoteRecord) -> bool:
        """Add a vote; return False if this voter already voted on this cid."""

    @abstractmethod
    def list_votes(self, cid: bytes | None = None, round_id: int | None = None) -> list[VoteRecord]:
        """Votes, optionally only for one cid and/or one round."""

    @abstractmethod
    def add_feedback(self, record: FeedbackRecord) -> bool:
        """Add feedback; return False on a duplicate (cid, reporter, round_id)."""

    @abstractmethod
    def list_feedback(self, round_id: int | None = None) -> list[FeedbackRecord]:
        """Feedback records, optionally of one round."""

    @abstractmethod
    def feedback_count(self) -> int:
        """How many feedback records are stored."""

    # -- peers ---------------------------------------------------------------------------------
    @abstractmethod
    def upsert_peer(self, peer_id: str, address: str, at: float) -> None:
        """Remember a peer at `address`, seen at `at` (first_seen is kept on updates)."""

    @abstractmethod
    def add_peer_traffic(self, peer_id: str, bytes_in: int, bytes_out: int, at: float) -> None:
        """Add traffic counters for a peer (created with an empty address if unknown)."""

    @abstractmethod
    def list_peers(self) -> list[PeerRecord]:
        """All known peers, ordered by peer ID."""

    # -- rounds --------------------------------------------------------------------------------
    @abstractmethod
    def start_round(self, round_id: int, at: float) -> bool:
        """Record that a round started; return False (change nothing) if it exists already."""

    @abstractmethod
    def finish_round(self, record: RoundRecord) -> None:
        """Store the final record of a round (inserted if `start_round` was never called)."""

    @abstractmethod
    def get_round(self, round_id: int) -> RoundRecord | None:
        """The record of one round, or None."""

    @abstractmethod
    def list_rounds(self) -> list[RoundRecord]:
        """All rounds, ordered by round_id."""

    @abstractmethod
    def last_round_id(self) -> int:
        """The highest round_id recorded, 0 if none."""

    # -- node state ----------------------------------------------------------------------------
    @abstractmethod
    def get_meta(self, key: str) -> str | None:
        """A small node-state value, or None."""

    @abstractmethod
    def set_meta(self, key: str, value: str) -> None:
        """Set a small node-state value (replaces an earlier one)."""

    # -- lifetime ------------------------------------------------------------------------------
    @abstractmethod
    def close(self) -> None:
        """Release the store's resources; closing twice is allowed."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
