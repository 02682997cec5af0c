"""Sharing images: offer content IDs to a peer; the peer fetches only the ones it lacks.

Rule: a received image is stored only after its SHA-256 matched the content ID we asked for,
and only if every image in that reply did (one bad image rejects the reply, drops the link
and stores nothing from it). We serve a peer only the content IDs we offered to it.

Exit rule: every byte that leaves (an offer, a /fetch reply, a /relay answer) passes
`Store.may_leave` (privacy-filter output or received from a peer); a raw local content ID is
answered exactly as one we never held. A store failure ends one job, never the node.

Flow (sender A, receiver B):
  A --share ImageOffer(items)--> B;  B replies OfferReply(wanted) and queues a FetchJob;
  B's fetcher --fetch ImageRequest(cids)--> A;  A replies ImageData(items);
  B verifies, stores blob + sample, and posts a ReceivedImage on its bounded inbox.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

import trio

from peerdata.config import NodeConfig
from peerdata.errors import LocalProtocolError, RemoteProtocolError, StoreError, TransportError
from peerdata.net.transport import Transport
from peerdata.node.logs import event
from peerdata.node.quota import over_quota
from peerdata.node.resend import PendingSends
from peerdata.node.transfer import (
    FetchJob,
    HeldState,
    ReceivedImage,
    ShareStats,
    batches,
    check_reply,
    media_type_of,
)
from peerdata.store import NotFoundError, Sample, Store
from peerdata.wire.codec import decode_as, encode
from peerdata.wire.messages import (
    ErrorReply,
    ImageData,
    ImageItem,
    ImageOffer,
    ImageRequest,
    OfferItem,
    OfferReply,
    RelayState,
)
from peerdata.wire.versions import FETCH_PROTOCOL, SHARE_PROTOCOL

log = logging.getLogger("peerdata.node.share")

FETCH_QUEUE = 64  # offers waiting to be fetched; a full queue answers "busy"
FETCH_WORKERS = 4  # fetches in flight at once
FETCH_ATTEMPTS = 3  # a fetch that fails in transit is retried, after net.reconnect_* back-off
OFFERED_PER_PEER = 100_000  # cids a peer may fetch from us; the oldest offers expire first
INBOX_SIZE = 256  # received-image notices for the round logic; full = counted and dropped


class ShareService:
    """Offers, serves and fetches images; `run_fetcher` is its one long-running task."""

    def __init__(self, transport: Transport, store: Store, config: NodeConfig,
                 offload: Callable[..., Awaitable[Any]],
                 drop_link: Callable[[str, str], Awaitable[None]],
                 wall_clock: Callable[[], float], on_change: Callable[[], None],
                 is_member: Callable[[str], bool] = lambda _peer: True) -> None:
        self._transport = transport
        self._is_member = is_member
        self._store = store
        self._config = config
        self._run = offload
        self._drop_link = drop_link
        self._wall_clock = wall_clock
        self._on_change = on_change
        self._offered: dict[str, dict[bytes, None]] = {}  # per peer, oldest first
        self._pending: set[bytes] = set()
        self._pending_bytes: dict[str, int] = {}  # per peer: offered bytes not fetched yet
        self._jobs_send, self._jobs_recv = trio.open_memory_channel[FetchJob](FETCH_QUEUE)
        self._inbox_send, self.inbox = trio.open_memory_channel[ReceivedImage](INBOX_SIZE)
        self._held_send, self.held_inbox = trio.open_memory_channel[HeldState](INBOX_SIZE)
        self._c = dict.fromkeys(ShareStats.__dataclass_fields__, 0)
        self.sends = PendingSends(store, offload, wall_clock)  # plain sends kept until fetched

    def statistics(self) -> ShareStats:
        return ShareStats(**self._c)

    def _count(self, name: str, n: int = 1) -> None:
        self._c[name] += n
        self._on_change()

    # -- sending ---------------------------------------------------------------------------

    async def offer(self, peer_id: str, cids: list[bytes], round_id: int = 0
                    ) -> tuple[bytes, ...]:
        """Offer stored samples to `peer_id`; return the cids it wants (it fetches them).

        Raises:
            TransportError: the peer could not be reached.
            RemoteProtocolError: it answered with something other than an OfferReply.
            LocalProtocolError: a cid is not a stored sample.
        """
        items: list[OfferItem] = await self._run(self._new_items, list(dict.fromkeys(cids)),
                                                 round_id)
        if round_id == 0:  # kept (and offered again) until the peer fetched them
            await self.sends.offering(peer_id, [i.cid for i in items])
        reply = await self.offer_items(peer_id, items, round_id)
        if reply is not None and round_id == 0:
            held = set(reply)
            await self.sends.done(peer_id, [i.cid for i in items if i.cid not in held])
        return () if reply is None else reply

    def _new_items(self, cids: list[bytes], round_id: int) -> list[OfferItem]:
        """(worker thread) Offer items for stored samples, with no votes yet.

        Raises LocalProtocolError: a cid is not a stored sample."""
        items = []
        for cid in cids:
            sample = self._store.get_sample(cid)
            if sample is None:
                raise LocalProtocolError(f"cannot offer {cid.hex()[:16]}: not a stored sample")
            items.append(OfferItem(cid=cid, size=len(self._store.get_blob(cid)),
                                   has_label=sample.label is not None,
                                   origin=sample.origin or self._transport.peer_id,
                                   origin_round=round_id, novel_votes=0, voters=(), hops=0))
        return items

    async def offer_items(self, peer_id: str, items: list[OfferItem], round_id: int
                          ) -> tuple[bytes, ...] | None:
        """Offer stored samples with their vote state as given; the cids `peer_id` wants, or
        None if it refused (ErrorReply).

        Raises:
            TransportError: the peer could not be reached.
            RemoteProtocolError: it answered with something other than an OfferReply.
        """
        own = self._transport.peer_id
        if not self._is_member(peer_id):
            event(log, logging.WARNING, "offer_to_non_member_refused", peer=peer_id,
                  images=len(items))
            return None
        allowed: set[bytes] = await self._run(self._may_leave, [i.cid for i in items])
        if len(allowed) != len(items):
            event(log, logging.ERROR, "exit_refused", peer=peer_id,
                  refused=len(items) - len(allowed),
                  reason="raw local image (not a privacy-filter output, not received)")
            items = [i for i in items if i.cid in allowed]
            if not items:
                return None
        # Allow the fetch before the peer can possibly send it; the oldest offers expire.
        offered = self._offered.setdefault(peer_id, {})
        for item in items:
            offered.pop(item.cid, None)
            offered[item.cid] = None
        while len(offered) > OFFERED_PER_PEER:
            del offered[next(iter(offered))]
        msg = ImageOffer(sender=own, round_id=round_id, items=tuple(items))
        try:
            raw = await self._transport.request(peer_id, SHARE_PROTOCOL, encode(msg))
            reply = cast(OfferReply | ErrorReply, decode_as(
                raw, OfferReply, ErrorReply, limits=self._config.limits))
        except RemoteProtocolError as exc:
            await self._drop_link(peer_id, f"bad offer reply: {exc}")
            raise
        self._count("offers_sent")
        if isinstance(reply, ErrorReply):
            event(log, logging.WARNING, "offer_refused", peer=peer_id, code=reply.code,
                  message=reply.message)
            return None
        event(log, logging.INFO, "offer_sent", peer=peer_id, offered=len(items),
              wanted=len(reply.wanted))
        return reply.wanted

    async def handle_fetch(self, peer_id: str, payload: bytes) -> bytes:
        """Serve /fetch: the requested images we offered to this peer (others are left out)."""
        req = decode_as(payload, ImageRequest, limits=self._config.limits)
        allowed = self._offered.get(peer_id, {})
        cids = [cid for cid in req.cids if cid in allowed]
        items: list[ImageItem] = await self._run(self._load_items, cids)
        self._count("images_sent", len(items))
        nbytes = sum(len(i.data) for i in items)
        self._count("bytes_sent", nbytes)
        await self._run(self._store.add_peer_traffic, peer_id, 0, nbytes, self._wall_clock())
        await self.sends.done(peer_id, [i.cid for i in items])
        event(log, logging.INFO, "images_served", peer=peer_id, requested=len(req.cids),
              served=len(items))
        return encode(ImageData(items=tuple(items)))

    def _may_leave(self, cids: list[bytes]) -> set[bytes]:
        """(worker thread) The cids whose bytes may leave this robot (`Store.may_leave`)."""
        return {cid for cid in cids if self._store.may_leave(cid)}

    def _load_items(self, cids: list[bytes]) -> list[ImageItem]:
        """(worker thread) The bytes and labels of stored samples that may leave, as fetch
        reply items (anything else is left out, as if we never held it)."""
        items = []
        for cid in cids:
            if not self._store.may_leave(cid):
                continue
            sample = self._store.get_sample(cid)
            try:
                data = self._store.get_blob(cid)
            except NotFoundError:
                continue  # gone since we offered it: the reply may hold fewer items
            items.append(ImageItem(cid=cid, data=data, label=sample.label if sample else None,
                                   media_type=media_type_of(data)))
        return items

    # -- receiving -------------------------------------------------------------------------

    def _missing(self, items: list[OfferItem]) -> list[OfferItem]:
        """(worker thread) The offered items we hold no sample of, or hold only as raw local
        bytes (answered exactly like an unknown cid: the exit rule)."""
        return [i for i in items
                if self._store.get_sample(i.cid) is None or not self._store.may_leave(i.cid)]

    async def handle_offer(self, peer_id: str, payload: bytes) -> bytes:
        """Serve /share: answer with the offered cids we lack and queue their fetch."""
        offer = decode_as(payload, ImageOffer, limits=self._config.limits)
        if offer.sender != peer_id:
            raise RemoteProtocolError(f"offer names sender {offer.sender}, link is {peer_id}")
        self._count("offers_received")
        max_size = self._config.limits.max_image_bytes
        candidates = [i for i in offer.items if i.cid not in self._pending and i.size <= max_size]
        missing: list[OfferItem] = await self._run(self._missing, candidates)
        refusal = await self._run(self._over_quota, peer_id, sum(i.size for i in missing)) \
            if missing else ""
        # Re-check after the waits (a duplicate offer may have queued them meanwhile); from
        # here to queueing the job there is no await, so no cid is fetched twice.
        wanted = [i for i in missing if i.cid not in self._pending]
        lacking = {i.cid for i in missing} | self._pending
        for item in offer.items:
            if item.cid not in lacking:
                self._post_held(HeldState(peer_id, item))
        if wanted:
            incoming = sum(i.size for i in wanted)
            if refusal:
                event(log, logging.WARNING, "offer_refused_quota", peer=peer_id,
                      images=len(wanted), nbytes=incoming, reason=refusal)
                return encode(ErrorReply(code="busy", message=refusal))
            try:
                self._jobs_send.send_nowait(FetchJob(peer_id, offer.round_id, tuple(wanted)))
            except trio.WouldBlock:
                return encode(ErrorReply(code="busy", message="fetch queue full; offer later"))
            self._pending.update(i.cid for i in wanted)
            self._pending_bytes[peer_id] = self._pending_bytes.get(peer_id, 0) + incoming
        event(log, logging.INFO, "offer_received", peer=peer_id, offered=len(offer.items),
              wanted=len(wanted))
        return encode(OfferReply(wanted=tuple(i.cid for i in wanted)))

    def _over_quota(self, peer_id: str, incoming: int) -> str:
        """(worker thread) Why storing `incoming` more bytes from `peer_id` is refused ("" if
        it fits): `node.quota.over_quota` with what is pending now."""
        return over_quota(self._store, self._config.trust, peer_id, self._pending_bytes,
                          incoming)

    def _post_held(self, notice: HeldState) -> None:
        try:
            self._held_send.send_nowait(notice)
        except trio.WouldBlock:
            self._count("inbox_dropped")

    async def handle_relay(self, peer_id: str, payload: bytes) -> bytes:
        """Serve /relay: vote state for an image we hold (ErrorReply not_found if we don't)."""
        msg = decode_as(payload, RelayState, limits=self._config.limits)
        if not await self._run(self._store.may_leave, msg.cid) or \
                await self._run(self._store.get_sample, msg.cid) is None:
            return encode(ErrorReply(code="not_found", message="offer the image instead"))
        item = OfferItem(cid=msg.cid, size=1, has_label=False, origin=msg.origin,
                         origin_round=msg.origin_round, novel_votes=msg.novel_votes,
                         voters=msg.voters, hops=msg.hops)
        self._post_held(HeldState(peer_id, item))
        return encode(OfferReply(wanted=()))

    async def run_fetcher(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                          ) -> None:
        """Fetch queued offers, FETCH_WORKERS at a time (a stalled peer holds up one), forever.

        A fetch that fails in transit is queued again after `net.reconnect_initial_s`, doubling
        up to `net.reconnect_max_s`, FETCH_ATTEMPTS times in all.
        """
        async with trio.open_nursery() as nursery:
            for _ in range(FETCH_WORKERS):
                nursery.start_soon(self._fetch_worker, nursery)
            await nursery.start(self.sends.run, lambda peer, cids: self.offer(peer, cids, 0),
                                self._transport.connected_peers)
            task_status.started()

    async def _fetch_worker(self, nursery: trio.Nursery) -> None:
        async for job in self._jobs_recv:
            retry = None
            try:
                retry = await self.fetch(job)
            except StoreError as exc:
                # Disk full, read-only home, a corrupt file: this job is lost, the node is not.
                self._count("fetch_failures")
                event(log, logging.ERROR, "store_failed", peer=job.peer_id,
                      images=len(job.items), error=str(exc)[:300])
            finally:
                keep = {i.cid for i in retry.items} if retry else set()
                self._release(job.peer_id, [i for i in job.items if i.cid not in keep])
            if retry is not None:
                nursery.start_soon(self._retry_later, retry)

    def _release(self, peer_id: str, items: Sequence[OfferItem]) -> None:
        """Forget queued items: no longer pending, their bytes no longer held for `peer_id`."""
        self._pending.difference_update(i.cid for i in items)
        left = self._pending_bytes.get(peer_id, 0) - sum(i.size for i in items)
        if left > 0:
            self._pending_bytes[peer_id] = left
        else:
            self._pending_bytes.pop(peer_id, None)

    async def _retry_later(self, job: FetchJob) -> None:
        net = self._config.net
        await trio.sleep(min(net.reconnect_initial_s * 2 ** (job.attempt - 1),
                             net.reconnect_max_s))
        try:
            self._jobs_send.send_nowait(job)
        except trio.WouldBlock:
            self._release(job.peer_id, job.items)
            event(log, logging.WARNING, "fetch_given_up", peer=job.peer_id,
                  images=len(job.items), reason="fetch queue full")

    async def fetch(self, job: FetchJob) -> FetchJob | None:
        """Fetch, verify and store one job's images.

        Returns the rest of the job to try again when the transfer failed in transit (None
        when done, refused, or out of attempts). A bad reply is never retried: the link is
        dropped instead.
        """
        limits = self._config.limits
        parts = batches(job.items, limits.max_message_bytes, limits.max_list_len)
        for n, batch in enumerate(parts):
            requested = {i.cid: i for i in batch}
            try:
                raw = await self._transport.request(
                    job.peer_id, FETCH_PROTOCOL, encode(ImageRequest(cids=tuple(requested))))
                reply = cast(ImageData | ErrorReply,
                             decode_as(raw, ImageData, ErrorReply, limits=limits))
                if isinstance(reply, ErrorReply):
                    event(log, logging.WARNING, "fetch_refused", peer=job.peer_id,
                          code=reply.code, message=reply.message)
                    self._count("fetch_failures")
                    return None
                self._count("images_received", len(reply.items))
                nbytes = sum(len(i.data) for i in reply.items)
                self._count("bytes_received", nbytes)
                await self._run(self._store.add_peer_traffic, job.peer_id, nbytes, 0,
                                self._wall_clock())
                await self._run(check_reply, requested, reply, limits.max_image_bytes)
            except RemoteProtocolError as exc:
                self._count("images_rejected", len(batch))
                await self._drop_link(job.peer_id, f"bad fetch reply: {exc}")
                return None
            except TransportError as exc:
                self._count("fetch_failures")
                rest = tuple(i for b in parts[n:] for i in b)
                again = job.attempt + 1 < FETCH_ATTEMPTS
                event(log, logging.WARNING, "fetch_failed", peer=job.peer_id, images=len(rest),
                      attempt=job.attempt + 1, retry=again, error=str(exc)[:200])
                return FetchJob(job.peer_id, job.round_id, rest, job.attempt + 1) if again \
                    else None
            # Posted together once all are stored: the round logic votes on them as one batch.
            notices = await self._store_items(job, requested, reply.items)
            for notice in notices:
                try:
                    self._inbox_send.send_nowait(notice)
                except trio.WouldBlock:
                    self._count("inbox_dropped")
            event(log, logging.INFO, "images_fetched", peer=job.peer_id, requested=len(batch),
                  verified=len(reply.items))
        return None

    async def _store_items(self, job: FetchJob, requested: dict[bytes, OfferItem],
                           items: Sequence[ImageItem]) -> list[ReceivedImage]:
        """Store a verified reply's images: blobs durable first, their rows in one commit."""
        now = self._wall_clock()

        def put() -> None:
            # a crash before the commit leaves orphan blobs (fetched again), never rows alone
            with self._store.batch():
                for item in items:
                    if self._store.put_blob(item.data, "received", job.peer_id) != item.cid:
                        raise LocalProtocolError("store computed a different content ID")
                    self._store.add_sample(Sample(
                        cid=item.cid, source="received", label=item.label,
                        origin=requested[item.cid].origin, domain=None, prediction=None,
                        confidence=None, embedding=None, observed_round=job.round_id,
                        created_at=now))

        await self._run(put)
        self._count("images_verified", len(items))
        return [ReceivedImage(cid=i.cid, sender=job.peer_id, origin=requested[i.cid].origin,
                              label=i.label, media_type=i.media_type, nbytes=len(i.data),
                              round_id=job.round_id, item=requested[i.cid]) for i in items]

