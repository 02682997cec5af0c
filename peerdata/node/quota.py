"""Storage quotas for images peers send us: one answer to "may we store this much more?".

Rule: an offer is refused (with the reason, as `busy`) when storing it would exceed the
sending peer's quota (`trust.max_peer_bytes`), the store's (`trust.max_store_bytes`), or leave
less than `trust.min_free_bytes` of disk; bytes already promised to pending fetches count.
Blocking (store reads): call it from a worker thread.
"""

from __future__ import annotations

from collections.abc import Mapping

from peerdata.config import TrustConfig
from peerdata.store import Store


def over_quota(store: Store, trust: TrustConfig, peer_id: str, pending: Mapping[str, int],
               incoming: int) -> str:
    """Why storing `incoming` more bytes from `peer_id` is refused ("" if it fits), given the
    bytes per peer already `pending` (offered, accepted, not yet fetched)."""
    pending_peer = pending.get(peer_id, 0)
    pending_all = sum(pending.values())
    peer_total = store.stored_bytes(peer_id) + pending_peer + incoming
    if peer_total > trust.max_peer_bytes:
        return (f"storage quota: {peer_total} bytes from this peer would exceed "
                f"trust.max_peer_bytes={trust.max_peer_bytes}")
    total = store.stored_bytes() + pending_all + incoming
    if total > trust.max_store_bytes:
        return (f"storage quota: {total} bytes stored would exceed "
                f"trust.max_store_bytes={trust.max_store_bytes}")
    free = store.free_bytes()
    if free - pending_all - incoming < trust.min_free_bytes:
        return (f"disk nearly full: {free} bytes free, floor "
                f"trust.min_free_bytes={trust.min_free_bytes}")
    return ""
