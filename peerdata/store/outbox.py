"""Messages this robot must still send, kept in the store until delivered (the outbox).

Rule: a message that must not be lost (a signed Vote for its origin, an image selected for a
round) is written here *before* it is sent and removed only once the peer acknowledged it, so a
SIGTERM or a kill -9 at any instant leaves it to be sent again after the restart. A (kind, key)
pair is one message: putting it again replaces it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from peerdata.errors import StoreError

MAX_KEY_BYTES = 128


@dataclass(frozen=True)
class OutboxRecord:
    """One message waiting to be sent: `data` for `peer`, of `kind`, named by `key`."""

    kind: str
    key: bytes
    peer: str
    data: bytes
    created_at: float

    def __post_init__(self) -> None:
        if not self.kind or not self.key or len(self.key) > MAX_KEY_BYTES:
            raise StoreError(f"outbox record needs a kind and a key of 1..{MAX_KEY_BYTES} bytes")
        if not math.isfinite(self.created_at):
            raise StoreError("outbox created_at must be finite")
