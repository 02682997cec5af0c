"""Plain sends (`peerdata send`, round 0) that survive a kill at either end: what was offered
and not yet fetched is kept in the store's outbox and offered again.

Rule: an image sent to a peer is written to the outbox (`SEND` rows, one per peer and cid)
before the offer goes out; the row goes once the peer fetched the image from us, or answered
that it holds it already. Every `RESEND_S`, rows older than that whose peer is connected are
offered again (the peer, killed after wanting them, lost its fetch queue; or we were killed
after offering and our record of what the peer may fetch). A restarted daemon reads the rows
back. Round offers are not kept here: the origin keeps its own (`delivery.OFFER`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence

import trio

from peerdata.errors import PeerdataError
from peerdata.node.logs import event
from peerdata.store import Store
from peerdata.store.outbox import OutboxRecord

log = logging.getLogger("peerdata.node.resend")

SEND = "send"
RESEND_S = 5.0  # how often (and after how long) unfetched sends are offered again


def send_key(peer: str, cid: bytes) -> bytes:
    return cid + peer.encode()


class PendingSends:
    """The outbox's unfetched sends, mirrored in memory (with when each was last offered, on
    trio's clock) so that serving a fetch costs a store write only when it completes a send."""

    def __init__(self, store: Store, offload: Callable[..., Awaitable[object]],
                 wall_clock: Callable[[], float]) -> None:
        self.store, self._offload, self._wall_clock = store, offload, wall_clock
        self._pending: dict[tuple[str, bytes], float] = {}
        self.counts = {"resent": 0}

    async def load(self) -> None:
        """Read back what the last run left unfetched."""
        rows: list[OutboxRecord] = await self._offload(  # type: ignore[assignment]
            self.store.list_outbox, SEND)
        for r in rows:
            self._pending[(r.peer, r.key[:32])] = -RESEND_S  # due at once

    async def offering(self, peer: str, cids: Sequence[bytes]) -> None:
        """Before an offer of `cids` to `peer` goes out."""
        new = [c for c in cids if (peer, c) not in self._pending]
        if new:
            at = self._wall_clock()
            await self._offload(self.store.put_outbox, [
                OutboxRecord(SEND, send_key(peer, c), peer, b"", at) for c in new])
        for c in new:
            self._pending[(peer, c)] = trio.current_time()

    async def done(self, peer: str, cids: Iterable[bytes]) -> None:
        """`peer` fetched these (or holds them already): nothing left to do for them."""
        gone = [c for c in cids if self._pending.pop((peer, c), None) is not None]
        if gone:
            await self._offload(self.store.remove_outbox, SEND,
                                [send_key(peer, c) for c in gone])

    def due(self, connected: Iterable[str]) -> dict[str, list[bytes]]:
        """Per connected peer, the sends older than RESEND_S (to offer again)."""
        now, live = trio.current_time(), set(connected)
        out: dict[str, list[bytes]] = {}
        for (peer, cid), at in self._pending.items():
            if peer in live and now - at >= RESEND_S:
                out.setdefault(peer, []).append(cid)
        return out

    async def run(self, offer: Callable[[str, list[bytes]], Awaitable[object]],
                  connected: Callable[[], Iterable[str]], *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Offer the due sends again every RESEND_S (`offer(peer, cids)`), until cancelled."""
        await self.load()
        task_status.started()
        while True:
            await trio.sleep(RESEND_S)
            for peer, cids in self.due(connected()).items():
                for c in cids:
                    self._pending[(peer, c)] = trio.current_time()  # next try in RESEND_S
                try:
                    await offer(peer, cids)
                except PeerdataError as exc:  # one peer's failure stops no other
                    event(log, logging.INFO, "resend_failed", peer=peer, images=len(cids),
                          error=str(exc)[:200])
                    continue
                self.counts["resent"] += len(cids)
                event(log, logging.INFO, "resent", peer=peer, images=len(cids))
