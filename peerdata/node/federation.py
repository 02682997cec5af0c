"""Federated learning in the daemon: the node's own vision model joins `peerdata.federated`.

Rule: the learner's model is touched only through the round service's `LearnerTask` (one step
at a time), so a sharing round's learn step and a federated local step never train the model at
once; a round's model is loaded into the learner and checkpointed (atomic save).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from peerdata.errors import PeerdataError
from peerdata.federated.exchange import LocalModel, RoundResult
from peerdata.federated.service import Federation, start_federation
from peerdata.federated.tiers import TierHooks
from peerdata.ml.aggregate import StateDict
from peerdata.node.logs import event
from peerdata.node.node import Node
from peerdata.node.rounds import RoundService

log = logging.getLogger("peerdata.node.federation")


async def start_node_federation(node: Node, rounds: RoundService, *,
                                wall_clock: Callable[[], float] | None = None
                                ) -> Federation | None:
    """Start federation in `node`'s nursery on `rounds`' learner if `federation.enabled`;
    return it, or None when it is disabled (nothing started).

    Rounds follow the fleet clock on `wall_clock` (default: the node's wall clock).

    Round 1 starts from each robot's own model: a peer's update is its local step's delta,
    applied to the aggregator's model; from the first global model on, all peers share one.
    """
    cfg = node.config.federation
    if not cfg.enabled:
        return None
    host = rounds.host

    async def train_local(_global: StateDict, round_id: int) -> LocalModel:
        # The learner's model already holds the last global model (loaded by `adopt`), plus
        # whatever the sharing rounds fine-tuned since: federation trains on from there.
        try:
            state, samples = await rounds.run_learner(
                host.train_federated, cfg.local_epochs, host.learner.seed + 7919 * round_id)
        except PeerdataError as exc:
            event(log, logging.WARNING, "federated_train_failed", round_id=round_id,
                  error=str(exc)[:200])
            state, samples = await rounds.run_learner(host.model_state), 0
        # The wire needs >= 1 sample; a robot without data contributes the model it holds.
        return LocalModel(state, max(1, samples))

    def label_counts() -> tuple[int, ...]:
        # the histogram of what train_federated trains on: labels only, never images
        lr = host.learner
        labels = np.concatenate([lr.local_labels, lr.received_labels]).astype(np.int64)
        size = max(host.config.vision.num_classes, int(labels.max()) + 1 if len(labels) else 1)
        return tuple(int(c) for c in np.bincount(labels, minlength=size))

    def train_from(start: StateDict, seed: int, epochs: int) -> tuple[StateDict, int]:
        host.load_model_state(start)
        return host.train_federated(epochs, seed)

    async def train_tier(start: StateDict, round_id: int, epochs: int) -> LocalModel:
        # multi-tier: train from a given model (a top-tier peer's seed, or the global one)
        seed = host.learner.seed + 7919 * round_id
        try:
            state, samples = await rounds.run_learner(train_from, start, seed, epochs)
        except PeerdataError as exc:
            event(log, logging.WARNING, "federated_train_failed", round_id=round_id,
                  error=str(exc)[:200])
            state, samples = start, 0
        return LocalModel(state, max(1, samples), label_counts())

    def load_and_save(model: StateDict) -> None:
        host.load_model_state(model)
        host.save()  # the atomic learner checkpoint

    async def adopt(model: StateDict, result: RoundResult) -> None:
        try:
            await rounds.run_learner(load_and_save, model)
        except PeerdataError as exc:
            event(log, logging.WARNING, "federated_adopt_failed", round_id=result.round_id,
                  error=str(exc)[:200])
            return
        event(log, logging.INFO, "federated_model_adopted", round_id=result.round_id,
              version=result.version, included=len(result.included))

    start = await rounds.run_learner(host.model_state)
    federation = await start_federation(node, start, train_local, wall_clock=wall_clock,
                                        adopt=adopt, on_round=node.book.notify,
                                        tiers=TierHooks(label_counts, train_tier))
    event(log, logging.INFO, "federation_started", mode=cfg.mode, strategy=cfg.strategy,
          interval_s=cfg.interval_s)
    return federation
