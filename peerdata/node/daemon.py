"""The daemon's services, composed: one object that builds them on a node, each with explicit
references, and that the control endpoint and ops talk to.

Rule: built once, in order: the learner and the privacy filter are loaded in a thread, the
round service starts in the node's nursery on them, federation on the round service's learner
when `federation.enabled`. Nothing is set on the node from above: whoever needs a service is
handed this object. Torch is imported only here, on start (`peerdata run --help` stays light).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from peerdata.node.node import Node

if TYPE_CHECKING:  # torch-heavy: imported when `start_daemon` runs
    from peerdata.federated.service import Federation
    from peerdata.ml.privacy import PrivacyFilter
    from peerdata.node.rounds import RoundService


@dataclass(frozen=True)
class Daemon:
    """A running node and the services composed on it (None: not running here)."""

    node: Node
    privacy: PrivacyFilter | None = None  # the one filter every outgoing image passes
    rounds: RoundService | None = None
    federation: Federation | None = None


async def start_daemon(node: Node, home: Path) -> Daemon:
    """Load the learner (HOME/learner.ckpt) and the privacy filter, start the round service
    and, when `federation.enabled`, federation on its learner; return them composed."""
    from peerdata.ml.privacy import PrivacyFilter
    from peerdata.node.learning import CHECKPOINT, LearnerHost, learner_config_for
    from peerdata.node.rounds import RoundService

    def load() -> tuple[LearnerHost, PrivacyFilter]:
        import torch

        torch.set_num_threads(1)  # several daemons share a machine; one learner step at a time
        cfg = node.config.round
        host = LearnerHost.load(node.config.name, learner_config_for(cfg, node.config.model),
                                cfg.learner_seed, home / CHECKPOINT)
        return host, PrivacyFilter.from_config(node.config.privacy)

    host, privacy = await trio.to_thread.run_sync(load)
    rounds = RoundService(node, host, privacy, home=home, is_member=node.membership.is_member)
    await node.start_service(rounds.run)
    federation = None
    if node.config.federation.enabled:  # opt-in: nothing of it starts otherwise
        from peerdata.node.federation import start_node_federation

        federation = await start_node_federation(node, rounds)
    return Daemon(node, privacy, rounds, federation)
