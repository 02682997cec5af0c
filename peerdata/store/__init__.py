"""The node's durable memory: image blobs and what it learned about them.

Rule: nothing above this package touches SQLite or the blob directory directly; it goes
through the `Store` interface (implemented by SqliteStore).
"""

from peerdata.store.base import (
    PROVENANCES,
    FeedbackRecord,
    NotFoundError,
    PeerRecord,
    Provenance,
    RoundRecord,
    Sample,
    SampleSource,
    SharedRecord,
    Store,
    VoteRecord,
    content_id,
    may_leave,
)
from peerdata.store.sqlite import SqliteStore

__all__ = [
    "PROVENANCES",
    "FeedbackRecord",
    "NotFoundError",
    "PeerRecord",
    "Provenance",
    "RoundRecord",
    "Sample",
    "SampleSource",
    "SharedRecord",
    "SqliteStore",
    "Store",
    "VoteRecord",
    "content_id",
    "may_leave",
]
