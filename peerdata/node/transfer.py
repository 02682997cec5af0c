"""What travels in a share exchange, and the pure checks of fetch traffic (no I/O).

Rule: `check_reply` is the one judgement of a fetch reply (only requested content IDs, within
the size offered and the image limit, each hashing to its content ID); `batches` splits what
we fetch so every reply fits one message. The service that moves them is `node.share`.
"""

from __future__ import annotations

from dataclasses import dataclass

from peerdata.errors import RemoteProtocolError
from peerdata.wire.messages import ImageData, OfferItem, verify_item

# Room left in a fetch reply for the envelope and per-item fields beside the image bytes.
_ITEM_OVERHEAD = 256


@dataclass(frozen=True)
class ReceivedImage:
    """A verified image now in the store (what the round logic reads from the inbox)."""

    cid: bytes
    sender: str
    origin: str
    label: int | None
    media_type: str
    nbytes: int
    round_id: int
    item: OfferItem  # the vote state that travelled with the offer


@dataclass(frozen=True)
class HeldState:
    """Vote state for an image we already hold (an offer of it, or /relay): it applies as if
    the image had just arrived (proto/PROTOCOL.md section 5, step 3)."""

    sender: str
    item: OfferItem


@dataclass(frozen=True)
class FetchJob:
    """Images a peer offered that we lack, waiting for the fetcher."""

    peer_id: str
    round_id: int
    items: tuple[OfferItem, ...]
    attempt: int = 0  # transfers of this job that failed in transit so far


@dataclass(frozen=True)
class ShareStats:
    """Counters of the share service."""

    offers_sent: int
    offers_received: int
    images_sent: int
    bytes_sent: int
    images_received: int
    images_verified: int
    images_rejected: int
    bytes_received: int
    fetch_failures: int
    inbox_dropped: int


def media_type_of(data: bytes) -> str:
    """Sniff an image's media type from its first bytes ("application/octet-stream" if unknown)."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    return "application/octet-stream"


def batches(items: tuple[OfferItem, ...], max_bytes: int, max_items: int
            ) -> list[tuple[OfferItem, ...]]:
    """Split offered items into fetch requests whose replies fit one message."""
    out: list[tuple[OfferItem, ...]] = []
    current: list[OfferItem] = []
    size = 0
    for item in items:
        cost = item.size + _ITEM_OVERHEAD
        if current and (size + cost > max_bytes or len(current) >= max_items):
            out.append(tuple(current))
            current, size = [], 0
        current.append(item)
        size += cost
    if current:
        out.append(tuple(current))
    return out


def check_reply(requested: dict[bytes, OfferItem], reply: ImageData, max_image_bytes: int
                ) -> None:
    """Judge a fetch reply: only requested cids, within size, each hashing to its cid.

    Raises:
        RemoteProtocolError: any item is unrequested, oversized, or fails its SHA-256.
    """
    for item in reply.items:
        offered = requested.get(item.cid)
        if offered is None:
            raise RemoteProtocolError(f"reply holds unrequested image {item.cid.hex()[:16]}")
        if len(item.data) > max_image_bytes:
            raise RemoteProtocolError(
                f"image {item.cid.hex()[:16]} is {len(item.data)} bytes (limit {max_image_bytes})"
            )
        if len(item.data) != offered.size:
            raise RemoteProtocolError(
                f"image {item.cid.hex()[:16]} is {len(item.data)} bytes, offered as {offered.size}")
        verify_item(item)
