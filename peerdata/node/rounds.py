"""The sharing round in the daemon: ingest, learn, rank, filter, offer, vote, relay, feedback.

Rule: the learner is touched only through `_ml` (one worker thread, under `_lock`), so the node
keeps answering while it trains; the privacy filter is the only way a local image reaches an
offer (`require_filtered`); every wait comes from `config.round` / `config.net`. Offers with
`round_id` 0 are plain `send`s, outside any round: they are neither voted on nor relayed.

Origin:   round_now -> select (policy) -> filter -> budget -> offer each image to one first peer
Receiver: (receiver.py) arrival -> RelayDesk: vote (signed Vote on gossip), keep the labelled
          image, pass the state on, or report: signed Feedback straight to the origin on
          /peerdata/report/1.0.0 (acknowledged, retried), on gossip only if that fails
Origin:   OriginDesk (feedback.py) judges Feedback/Votes; at the deadline, images still without
          feedback get the utility their signed votes imply; the round is then finished.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import trio

from peerdata.errors import DataError, PeerdataError, RemoteProtocolError, TransportError
from peerdata.ml.privacy import DroppedImage, PrivacyFilter, require_filtered
from peerdata.node.feedback import OriginDesk, RoundView
from peerdata.node.ingest import (
    DONE,
    INBOX,
    REJECTED,
    Incoming,
    file_away,
    from_array,
    from_bytes,
    load_npz,
    npz_incoming,
    scan_inbox,
    to_pixels,
)
from peerdata.node.learning import LearnerHost, LearnResult, Observation
from peerdata.node.logs import event
from peerdata.node.node import Node, Offload, thread_offload
from peerdata.node.receiver import Receiver
from peerdata.sharing.learner import UNLABELLED
from peerdata.store import RoundRecord, Sample, content_id
from peerdata.wire.messages import OfferItem
from peerdata.wire.replay import ReplayGuard

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


class RoundService:
    """A node's learning and sharing rounds; start with `node.start_service(service.run)`."""

    def __init__(self, node: Node, host: LearnerHost, privacy: PrivacyFilter, *,
                 home: Path | None = None, ml_offload: Offload | None = None) -> None:
        self.node, self.store, self.cfg = node, node.store, node.config.round
        self.host, self.privacy = host, privacy
        self.inbox_dir = None if home is None else home / INBOX
        self._lock = trio.Lock()  # one learner step at a time
        self._round_lock = trio.Lock()
        self._ml: Offload = ml_offload or thread_offload(trio.CapacityLimiter(1))
        self.guard = ReplayGuard(window_s=max(300.0, 4 * self.cfg.vote_deadline_s))
        self.desk = OriginDesk(node.peer_id, node.store, self.guard, self.cfg.vote_deadline_s,
                               node.wall_time)
        self.receiver = Receiver(node, host, self.desk, self._lock, self._ml, self._notify)
        self.relay = self.receiver.relay
        self._changed = trio.Event()
        self._nursery: trio.Nursery | None = None
        self.policy = self.cfg.policy  # of the last round (decides whether `learn` fits the ranker)
        self._learned: dict[str, Any] | None = None  # last learn step, for the round record
        self.counts = {"observed": 0, "inbox_rejected": 0}

    # -- lifetime --------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Reconcile the learner with the store, then serve rounds until cancelled."""
        await self._reconcile()
        self.node.rounds = self
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await nursery.start(self.receiver.run)
            now = self.node.wall_time()
            for rec in await self.node.offload(self.store.list_rounds):
                if rec.finished_at is None:  # unfinished when we stopped: finish it
                    left = rec.started_at + self.cfg.vote_deadline_s - now
                    nursery.start_soon(self._finish_after, rec.round_id, max(0.0, left))
            if self.cfg.interval_s > 0:
                nursery.start_soon(self._schedule)
            if self.inbox_dir is not None:
                self.inbox_dir.mkdir(mode=0o700, exist_ok=True)
                nursery.start_soon(self._watch_inbox)
            task_status.started()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()
        self.node.book.notify()

    async def _reconcile(self) -> None:
        """Give the learner what the store holds but the last checkpoint missed (a crash
        between storing an image and saving the learner)."""
        store, host = self.store, self.host

        def pixels(cid: bytes) -> np.ndarray | None:
            try:
                return to_pixels(store.get_blob(cid), host.spec)
            except PeerdataError as exc:  # a peer's undecodable image: never trained on
                event(log, logging.WARNING, "reconcile_skipped", cid=cid.hex()[:16],
                      error=str(exc)[:100])
                return None

        def missing() -> tuple[list[Observation], list[tuple[bytes, np.ndarray, int]]]:
            local, received = [], []
            for s in store.list_samples():
                if s.source == "local" and not host.known(s.cid) and s.cid not in host.shared \
                        and store.get_meta(f"derived.{s.cid.hex()}") is None:
                    px = pixels(s.cid)
                    if px is not None:
                        local.append(Observation(s.cid, px, s.label, s.domain))
                elif s.source == "received" and s.cid not in host.received \
                        and s.label is not None:
                    px = pixels(s.cid)
                    if px is not None:
                        received.append((s.cid, px, s.label))
            return local, received

        local, received = await self.node.offload(missing)
        if not local and not received:
            return
        async with self._lock:
            if local:
                await self._ml(host.observe, local)
            if received:
                await self._ml(host.accept, [c for c, _, _ in received],
                               np.stack([p for _, p, _ in received]),
                               np.array([lb for _, _, lb in received], np.int64))
            await self._ml(host.save)
        event(log, logging.INFO, "learner_reconciled", local=len(local), received=len(received))

    # -- ingest ----------------------------------------------------------------------------

    async def observe(self, incoming: Sequence[Incoming], *, bootstrap: bool = False,
                      seed: int | None = None) -> tuple[int, int]:
        """Store new local images once each (cid = SHA-256 of their bytes), give them to the
        learner (`bootstrap`: train a fresh model on them), record predictions; (added, dups)."""
        store, now = self.store, self.node.wall_time()
        round_id = await self.node.offload(store.last_round_id)

        def put() -> tuple[list[Observation], list[Observation]]:
            fresh, every = [], []
            seen: set[bytes] = set()
            for inc in incoming:
                cid = store.put_blob(inc.data)
                if cid in seen:
                    continue
                seen.add(cid)
                obs = Observation(cid, inc.image, inc.label, inc.domain)
                every.append(obs)
                if store.add_sample(Sample(cid=cid, source="local", label=inc.label, origin=None,
                                           domain=inc.domain, prediction=None, confidence=None,
                                           embedding=None, observed_round=round_id,
                                           created_at=now)):
                    fresh.append(obs)
            return fresh, every

        fresh, every = await self.node.offload(put)
        async with self._lock:
            if bootstrap:
                await self._ml(self.host.bootstrap, every, seed)
            else:
                fresh = [o for o in fresh if not self.host.known(o.cid)]
                await self._ml(self.host.observe, fresh)
            scored = every if bootstrap else fresh
            if scored:
                labels, conf, emb = await self._ml(self.host.predict,
                                                   np.stack([o.image for o in scored]))
            await self._ml(self.host.save)
        if scored:
            def record() -> None:
                for i, o in enumerate(scored):
                    store.update_prediction(o.cid, int(labels[i]), float(conf[i]),
                                            np.asarray(emb[i], np.float32).tobytes())
            await self.node.offload(record)
        self.counts["observed"] += len(fresh)
        event(log, logging.INFO, "observed", added=len(fresh),
              duplicates=len(incoming) - len(fresh), bootstrap=bootstrap)
        self._notify()
        return len(fresh), len(incoming) - len(fresh)

    async def observe_one(self, image: Any, label: int | None, domain: str | None) -> bytes:
        """`Node.observe`: one image as PNG/JPEG bytes or a uint8 array; returns its cid."""
        spec = self.host.spec
        inc = (from_bytes(bytes(image), label, domain, spec) if isinstance(image, bytes | bytearray)
               else from_array(np.asarray(image), label, domain, spec))
        await self.observe([inc])
        return content_id(inc.data)

    async def observe_npz(self, path: Path, *, bootstrap: bool, seed: int | None
                          ) -> tuple[int, int]:
        """A scenario feed: npz with x, y and optional domain."""
        incoming = await self.node.offload(npz_incoming, path, self.host.spec)
        return await self.observe(incoming, bootstrap=bootstrap, seed=seed)

    async def _watch_inbox(self) -> None:
        assert self.inbox_dir is not None
        folder = self.inbox_dir
        while True:
            found = await self.node.offload(scan_inbox, folder,
                                            self.node.config.limits.max_image_bytes,
                                            self.host.spec)
            good = []
            for path, got in found:
                if isinstance(got, DataError):
                    self.counts["inbox_rejected"] += 1
                    event(log, logging.WARNING, "inbox_rejected", file=path.name,
                          reason=str(got)[:200])
                    await self.node.offload(file_away, path, REJECTED)
                else:
                    good.append((path, got))
            if good:
                try:
                    await self.observe([g for _, g in good])
                except PeerdataError as exc:
                    event(log, logging.WARNING, "inbox_failed", error=str(exc)[:200])
                else:
                    for path, _ in good:
                        await self.node.offload(file_away, path, DONE)
            if found:
                self._notify()
            await trio.sleep(self.cfg.inbox_poll_s)

    # -- learning --------------------------------------------------------------------------

    async def learn(self) -> tuple[LearnResult, float | None]:
        """Retrain the ranker on all feedback so far, fine-tune on received images, save."""
        shared = await self.node.offload(self.store.list_shared)
        feedback = list({r.cid: (r.cid, r.utility) for r in shared
                         if r.utility is not None}.values())
        accuracy = None
        async with self._lock:
            result: LearnResult = await self._ml(self.host.learn, feedback, self.policy == "gu")
            if self.cfg.eval_npz:
                x, y, domains = await self.node.offload(load_npz, Path(self.cfg.eval_npz))
                acc = await self._ml(self.host.evaluate, x, y,
                                     np.full(len(y), "all") if domains is None else domains)
                accuracy = acc["all"]
            await self._ml(self.host.save)
        self._learned = {"ranker_trained": result.ranker_loss is not None, "accuracy": accuracy}
        last = await self.node.offload(self.store.last_round_id)
        rec = await self.node.offload(self.store.get_round, last)
        if rec is not None and rec.finished_at is not None:
            await self.node.offload(self.store.finish_round, replace(rec, **self._learned))
        event(log, logging.INFO, "learned", ranker_loss=result.ranker_loss,
              fine_tune_loss=result.fine_tune_loss, received=result.received_pending,
              feedback=result.feedback_used, accuracy=accuracy)
        self._notify()
        return result, accuracy

    async def run_learner(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run blocking `fn(*args)` on the learner's worker thread under its lock (what
        federation uses: one learner step at a time, whoever asks)."""
        async with self._lock:
            return await self._ml(fn, *args)

    async def evaluate(self, path: Path) -> tuple[dict[str, float], int]:
        """Accuracy per domain and overall on a labelled npz."""
        x, y, domains = await self.node.offload(load_npz, path)
        async with self._lock:
            acc = await self._ml(self.host.evaluate, x, y,
                                 np.full(len(y), "all") if domains is None else domains)
        return acc, len(y)

    async def cycle(self) -> RoundStart:
        """What the schedule and `peerdata round now` do: learn from what is pending, then
        start a round with the configured policy."""
        await self.learn()
        return await self.round_now(self.cfg.policy)

    async def _schedule(self) -> None:
        while True:
            await trio.sleep(self.cfg.interval_s)
            try:
                await self.cycle()
            except PeerdataError as exc:
                event(log, logging.WARNING, "round_failed", error=str(exc)[:300])

    # -- origin ----------------------------------------------------------------------------

    def _prepare(self, policy: str, novel: frozenset[str] | None, round_id: int
                 ) -> tuple[list[tuple[bytes, int, bool]], int, int, int]:
        """(worker thread) Select, privacy-filter and budget this round's images.

        Returns ([(shared cid, nbytes, labelled)], selected, dropped, over budget).
        """
        store, cfg = self.store, self.cfg
        picks = self.host.select(policy, cfg.budget_fraction, novel)
        out: list[tuple[bytes, int, bool]] = []
        dropped = over = 0
        total = 0
        now = self.node.wall_time()
        for pick in picks:
            result = self.privacy.filter_image(store.get_blob(pick.cid))
            if isinstance(result, DroppedImage):
                dropped += 1
                continue
            png = require_filtered(result).png  # the only path to the network
            if (len(out) >= cfg.max_images_per_round or total + len(png) > cfg.max_bytes_per_round
                    or len(png) > self.node.config.limits.max_image_bytes):
                over += 1
                continue
            cid = store.put_blob(png)
            if cid != pick.cid and store.get_sample(cid) is None:
                store.set_meta(f"derived.{cid.hex()}", pick.cid.hex())
                label = None if pick.label == UNLABELLED else pick.label
                store.add_sample(Sample(cid=cid, source="local", label=label, origin=None,
                                        domain=pick.domain, prediction=None, confidence=None,
                                        embedding=None, observed_round=round_id, created_at=now))
            self.host.note_shared(cid, pick.image_id)
            total += len(png)
            out.append((cid, len(png), pick.label != UNLABELLED))
        self.host.save()
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
            self._learned = None  # a round's record shows the learn step that follows it
            async with self._lock:
                prepared, selected, dropped, over = await self._ml(self._prepare, policy, novel,
                                                                   round_id)
            peers = sorted(self.node.transport.connected_peers())
            sizes = {cid: n for cid, n, _ in prepared}
            labelled = {cid for cid, _, has_label in prepared if has_label}
            todo = {cid: [peers[(i + round_id) % len(peers)], *peers] if peers else []
                    for i, (cid, _, _) in enumerate(prepared)}
            offered: dict[str, int] = {}
            tried: dict[bytes, set[str]] = {cid: set() for cid in todo}
            async with self.receiver.intake:
                await self._offer_all(todo, tried, sizes, offered, round_id, labelled)
        shared = sum(offered.values())
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

    async def _offer_all(self, todo: dict[bytes, list[str]], tried: dict[bytes, set[str]],
                         sizes: dict[bytes, int], offered: dict[str, int], round_id: int,
                         labelled: set[bytes]) -> None:
        """Offer each image to its first peer; a peer that fails is replaced by the next."""
        store, me = self.store, self.node.peer_id
        while todo:
            by_peer: dict[str, list[bytes]] = {}
            for cid, order in list(todo.items()):
                nxt = next((p for p in order if p not in tried[cid]), None)
                if nxt is None:
                    del todo[cid]
                else:
                    by_peer.setdefault(nxt, []).append(cid)
            if not by_peer:
                break
            results: dict[str, bool] = {}
            async with trio.open_nursery() as nursery:
                for peer, cids in by_peer.items():
                    items = [OfferItem(cid=c, size=sizes[c], has_label=c in labelled, origin=me,
                                       origin_round=round_id, novel_votes=0, voters=(),
                                       hops=0) for c in cids]
                    nursery.start_soon(self._offer_first, peer, items, round_id, results)
            for peer, cids in by_peer.items():
                for c in cids:
                    tried[c].add(peer)
                    if results.get(peer):
                        await self.node.offload(store.record_shared, c, round_id, peer,
                                                sizes[c], self.node.wall_time())
                        offered[peer] = offered.get(peer, 0) + 1
                        del todo[c]

    async def _bytes_shared(self, round_id: int) -> int:
        shared = await self.node.offload(self.store.list_shared, round_id)
        return sum({r.cid: r.nbytes for r in shared}.values())

    async def _offer_first(self, peer: str, items: list[OfferItem], round_id: int,
                           results: dict[str, bool]) -> None:
        try:
            results[peer] = await self.node.share.offer_items(peer, items, round_id) is not None
        except (TransportError, RemoteProtocolError) as exc:
            event(log, logging.WARNING, "offer_failed", peer=peer, images=len(items),
                  error=str(exc)[:200])
            results[peer] = False

    async def _finish_after(self, round_id: int, delay: float) -> None:
        await trio.sleep(delay)
        await self.node.offload(self.desk.recover, round_id)
        mismatched = await self.node.offload(self.desk.cross_check, round_id)
        view = await self.node.offload(self.desk.view, round_id)
        if view is None:
            return
        learned = self._learned or {}
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
                changed = self._changed
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

    # -- statistics ------------------------------------------------------------------------

    async def status_fields(self) -> dict[str, Any]:
        """What `status` adds: rounds, feedback, ranker, samples by source."""
        store = self.store

        def read() -> dict[str, Any]:
            rounds = store.list_rounds()
            return {
                "rounds": len(rounds),
                "rounds_completed": sum(  # every shared image has a utility, or deadline passed
                    r.finished_at is not None or bool((v := self.desk.view(r.round_id))
                                                      and v.complete) for r in rounds),
                "feedback_received": store.feedback_count(),
                "samples": {"local": store.count_samples("local"),
                            "received": store.count_samples("received")},
            }

        out = await self.node.offload(read)
        stats = self.host.statistics()
        out.update(ranker_trained=stats.ranker_fits, learner=asdict(stats),
                   relay=dict(self.relay.counts), origin=dict(self.desk.counts),
                   round_counts={**self.counts, **self.receiver.counts}, policy=self.policy)
        return out
