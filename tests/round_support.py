"""Support for round tests (no tests here): robots with tiny learners on a MemoryNetwork."""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import trio
from test_node_support import temp_store

from peerdata.config import NetConfig, NodeConfig, PrivacyConfig, RoundConfig
from peerdata.datasets.synthetic import generate
from peerdata.identity import Identity
from peerdata.ml.privacy import PrivacyFilter
from peerdata.ml.ranker import RankerConfig
from peerdata.ml.vision import VisionConfig
from peerdata.node.ingest import Incoming, from_array
from peerdata.node.learning import LearnerHost
from peerdata.node.node import Node, Offload, inline_offload, open_node
from peerdata.node.rounds import RoundService
from peerdata.sharing import LearnerConfig
from peerdata.store import Store
from peerdata.testing.memory_network import MemoryNetwork

torch.set_num_threads(1)  # 2 shared cores: threads only contend

NOWHERE = Path("/nonexistent-peerdata-home")
EPOCH = 1_700_000_000.0
FAMILY_OFFSET = {"bars": 0, "rings": 10, "spots": 20}


def tiny_learner() -> LearnerConfig:
    """A learner that trains in well under a second."""
    return LearnerConfig(
        vision=VisionConfig(num_classes=30, width=2, embedding_dim=8, epochs=1,
                            fine_tune_epochs=1, fine_tune_samples=64, batch_size=32),
        ranker=RankerConfig(hidden=8, epochs=20), detector="energy", calibration_images=20)


def images(family: str, count: int, seed: int) -> list[Incoming]:
    """Generated labelled observations of one synthetic family."""
    data = generate(family, count, seed)
    return [from_array(data.images[i], int(data.labels[i]) + FAMILY_OFFSET[family], family)
            for i in range(count)]


def mixed(families: dict[str, int], seed: int) -> list[Incoming]:
    out: list[Incoming] = []
    for k, (family, n) in enumerate(sorted(families.items())):
        out += images(family, n, seed * 100 + k)
    order = np.random.default_rng(seed).permutation(len(out))
    return [out[i] for i in order]


@dataclass
class Robot:
    node: Node
    store: Store
    service: RoundService
    identity: Identity


def round_config(**changes: object) -> RoundConfig:
    base: dict[str, object] = {"interval_s": 0.0, "vote_deadline_s": 20.0,
                               "budget_fraction": 0.25, "max_hops": 8}
    base.update(changes)
    return RoundConfig(**base)  # type: ignore[arg-type]


async def start_robot(stack: AsyncExitStack, network: MemoryNetwork, name: str, *,
                      bootstrap: tuple[str, ...] = (), rounds: RoundConfig | None = None,
                      store: Store | None = None, identity: Identity | None = None,
                      host: LearnerHost | None = None, seed: int = 0,
                      home: Path | None = None, privacy: PrivacyFilter | None = None,
                      ml_offload: Offload = inline_offload) -> Robot:
    """A node plus its round service, on `network`, for the lifetime of `stack`."""
    identity = identity or Identity.generate()
    store = store or temp_store(stack)
    config = NodeConfig(name=name, net=NetConfig(bootstrap=bootstrap), limits=network.limits,
                        round=rounds or round_config())
    transport = await stack.enter_async_context(network.open_transport(identity.peer_id))
    node = await stack.enter_async_context(open_node(
        NOWHERE, config, identity=identity, store=store, transport=transport,
        wall_clock=lambda: EPOCH + trio.current_time(), offload=inline_offload))
    host = host or LearnerHost(name, tiny_learner(), seed)
    service = RoundService(node, host, privacy or PrivacyFilter.from_config(PrivacyConfig()),
                           home=home, ml_offload=ml_offload)
    await node.start_service(service.run)
    return Robot(node, store, service, identity)


def addr_of(peer_id: str) -> str:
    return f"/memory/{peer_id}/p2p/{peer_id}"


async def fleet(stack: AsyncExitStack, network: MemoryNetwork, count: int,
                **kwargs: object) -> list[Robot]:
    """`count` robots, all connected to each other (robot 0 is the bootstrap)."""
    robots = [await start_robot(stack, network, "r0", seed=0, **kwargs)]  # type: ignore[arg-type]
    for i in range(1, count):
        robots.append(await start_robot(stack, network, f"r{i}", seed=i,  # type: ignore[arg-type]
                                        bootstrap=(addr_of(robots[0].node.peer_id),), **kwargs))
    for r in robots:
        await r.node.wait_until(lambda s: s.peers_connected == count - 1)
    return robots
