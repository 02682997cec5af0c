"""Votes delivered to their origins: kept in the store's outbox until the origin acknowledged
them, sent again after a restart, drained on a graceful stop.

Rule: a signed Vote is written to the outbox (`store.outbox`) before it leaves; it goes straight
to its origin on /peerdata/reports/1.0.0 (up to `per_request` votes in one request, one task
per origin at a time)
and is removed from the outbox only on the origin's acknowledgement (an empty OfferReply), on a
refusal (ErrorReply: it will never be taken), or once older than the origin's replay window
(`expire_s`: it would be refused). An unreachable origin is retried with back-off; one frozen
origin never holds up the others. The network is injected (`send`), as in `relay.py`.
The origin's own pending offers (`OFFER` rows: selected for a round, not yet offered) live in
the same outbox; `origin.py` resumes them after a restart.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import cast

import trio

from peerdata.node.logs import event
from peerdata.store import Store
from peerdata.store.outbox import OutboxRecord
from peerdata.wire.messages import Vote

log = logging.getLogger("peerdata.node.delivery")

KIND = "vote"
OFFER = "offer"  # outbox kind of an image selected for a round and not yet offered (origin.py)
SendFn = Callable[[str, Sequence[bytes]], Awaitable[bool | None]]
"""Send encoded Votes to their origin in one request: True acknowledged, False refused, None
unreachable."""


def vote_key(vote: Vote) -> bytes:
    """One vote per (image, origin round, origin): the outbox key."""
    return vote.cid + vote.round_id.to_bytes(8, "big") + vote.origin.encode()


def vote_records(votes: Sequence[tuple[Vote, bytes]], at: float) -> list[OutboxRecord]:
    """Outbox rows for signed votes (with their encoding)."""
    return [OutboxRecord(KIND, vote_key(v), v.origin, data, at) for v, data in votes]


def offer_key(cid: bytes, round_id: int) -> bytes:
    return cid + round_id.to_bytes(8, "big")


def pending_offer(cid: bytes, round_id: int, size: int, labelled: bool, at: float
                  ) -> OutboxRecord:
    """The outbox row of an image selected for `round_id`, until it was offered."""
    data = json.dumps({"cid": cid.hex(), "round": round_id, "size": size, "label": labelled})
    return OutboxRecord(OFFER, offer_key(cid, round_id), "", data.encode(), at)


def pending_round(rec: OutboxRecord) -> tuple[bytes, int]:
    """(cid, round) of a pending offer's outbox row."""
    return rec.key[:32], int.from_bytes(rec.key[32:40], "big")


class VoteDelivery:
    """Delivers the outbox's votes (see the module rule)."""

    def __init__(self, store: Store, offload: Callable[..., Awaitable[object]], send: SendFn,
                 wall_clock: Callable[[], float], *, expire_s: float, retry_initial_s: float,
                 retry_max_s: float, send_timeout_s: float, per_request: int = 64) -> None:
        self.store, self._offload, self._send = store, offload, send
        self._wall_clock = wall_clock
        self.expire_s, self.retry_initial_s, self.retry_max_s = (
            expire_s, retry_initial_s, retry_max_s)
        self.send_timeout_s = send_timeout_s
        self.per_request = per_request
        self._wake = trio.Event()
        self._busy: set[str] = set()  # origins with a delivery task running
        self._empty = trio.Event()
        self.counts = {"votes_delivered": 0, "votes_refused": 0, "votes_expired": 0,
                       "votes_retried": 0}

    def kick(self) -> None:
        """New votes are in the outbox: deliver them now."""
        self._wake.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Deliver what the outbox holds (left by the last run too), then whatever is added."""
        async with trio.open_nursery() as nursery:
            task_status.started()
            while True:
                self._wake = trio.Event()
                waiting = cast(list[OutboxRecord],
                               await self._offload(self.store.list_outbox, KIND))
                if not waiting and not self._busy:
                    self._empty.set()
                by_origin: dict[str, list[OutboxRecord]] = {}
                for rec in waiting:
                    by_origin.setdefault(rec.peer, []).append(rec)
                for origin, recs in by_origin.items():
                    if origin not in self._busy:
                        self._busy.add(origin)
                        nursery.start_soon(self._deliver, origin, recs)
                await self._wake.wait()

    async def drain(self, timeout_s: float) -> int:
        """Wait until every vote is delivered (or `timeout_s`); how many are left (kept in
        the outbox for the next run)."""
        with trio.move_on_after(timeout_s):
            while True:
                self._empty = trio.Event()
                self.kick()
                await self._empty.wait()
                if not await self._offload(self.store.list_outbox, KIND):
                    return 0
        return len(await self._offload(self.store.list_outbox, KIND))  # type: ignore[arg-type]

    async def _deliver(self, origin: str, recs: list[OutboxRecord]) -> None:
        delay = self.retry_initial_s
        try:
            while recs:
                now = self._wall_clock()
                expired = [r for r in recs if now - r.created_at > self.expire_s]
                if expired:
                    self.counts["votes_expired"] += len(expired)
                    event(log, logging.WARNING, "votes_expired", peer=origin,
                          votes=len(expired))
                    await self._offload(self.store.remove_outbox, KIND,
                                        [r.key for r in expired])
                    recs = [r for r in recs if r not in expired]
                done: list[bytes] = []
                unreachable = False
                for k in range(0, len(recs), self.per_request):
                    chunk = recs[k:k + self.per_request]
                    ok = None  # a send that hangs past `send_timeout_s`: unreachable
                    with trio.move_on_after(self.send_timeout_s):
                        ok = await self._send(origin, [r.data for r in chunk])
                    if ok is None:
                        unreachable = True
                        break
                    done.extend(r.key for r in chunk)
                    self.counts["votes_delivered" if ok else "votes_refused"] += len(chunk)
                if done:
                    await self._offload(self.store.remove_outbox, KIND, done)
                    recs = [r for r in recs if r.key not in set(done)]
                if unreachable:
                    self.counts["votes_retried"] += 1
                    await trio.sleep(delay)
                    delay = min(delay * 2, self.retry_max_s)
        finally:
            self._busy.discard(origin)
            self.kick()  # votes added meanwhile, or the drain's check
