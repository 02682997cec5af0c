"""Counters `status` lacked for operations: privacy filter, per-protocol bytes, vote latency,
store size and free disk, and the metrics URL; added to the record by wrapping the dispatch.

Rule: everything here is read at the time `status` is asked (no counters of its own), so the
metrics endpoint, which renders the same record, always agrees with `peerdata status`.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from peerdata.control.protocol import ControlRequest
from peerdata.control.server import Dispatch
from peerdata.node.node import Node
from peerdata.store import Store

# Upper bounds (seconds) of the vote latency histogram: vote arrival minus the image's sharing.
VOTE_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
STORE_FILES = ("store.sqlite", "store.sqlite-wal", "store.sqlite-shm")


def vote_latency(store: Store) -> dict[str, Any]:
    """Histogram of (vote received_at - shared_at) over the signed votes on our images."""
    first: dict[bytes, float] = {}
    for rec in store.list_shared():
        first[rec.cid] = min(first.get(rec.cid, rec.shared_at), rec.shared_at)
    latencies = [v.received_at - first[v.cid] for v in store.list_votes()
                 if v.cid in first and v.received_at >= first[v.cid]]
    counts = [sum(x <= b for x in latencies) for b in VOTE_LATENCY_BUCKETS]
    return {"buckets": [[b, n] for b, n in zip(VOTE_LATENCY_BUCKETS, counts, strict=True)],
            "count": len(latencies), "sum": round(sum(latencies), 6)}


def disk_fields(store: Store, home: Path) -> dict[str, Any]:
    """Bytes the store takes in `home` (its SQLite files plus the blob bytes it accounts for),
    and bytes free on its file system; reads no blob directory, so a scrape stays cheap."""
    size = store.stored_bytes()
    for name in STORE_FILES:
        try:
            size += (home / name).stat().st_size
        except OSError:
            pass
    return {"store_bytes": size, "disk_free_bytes": shutil.disk_usage(home).free}


def store_fields(node: Node, home: Path) -> dict[str, Any]:
    """(worker thread) The fields read from the store and the disk."""
    store = node.store
    return {"images_shared": len(store.list_shared()), "vote_latency_s": vote_latency(store),
            **disk_fields(store, home)}


def live_fields(node: Node) -> dict[str, Any]:
    """(event loop: these objects are mutated there) Counters read from the node's services."""
    out: dict[str, Any] = {"peers_known": len(node.book.peers)}
    out["bytes_by_protocol"] = {p: {"in": i, "out": o} for p, (i, o)
                                in node.transport.statistics().bytes_by_protocol.items()}
    counts = getattr(node.transport, "connection_counts", None)  # libp2p's own, where present
    if counts is not None:
        out["libp2p_connections"] = counts()
    # (the round service's clock offsets and privacy counters come with its status fields)
    return out


def with_ops_fields(dispatch: Dispatch, node: Node, home: Path,
                    metrics_url: Callable[[], str | None]) -> Dispatch:
    """`dispatch`, with the ops fields and `metrics_url` added to every `status` answer."""

    async def extended(req: ControlRequest) -> dict[str, Any]:
        result = await dispatch(req)
        if req.cmd == "status":
            result.update(live_fields(node))
            result.update(await node.offload(store_fields, node, home))
            result["metrics_url"] = metrics_url()
        return result

    return extended

