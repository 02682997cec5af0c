"""The node's durable memory: image blobs and what it learned about them.

Rule: nothing above this package touches SQLite or the blob directory directly; it goes
through the `Store` (SqliteStore: SQLite metadata, blob files).
"""

from peerdata.store.base import (
    FeedbackRecord,
    NotFoundError,
    PeerRecord,
    Provenance,
    RoundRecord,
    Sample,
    VoteRecord,
    content_id,
)
from peerdata.store.sqlite import SqliteStore

Store = SqliteStore  # the name the layers above use for a node's store

__all__ = [
    "FeedbackRecord",
    "NotFoundError",
    "PeerRecord",
    "Provenance",
    "RoundRecord",
    "Sample",
    "SqliteStore",
    "Store",
    "VoteRecord",
    "content_id",
]
