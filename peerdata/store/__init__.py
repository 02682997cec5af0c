"""The node's durable memory: image blobs and what it learned about them.

Rule: nothing above this package touches SQLite or the blob directory directly; it goes
through the `Store` interface (SqliteStore in a node, MemoryStore in fast tests).
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
from peerdata.store.memory import MemoryStore
from peerdata.store.sqlite import SqliteStore

__all__ = [
    "PROVENANCES",
    "FeedbackRecord",
    "MemoryStore",
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
