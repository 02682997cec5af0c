"""A round seen from a receiver: vote, keep the image, pass the state on, report; plus the
origin's intake of Feedback and Votes (on /peerdata/report/1.0.0 and gossip).

Rule: every arriving vote state goes through the RelayDesk (the relay core: one vote per image
and robot); a vote and keeping the image are one step of the `LearnerTask`; gossip leaves this
robot paced (GOSSIP_RATE_PER_S) and is judged on arrival only by the OriginDesk (the origin
core), with the peer of the link it arrived on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TypeVar, cast

import numpy as np
import trio

from peerdata.errors import DataError, PeerdataError, RemoteProtocolError, TransportError
from peerdata.node.delivery import VoteDelivery, vote_records
from peerdata.node.feedback import OriginDesk, vote_window_s
from peerdata.node.ingest import to_pixels
from peerdata.node.learner_task import LearnerTask
from peerdata.node.learning import LearnerHost
from peerdata.node.logs import event
from peerdata.node.node import Node
from peerdata.node.relay import RelayDesk
from peerdata.node.share import HeldState, ReceivedImage
from peerdata.store import VoteRecord
from peerdata.wire.codec import decode_as, encode
from peerdata.wire.messages import (
    ErrorReply,
    Feedback,
    OfferItem,
    OfferReply,
    Reports,
    Vote,
)
from peerdata.wire.signing import sign_feedback, sign_vote
from peerdata.wire.versions import FEEDBACK_TOPIC, VOTES_TOPIC

log = logging.getLogger("peerdata.node.receiver")
T = TypeVar("T")

REPORT_PROTOCOL = "/peerdata/report/1.0.0"  # Feedback -> empty OfferReply (ack) / ErrorReply
REPORTS_PROTOCOL = "/peerdata/reports/1.0.0"  # Reports (several) -> the same replies
REPORTS_PER_REQUEST = 64  # Votes or Feedbacks sent in one Reports request (wire cap 256)
GOSSIP_RATE_PER_S = 8.0  # below the ~10 msg/s per peer that gossip peers tolerate
GOSSIP_QUEUE = 1024  # waiting gossip; full = dropped and counted (votes are an audit trail)
ARRIVALS = 1024
REPORT_ATTEMPTS = 3
OFFER_ATTEMPTS = 3  # a hand-off that fails in transit (a stream not opened under load) is retried


async def offer_retrying(node: Node, peer: str, items: Sequence[OfferItem], round_id: int
                         ) -> tuple[bytes, ...] | None:
    """`ShareService.offer_items`, tried again with back-off while it fails in transit
    (TransportError), OFFER_ATTEMPTS times in all: a relay chain or a first offer must not end
    at a peer that is there but slow to answer. A repeated offer is harmless (the peer already
    holds or fetches the image, and its relay core takes a state once).

    Raises:
        TransportError: every attempt failed. RemoteProtocolError: the peer's answer was bad
        (not retried).
    """
    net = node.config.net
    for attempt in range(OFFER_ATTEMPTS - 1):
        try:
            return await node.share.offer_items(peer, list(items), round_id)
        except TransportError as exc:
            event(log, logging.INFO, "offer_retry", peer=peer, attempt=attempt + 1,
                  error=str(exc)[:200])
            await trio.sleep(min(net.reconnect_initial_s * 2 ** attempt, net.reconnect_max_s))
    return await node.share.offer_items(peer, list(items), round_id)


class Receiver:
    """Votes and relays what arrives, reports chains' ends, takes in feedback and votes."""

    def __init__(self, node: Node, learner: LearnerTask, desk: OriginDesk,
                 notify: Callable[[], None]) -> None:
        self.node, self.store, self.cfg = node, node.store, node.config.round
        self.learner, self.desk = learner, desk
        self._notify = notify
        # Held by the origin while it offers and records a round's images: feedback on an image
        # can come back before the offer's reply did, and must not be judged before then.
        self.intake = trio.Lock()
        self.relay = RelayDesk(node.peer_id, max_hops=self.cfg.max_hops,
                               deadline_s=self.cfg.vote_deadline_s, vote=self._vote,
                               candidates=node.transport.connected_peers, forward=self._forward,
                               report=self._report)
        self._gossip_send, self._gossip_recv = trio.open_memory_channel[tuple[str, bytes]](
            GOSSIP_QUEUE)
        self._arrive_send, self._arrive_recv = trio.open_memory_channel[list[OfferItem]](
            ARRIVALS)
        self.counts = {"gossip_dropped": 0, "reports_direct": 0, "reports_gossip": 0,
                       "arrivals_dropped": 0}
        net = node.config.net
        self.delivery = VoteDelivery(
            node.store, node.offload, self._send_votes, node.wall_time,
            expire_s=0.8 * vote_window_s(self.cfg.vote_deadline_s),
            retry_initial_s=net.reconnect_initial_s, retry_max_s=net.reconnect_max_s,
            send_timeout_s=net.request_timeout_s, per_request=REPORTS_PER_REQUEST)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Serve /peerdata/report/1.0.0 and every reader/publisher task until cancelled."""
        self.node.serve(REPORT_PROTOCOL, self._handle_report)
        self.node.serve(REPORTS_PROTOCOL, self._handle_reports)
        async with trio.open_nursery() as nursery:
            for fn in (self._read_arrivals, self._read_held, self._read_gossip,
                       self._publish_gossip):
                nursery.start_soon(fn)
            await nursery.start(self.delivery.run)
            nursery.start_soon(self._process_arrivals, nursery)
            task_status.started()

    async def _read_arrivals(self) -> None:
        got: ReceivedImage
        async for got in self.node.inbox:
            await self._arrive([got.item, *(g.item for g in _drain(self.node.inbox))])

    async def _read_held(self) -> None:
        held: HeldState
        inbox = self.node.share.held_inbox
        async for held in inbox:
            await self._arrive([held.item, *(h.item for h in _drain(inbox))])

    async def _arrive(self, items: list[OfferItem]) -> None:
        """Queue what arrived together (a fetch reply, an offer of held images) as one batch."""
        items = [i for i in items if i.origin_round != 0]  # 0: a plain `send`, outside rounds
        if not items:
            return
        try:
            self._arrive_send.send_nowait(items)
        except trio.WouldBlock:
            self.counts["arrivals_dropped"] += len(items)
            event(log, logging.WARNING, "arrival_dropped", images=len(items))

    async def _process_arrivals(self, nursery: trio.Nursery) -> None:
        async for first in self._arrive_recv:
            batch = [*first, *(i for more in _drain(self._arrive_recv) for i in more)]
            nursery.start_soon(self.relay.handle, batch)

    async def _vote(self, items: Sequence[OfferItem]) -> list[tuple[bool, float]]:
        store = self.store

        def load() -> list[tuple[bytes, np.ndarray | None, int | None]]:
            out = []
            for item in items:
                sample = store.get_sample(item.cid)
                try:
                    pixels = to_pixels(store.get_blob(item.cid), self.learner.spec)
                except (DataError, PeerdataError) as exc:
                    event(log, logging.WARNING, "undecodable_image", cid=item.cid.hex()[:16],
                          origin=item.origin, error=str(exc)[:100])
                    pixels = None
                out.append((item.cid, pixels, None if sample is None else sample.label))
            return out

        loaded = await self.node.offload(load)
        ok = [i for i, (_, px, _) in enumerate(loaded) if px is not None]
        verdicts = [(False, 0.0)] * len(items)
        if ok:
            images = np.stack([loaded[i][1] for i in ok])  # type: ignore[misc]
            labelled = [k for k, i in enumerate(ok) if loaded[i][2] is not None]
            cids = [loaded[ok[k]][0] for k in labelled]
            labels = np.array([loaded[ok[k]][2] for k in labelled], np.int64)

            def vote_and_keep(host: LearnerHost) -> tuple[np.ndarray, np.ndarray]:
                verdict = host.vote(images)
                if labelled:
                    host.accept(cids, images[labelled], labels)
                return verdict

            novel, score = await self.learner.call(vote_and_keep)
            for k, i in enumerate(ok):
                s = float(score[k])
                verdicts[i] = (bool(novel[k]), s if np.isfinite(s) else 0.0)
        now = self.node.wall_time()
        records = []
        signed = []
        for item, (novel_i, score_i) in zip(items, verdicts, strict=True):
            vote = sign_vote(self.node.identity, origin=item.origin, cid=item.cid,
                             round_id=item.origin_round, novel=novel_i, score=score_i,
                             timestamp=now)
            signed.append((vote, encode(vote)))
            records.append(VoteRecord(cid=item.cid, origin=item.origin, voter=self.node.peer_id,
                                      round_id=item.origin_round, novel=novel_i, score=score_i,
                                      received_at=now, late=False))

        def keep() -> None:
            with store.batch():  # one commit: outbox and vote records together
                store.put_outbox(vote_records(signed, now))  # durable before anything leaves
                for r in records:
                    store.add_vote(r)
            for vote, _data in signed:  # our own votes: evidence for the reputation
                self.desk.witness(vote)

        await self.node.offload(keep)
        self.delivery.kick()
        if self.cfg.gossip_votes:  # the fleet's audit trail; best effort
            for _vote, data in signed:
                self._publish(VOTES_TOPIC, data)
        event(log, logging.INFO, "voted", images=len(items),
              novel=sum(v for v, _ in verdicts))
        return verdicts

    async def _forward(self, peer: str, states: Sequence[OfferItem]) -> bool:
        """Offer `states` to `peer`, one offer per origin round (in practice: one)."""
        sizes = await self.node.offload(
            lambda: [len(self.store.get_blob(s.cid)) for s in states])
        by_round: dict[int, list[OfferItem]] = {}
        for state, size in zip(states, sizes, strict=True):
            by_round.setdefault(state.origin_round, []).append(replace(state, size=size))
        try:
            for round_id, items in by_round.items():
                if await offer_retrying(self.node, peer, items, round_id) is None:
                    return False
        except (TransportError, RemoteProtocolError) as exc:
            event(log, logging.INFO, "relay_failed", peer=peer, images=len(states),
                  error=str(exc)[:200])
            return False
        return True

    async def _report(self, states: Sequence[OfferItem]) -> None:
        """Signed Feedback for chains that ended here, to each origin in Reports requests of
        at most REPORTS_PER_REQUEST (several chains end at once: one stream, not one each)."""
        by_origin: dict[str, list[Feedback]] = {}
        for state in states:
            by_origin.setdefault(state.origin, []).append(sign_feedback(
                self.node.identity, origin=state.origin, cid=state.cid,
                round_id=state.origin_round, novel_votes=state.novel_votes,
                voters=state.voters, timestamp=self.node.wall_time()))
        async with trio.open_nursery() as nursery:
            for origin, fbs in by_origin.items():
                for k in range(0, len(fbs), REPORTS_PER_REQUEST):
                    nursery.start_soon(self._report_to, origin, fbs[k:k + REPORTS_PER_REQUEST])

    async def _report_to(self, origin: str, fbs: list[Feedback]) -> None:
        data = encode(Reports(origin=origin, votes=(), feedback=tuple(fbs)))
        net = self.node.config.net
        with trio.move_on_after(self.cfg.vote_deadline_s):
            for attempt in range(REPORT_ATTEMPTS):
                try:
                    raw = await self.node.transport.request(origin, REPORTS_PROTOCOL, data)
                    reply = cast(OfferReply | ErrorReply, decode_as(
                        raw, OfferReply, ErrorReply, limits=self.node.config.limits))
                except TransportError:
                    await trio.sleep(min(net.reconnect_initial_s * 2 ** attempt,
                                         net.reconnect_max_s))
                    continue
                except RemoteProtocolError as exc:
                    await self.node.drop_link(origin, f"bad report reply: {exc}")
                    break
                if isinstance(reply, OfferReply):
                    self.counts["reports_direct"] += len(fbs)
                    for fb in fbs:
                        event(log, logging.INFO, "reported", peer=origin,
                              cid=fb.cid.hex()[:16], voters=len(fb.voters),
                              novel=fb.novel_votes)
                    return
                event(log, logging.WARNING, "report_refused", peer=origin,
                      code=reply.code, message=reply.message)
                break
        self.counts["reports_gossip"] += len(fbs)  # the origin is out of reach: gossip it
        for fb in fbs:
            self._publish(FEEDBACK_TOPIC, encode(fb))

    async def _handle_report(self, peer_id: str, payload: bytes) -> bytes:
        """Serve /peerdata/report/1.0.0: one Feedback or Vote, judged as a batch of one."""
        msg = cast(Feedback | Vote, decode_as(payload, Feedback, Vote,
                                              limits=self.node.config.limits))
        if isinstance(msg, Vote):
            return await self._judge(peer_id, msg.origin, (msg,), ())
        return await self._judge(peer_id, msg.origin, (), (msg,))

    async def _handle_reports(self, peer_id: str, payload: bytes) -> bytes:
        """Serve /peerdata/reports/1.0.0: several Votes and Feedbacks in one request."""
        msg = decode_as(payload, Reports, limits=self.node.config.limits)
        return await self._judge(peer_id, msg.origin, msg.votes, msg.feedback)

    async def _judge(self, peer_id: str, origin: str, votes: Sequence[Vote],
                     feedback: Sequence[Feedback]) -> bytes:
        """Votes and Feedbacks on our images, judged in order as if each came alone, their
        records written in one transaction; acknowledged once all are stored. The first bad
        one stops the judging (those before it stay taken) and raises: the link is dropped."""
        if origin != self.node.peer_id:
            return encode(ErrorReply(code="bad_request", message="not about our images"))
        if any(v.voter != peer_id for v in votes):
            raise RemoteProtocolError("a vote must come on its voter's own link")
        desk = self.desk

        def judge() -> RemoteProtocolError | None:
            with self.store.batch():
                try:
                    for vote in votes:
                        desk.take_vote(vote)
                    for fb in feedback:
                        desk.take_feedback(fb, peer_id)
                except RemoteProtocolError as exc:
                    return exc
            return None

        async with self.intake:  # never judged while our offers are still being recorded
            error = await self.node.offload(judge)
        self._notify()
        if error is not None:
            raise error
        return encode(OfferReply(wanted=()))

    async def _send_votes(self, origin: str, data: Sequence[bytes]) -> bool | None:
        """Votes (encoded, from the outbox) to their origin in one Reports request: True
        acknowledged, False refused, None unreachable."""
        votes = tuple(decode_as(d, Vote, limits=self.node.config.limits) for d in data)
        request = encode(Reports(origin=origin, votes=votes, feedback=()))
        try:
            raw = await self.node.transport.request(origin, REPORTS_PROTOCOL, request)
            reply = decode_as(raw, OfferReply, ErrorReply, limits=self.node.config.limits)
        except TransportError:
            return None
        except RemoteProtocolError as exc:
            await self.node.drop_link(origin, f"bad vote reply: {exc}")
            return False
        if isinstance(reply, ErrorReply):
            event(log, logging.WARNING, "vote_refused", peer=origin, code=reply.code,
                  message=reply.message, votes=len(votes))
            return False
        return True

    # -- gossip ----------------------------------------------------------------------------

    def _publish(self, topic: str, data: bytes) -> None:
        try:
            self._gossip_send.send_nowait((topic, data))
        except trio.WouldBlock:
            self.counts["gossip_dropped"] += 1

    async def _publish_gossip(self) -> None:
        """Paced: at most GOSSIP_RATE_PER_S messages a second leave this robot."""
        async for topic, data in self._gossip_recv:
            try:
                await self.node.transport.publish(topic, data)
            except TransportError as exc:
                event(log, logging.WARNING, "gossip_publish_failed", topic=topic,
                      error=str(exc)[:200])
            await trio.sleep(1.0 / GOSSIP_RATE_PER_S)

    async def _read_gossip(self) -> None:
        async for sender, msg in self.node.gossip_inbox:
            try:
                async with self.intake:
                    if isinstance(msg, Vote):
                        taken = await self.node.offload(self.desk.take_vote, msg)
                    elif isinstance(msg, Feedback):
                        taken = await self.node.offload(self.desk.take_feedback, msg, sender)
                    else:
                        continue
            except RemoteProtocolError as exc:
                event(log, logging.WARNING, f"{type(msg).__name__.lower()}_rejected",
                      peer=sender, reason=str(exc)[:300])
                continue
            if taken is not None:
                self._notify()


def _drain(channel: trio.MemoryReceiveChannel[T]) -> list[T]:
    """What is waiting in `channel` now, without waiting."""
    out: list[T] = []
    while True:
        try:
            out.append(channel.receive_nowait())
        except trio.WouldBlock:
            return out
