"""The origin of a round: select, privacy-filter and budget this robot's images, offer each to
its first peer, and at the deadline let the origin core decide every image's utility.

Rule: the privacy filter is the only way a local image reaches an offer (`require_filtered`);
which peers get an image first is the round core's `chain_paths` (one offer per chain and
round: the batch goes to the head of each chain, the next peer of that chain if it fails);
every wait comes from `config.round`. Offers with
`round_id` 0 are plain `send`s, outside any round.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import trio

from peerdata.errors import DataError, RemoteProtocolError, TransportError
from peerdata.ml.privacy import DroppedImage, PrivacyFilter, require_filtered
from peerdata.node.delivery import OFFER, offer_key, pending_offer
from peerdata.node.feedback import OriginDesk, RoundView
from peerdata.node.learner_task import LearnerTask
from peerdata.node.learning import LearnerHost
from peerdata.node.logs import event
from peerdata.node.node import Node
from peerdata.node.receiver import offer_retrying
from peerdata.round import chain_paths
from peerdata.sharing.learner import UNLABELLED
from peerdata.store import RoundRecord, Sample
from peerdata.store.outbox import OutboxRecord
from peerdata.wire.messages import OfferItem

log = logging.getLogger("peerdata.node.rounds")


@dataclass(frozen=True)
class RoundStart:
    """What `round_now` did: the images that left this robot (offered to a first peer)."""

    round_id: int
    policy: str
    selected: int
    shared: int
    dropped_by_privacy: int
    over_budget: int
    bytes_sent: int
    offered_to: dict[str, int]


class OriginService:
    """Starts and finishes this robot's rounds (see the module rule)."""

    def __init__(self, node: Node, learner: LearnerTask, privacy: PrivacyFilter,
                 desk: OriginDesk, intake: trio.Lock, notify: Callable[[], None]) -> None:
        self.node, self.store, self.cfg = node, node.store, node.config.round
        self.learner, self.privacy, self.desk = learner, privacy, desk
        self._intake, self._notify = intake, notify
        self._round_lock = trio.Lock()
        self._nursery: trio.Nursery | None = None
        self.changed = trio.Event()
        self.policy = self.cfg.policy  # of the last round (decides whether `learn` fits the ranker)
        self.learned: dict[str, Any] | None = None  # last learn step, for the round record
        self._unlabelled: set[bytes] = set()  # shared cids offered without a label

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Finish rounds left unfinished by the last run, then serve until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            now = self.node.wall_time()
            pending: dict[int, list[OutboxRecord]] = {}
            for p in await self.node.offload(self.store.list_outbox, OFFER):
                pending.setdefault(json.loads(p.data)["round"], []).append(p)
            for rec in await self.node.offload(self.store.list_rounds):
                if rec.finished_at is None:  # unfinished when we stopped: finish it
                    left = rec.started_at + self.cfg.vote_deadline_s - now
                    nursery.start_soon(self._finish_after, rec.round_id, max(0.0, left))
                    if left > 0 and rec.round_id in pending:
                        nursery.start_soon(self._resume_offers, rec.round_id,
                                           pending.pop(rec.round_id), left)
            expired = [p.key for recs in pending.values() for p in recs]
            if expired:  # their round is over: offering them now would only earn late votes
                await self.node.offload(self.store.remove_outbox, OFFER, expired)
                event(log, logging.WARNING, "offers_expired", images=len(expired))
            task_status.started()
            await trio.sleep_forever()

    def _prepare(self, host: LearnerHost, policy: str, novel: frozenset[str] | None,
                 round_id: int) -> tuple[list[tuple[bytes, int]], int, int, int]:
        """(learner worker) Select, privacy-filter and budget this round's images.

        Returns ([(shared cid, nbytes)], selected, dropped, over budget).
        """
        store, cfg = self.store, self.cfg
        picks = host.select(policy, cfg.budget_fraction, novel)
        out: list[tuple[bytes, int]] = []
        dropped = over = total = 0
        now = self.node.wall_time()
        kept: list[tuple[Any, Any, bytes]] = []  # (pick, filter result, png)
        for pick in picks:
            result = self.privacy.filter_image(store.get_blob(pick.cid))
            if isinstance(result, DroppedImage):
                dropped += 1
                continue
            png = require_filtered(result).png  # the only path to the network
            if (len(kept) >= cfg.max_images_per_round or total + len(png) > cfg.max_bytes_per_round
                    or len(png) > self.node.config.limits.max_image_bytes):
                over += 1
                continue
            total += len(png)
            kept.append((pick, result, png))
        with store.batch():  # one commit for the round's rows (each blob is durable first)
            for pick, result, png in kept:
                cid = store.put_blob(png, "filtered")  # the exit rule: a filter output may leave
                # the audit (`peerdata dashboard`): what the filter did to the bytes that leave
                store.set_meta(f"redactions.{cid.hex()}", json.dumps(
                    {a: sum(r.action == a for r in result.regions) for a in ("blur", "keep")}))
                if cid != pick.cid and store.get_sample(cid) is None:
                    store.set_meta(f"derived.{cid.hex()}", pick.cid.hex())
                    label = None if pick.label == UNLABELLED else pick.label
                    store.add_sample(Sample(cid=cid, source="local", label=label, origin=None,
                                            domain=pick.domain, prediction=None,
                                            confidence=None, embedding=None,
                                            observed_round=round_id, created_at=now))
                out.append((cid, len(png)))
            # The selection is durable before the emptied pool is: a kill from here on
            # re-offers it
            store.put_outbox([pending_offer(cid, round_id, n, k[0].label != UNLABELLED, now)
                              for (cid, n), k in zip(out, kept, strict=True)])
        for (cid, _n), (pick, _r, _png) in zip(out, kept, strict=True):  # once committed
            host.note_shared(cid, pick.image_id)
            if pick.label == UNLABELLED:
                self._unlabelled.add(cid)
        host.save()
        return out, len(picks), dropped, over

    async def round_now(self, policy: str | None = None,
                        novel_domains: Sequence[str] | None = None) -> RoundStart:
        """Start a round: returns once this robot's offers went out (votes come later)."""
        policy = policy or self.cfg.policy
        novel = None if novel_domains is None else frozenset(novel_domains)
        store = self.store
        async with self._round_lock:
            round_id = await self.node.offload(store.last_round_id) + 1
            await self.node.offload(store.start_round, round_id, self.node.wall_time())
            self.policy = policy
            self.learned = None  # a round's record shows the learn step that follows it
            prepared, selected, dropped, over = await self.learner.call(
                self._prepare, policy, novel, round_id)
            peers = sorted(self.node.transport.connected_peers())
            sizes = dict(prepared)
            offered: dict[str, int] = {}
            async with self._intake:
                taken = await self._offer_all(self._chains(list(sizes), peers, round_id), sizes,
                                              offered, round_id)
        shared = len(taken)
        start = RoundStart(round_id, policy, selected, shared, dropped, over,
                           await self._bytes_shared(round_id), offered)
        event(log, logging.INFO, "round_started", round_id=round_id, policy=policy,
              selected=selected, shared=shared, dropped_by_privacy=dropped, over_budget=over,
              peers=len(peers))
        assert self._nursery is not None
        self._nursery.start_soon(self._finish_after, round_id,
                                 self.cfg.vote_deadline_s if shared else 0.0)
        self._notify()
        return start

    def _chains(self, cids: Sequence[bytes], peers: Sequence[str], round_id: int
                ) -> dict[tuple[bytes, int], list[str]]:
        """(cid, chain) -> that chain's peers in order: every image on every chain."""
        blocks = chain_paths(self.node.peer_id, round_id, peers, self.cfg.max_hops,
                             self.cfg.chains)
        return {(cid, k): block for cid in cids for k, block in enumerate(blocks)}

    async def _offer_all(self, todo: dict[tuple[bytes, int], list[str]], sizes: dict[bytes, int],
                         offered: dict[str, int], round_id: int) -> set[bytes]:
        """Offer each image to the head of each chain; a peer that fails is replaced by the
        next of its chain. An image no chain took is not shared (and not pending any more).
        Returns the images some chain took."""
        me = self.node.peer_id
        tried: dict[tuple[bytes, int], set[str]] = {key: set() for key in todo}
        undecided = {cid for cid, _ in todo}  # neither taken by a chain nor out of chains
        taken: set[bytes] = set()
        while todo:
            by_peer: dict[str, list[tuple[bytes, int]]] = {}
            for key, order in list(todo.items()):
                nxt = next((p for p in order if p not in tried[key]), None)
                if nxt is None:
                    del todo[key]
                else:
                    by_peer.setdefault(nxt, []).append(key)
            unoffered = undecided - {cid for cid, _ in todo}
            if unoffered:  # no peer of any chain took them
                undecided -= unoffered
                await self.node.offload(self.store.remove_outbox, OFFER,
                                        [offer_key(c, round_id) for c in unoffered])
                event(log, logging.WARNING, "not_offered", round_id=round_id,
                      images=len(unoffered))
            if not by_peer:
                break
            results: dict[str, bool] = {}
            async with trio.open_nursery() as nursery:
                for peer, keys in by_peer.items():
                    items = [OfferItem(cid=c, size=sizes[c], has_label=c not in self._unlabelled,
                                       origin=me, origin_round=round_id, novel_votes=0,
                                       voters=(), hops=0) for c, _ in keys]
                    nursery.start_soon(self._offer_first, peer, items, round_id, results)
            for peer, keys in by_peer.items():
                for key in keys:
                    tried[key].add(peer)
                if results.get(peer):
                    cids = [c for c, _ in keys]
                    await self.node.offload(self._record_offered, cids, round_id, peer, sizes)
                    offered[peer] = offered.get(peer, 0) + len(cids)
                    undecided.difference_update(cids)
                    taken.update(cids)
                    for key in keys:
                        del todo[key]
        return taken

    def _record_offered(self, cids: list[bytes], round_id: int, peer: str,
                        sizes: dict[bytes, int]) -> None:
        """(worker thread) The offer went out: shared, and no longer pending."""
        now = self.node.wall_time()
        with self.store.batch():  # one commit
            for c in cids:
                self.store.record_shared(c, round_id, peer, sizes[c], now)
            self.store.remove_outbox(OFFER, [offer_key(c, round_id) for c in cids])

    async def _resume_offers(self, round_id: int, recs: list[OutboxRecord], left_s: float
                             ) -> None:
        """After a restart: offer what was selected but not offered before the kill."""
        with trio.move_on_after(left_s):
            await self.node.wait_until(lambda s: s.peers_connected > 0)
            sizes, labelled = {}, {}
            for p in recs:
                info = json.loads(p.data)
                cid = bytes.fromhex(info["cid"])
                sizes[cid], labelled[cid] = int(info["size"]), bool(info["label"])
            self._unlabelled.update(c for c, has in labelled.items() if not has)
            peers = sorted(self.node.transport.connected_peers())
            offered: dict[str, int] = {}
            async with self._intake:
                taken = await self._offer_all(self._chains(list(sizes), peers, round_id),
                                              sizes, offered, round_id)
            event(log, logging.INFO, "offers_resumed", round_id=round_id, offered=len(taken),
                  pending=len(recs))

    async def _bytes_shared(self, round_id: int) -> int:
        shared = await self.node.offload(self.store.list_shared, round_id)
        return sum({r.cid: r.nbytes for r in shared}.values())

    async def _offer_first(self, peer: str, items: list[OfferItem], round_id: int,
                           results: dict[str, bool]) -> None:
        try:
            results[peer] = await offer_retrying(self.node, peer, items, round_id) is not None
        except (TransportError, RemoteProtocolError) as exc:
            event(log, logging.WARNING, "offer_failed", peer=peer, images=len(items),
                  error=str(exc)[:200])
            results[peer] = False

    async def _finish_after(self, round_id: int, delay: float) -> None:
        await trio.sleep(delay)
        _, mismatched = await self.node.offload(self.desk.finish, round_id)
        view = await self.node.offload(self.desk.view, round_id)
        if view is None:
            return
        learned = self.learned or {}
        await self.node.offload(self.store.finish_round, RoundRecord(
            round_id=round_id, started_at=view.started_at, finished_at=self.node.wall_time(),
            shared=view.shared, bytes_sent=view.bytes_sent, votes_received=view.votes_received,
            feedback_received=view.feedback_received, mean_utility=view.mean_utility,
            accuracy=learned.get("accuracy"),
            ranker_trained=bool(learned.get("ranker_trained", False))))
        event(log, logging.INFO, "round_finished", round_id=round_id, shared=view.shared,
              feedback=view.feedback_received, recovered=view.recovered,
              mismatched=mismatched, complete=view.complete)
        self._notify()

    async def wait_round(self, round_id: int, timeout_s: float) -> RoundView:
        """The round once every image shared in it has a utility, it finished, or on timeout.

        Raises:
            DataError: no such round.
        """
        with trio.move_on_after(timeout_s):
            while True:
                changed = self.changed
                view = await self.node.offload(self.desk.view, round_id)
                if view is None:
                    raise DataError(f"no round {round_id}")
                if view.complete or view.finished_at is not None:
                    return view
                await changed.wait()
        view = await self.node.offload(self.desk.view, round_id)
        if view is None:
            raise DataError(f"no round {round_id}")
        return view
