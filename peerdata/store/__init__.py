"""The node's durable memory: image blobs and what it learned about them.

Rule: nothing above this package touches SQLite or the blob directory directly; it goes
through the `Store` (SqliteStore: SQLite metadata, blob files).
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
    VoteRecord,
    content_id,
    may_leave,
)
from peerdata.store.sqlite import SqliteStore

Store = SqliteStore  # the name the layers above use for a node's store

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
