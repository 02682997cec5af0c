"""The sharing round in the daemon: the services that perform the round core's actions, built
and wired here with explicit references, plus the learn step between rounds.

Rule: each service has one job: the `LearnerTask` owns the learner (every learner step goes
through it); the `Observer` ingests local images; the `OriginService` starts rounds (select,
filter, offer) and finishes them at the deadline through the `OriginDesk` (the origin core);
the `Receiver` votes, keeps and relays what arrives through the `RelayDesk` (the relay core)
and takes in feedback and votes. Nothing here decides a round rule: `peerdata.round` does.

Origin:   round_now -> select (policy) -> filter -> budget -> offer each image to one first peer
Receiver: arrival -> RelayDesk: vote (signed Vote on gossip), keep the labelled image, pass the
          state on, or report: signed Feedback straight to the origin on /peerdata/report/1.0.0
Origin:   OriginDesk judges Feedback/Votes; at the deadline the origin core decides utilities.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import trio

from peerdata.errors import PeerdataError
from peerdata.ml.privacy import PrivacyFilter
from peerdata.node.feedback import OriginDesk, vote_window_s
from peerdata.node.ingest import INBOX, load_npz
from peerdata.node.learner_task import LearnerTask
from peerdata.node.learning import LearnerHost, LearnerStats, LearnResult
from peerdata.node.logs import event
from peerdata.node.node import Node, Offload
from peerdata.node.observing import Observer
from peerdata.node.origin import OriginService, RoundStart
from peerdata.node.receiver import Receiver
from peerdata.round import Membership, everyone
from peerdata.wire.replay import ReplayGuard

log = logging.getLogger("peerdata.node.rounds")

__all__ = ["RoundService", "RoundStart"]

DRAIN_S = 10.0  # a graceful stop waits at most this long for votes to reach their origins


def _evaluate(host: LearnerHost, x: np.ndarray, y: np.ndarray, domains: np.ndarray | None
              ) -> dict[str, float]:
    return host.evaluate(x, y, np.full(len(y), "all") if domains is None else domains)


class RoundService:
    """A node's learning and sharing rounds; start with `node.start_service(service.run)`."""

    def __init__(self, node: Node, host: LearnerHost, privacy: PrivacyFilter, *,
                 home: Path | None = None, ml_offload: Offload | None = None,
                 is_member: Membership = everyone) -> None:
        self.node, self.store, self.cfg = node, node.store, node.config.round
        self.host = host  # read by federation for its seed; stepped only by `learner`
        self.learner = LearnerTask(host, ml_offload)
        self.guard = ReplayGuard(window_s=vote_window_s(self.cfg.vote_deadline_s))
        # a reputation needs the votes on the other origins' images (gossip): from our own
        # images' two or three voters alone its weights are noise, so it stays off without them
        reputation = node.config.trust.reputation and self.cfg.gossip_votes
        if node.config.trust.reputation and not reputation:
            event(log, logging.INFO, "reputation_off",
                  reason="needs [round] gossip_votes = true; votes count unweighted")
        self.desk = OriginDesk(node.peer_id, node.store, self.guard, self.cfg.vote_deadline_s,
                               node.wall_time, is_member, reputation)
        if self.desk.core.reputation is not None:  # GossipSub's application score
            node.transport.set_gossip_score(self.desk.gossip_score)
        self.receiver = Receiver(node, self.learner, self.desk, self._notify)
        self.relay = self.receiver.relay
        self.observer = Observer(node, self.learner, self._notify,
                                 None if home is None else home / INBOX)
        self.origin = OriginService(node, self.learner, privacy, self.desk,
                                    self.receiver.intake, self._notify)

    # -- lifetime --------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Start the learner, reconcile it with the store, then serve rounds until cancelled."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self.learner.run)
            await self.observer.reconcile()
            await nursery.start(self.receiver.run)
            await nursery.start(self.origin.run)
            if self.cfg.interval_s > 0:
                nursery.start_soon(self._schedule)
            if self.observer.inbox_dir is not None:
                self.observer.inbox_dir.mkdir(mode=0o700, exist_ok=True)
                nursery.start_soon(self.observer.watch_inbox, self.cfg.inbox_poll_s)
            task_status.started()

    async def drain(self, timeout_s: float = DRAIN_S) -> int:
        """Before a graceful stop (SIGTERM, `stop`): deliver the votes still waiting; what is
        left after `timeout_s` stays in the store's outbox for the next run. Returns that."""
        left = await self.receiver.delivery.drain(timeout_s)
        event(log, logging.INFO, "drained", votes_left=left)
        return left

    def _notify(self) -> None:
        self.origin.changed.set()
        self.origin.changed = trio.Event()
        self.node.book.notify()

    # -- learning --------------------------------------------------------------------------

    async def learn(self) -> tuple[LearnResult, float | None]:
        """Retrain the ranker on all feedback so far, fine-tune on received images, save."""
        await self.node.offload(self.desk.reweigh_open)  # this round's evidence weighs first
        shared = await self.node.offload(self.store.list_shared)
        feedback = list({r.cid: (r.cid, r.utility) for r in shared
                         if r.utility is not None}.values())
        evaluation = None
        if self.cfg.eval_npz:
            evaluation = await self.node.offload(load_npz, Path(self.cfg.eval_npz))
        train_ranker = self.origin.policy == "gu"

        def step(host: LearnerHost) -> tuple[LearnResult, float | None]:
            result = host.learn(feedback, train_ranker)
            accuracy = None if evaluation is None else _evaluate(host, *evaluation)["all"]
            host.save()
            return result, accuracy

        result, accuracy = await self.learner.call(step)
        self.origin.learned = {"ranker_trained": result.ranker_loss is not None,
                               "accuracy": accuracy}
        last = await self.node.offload(self.store.last_round_id)
        rec = await self.node.offload(self.store.get_round, last)
        if rec is not None and rec.finished_at is not None:
            await self.node.offload(self.store.finish_round, replace(rec, **self.origin.learned))
        event(log, logging.INFO, "learned", ranker_loss=result.ranker_loss,
              fine_tune_loss=result.fine_tune_loss, received=result.received_pending,
              feedback=result.feedback_used, accuracy=accuracy)
        self._notify()
        return result, accuracy

    async def run_learner(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run blocking `fn(*args)` as one step of the learner task (what federation uses)."""
        return await self.learner.call(lambda _host, *a: fn(*a), *args)

    async def evaluate(self, path: Path) -> tuple[dict[str, float], int]:
        """Accuracy per domain and overall on a labelled npz."""
        x, y, domains = await self.node.offload(load_npz, path)
        return await self.learner.call(_evaluate, x, y, domains), len(y)

    async def cycle(self) -> RoundStart:
        """What the schedule and `peerdata round now` do: learn from what is pending, then
        start a round with the configured policy."""
        await self.learn()
        return await self.origin.round_now(self.cfg.policy)

    async def _schedule(self) -> None:
        while True:
            await trio.sleep(self.cfg.interval_s)
            try:
                await self.cycle()
            except PeerdataError as exc:
                event(log, logging.WARNING, "round_failed", error=str(exc)[:300])

    # -- statistics ------------------------------------------------------------------------

    async def status_fields(self) -> dict[str, Any]:
        """What `status` adds: rounds, feedback, ranker, samples by source."""
        store, desk = self.store, self.desk

        def read() -> dict[str, Any]:
            rounds = store.list_rounds()
            return {
                "rounds": len(rounds),
                "rounds_completed": sum(  # every shared image has a utility, or deadline passed
                    r.finished_at is not None or bool((v := desk.view(r.round_id))
                                                      and v.complete) for r in rounds),
                "feedback_received": store.feedback_count(),
                "samples": {"local": store.count_samples("local"),
                            "received": store.count_samples("received")},
            }

        out = await self.node.offload(read)
        stats: LearnerStats | None = self.learner.stats  # never waits for a learn step
        assert stats is not None  # set when the learner task started
        out.update(ranker_trained=stats.ranker_fits, learner=asdict(stats),
                   relay=dict(self.relay.counts), origin=dict(self.desk.counts),
                   round_counts={**self.observer.counts, **self.receiver.counts,
                                 **self.receiver.delivery.counts},
                   policy=self.origin.policy, reputation=await self.node.offload(desk.weights),
                   clock_offsets_s={p: round(o, 3)
                                    for p, o in self.guard.clock_offsets().items()},
                   privacy=self.origin.privacy.statistics().as_dict())
        return out
