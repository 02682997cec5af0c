"""Federation started inside real nodes (open_node) on the in-memory network, under MockClock."""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path

import pytest
import torch
import trio
import trio.testing
from test_node_support import temp_store

from peerdata.config import FederationConfig, NodeConfig
from peerdata.errors import PeerdataError
from peerdata.federated import LocalModel
from peerdata.federated.service import Federation, start_federation
from peerdata.identity import Identity
from peerdata.node.node import Node, inline_offload, open_node
from peerdata.testing.memory_network import MemoryNetwork

NOWHERE = Path("/nonexistent-peerdata-home")


async def open_robot(stack: AsyncExitStack, network: MemoryNetwork, index: int,
                     federation: FederationConfig) -> Node:
    identity = Identity.from_private_bytes(bytes([40 + index]) * 32)
    transport = await stack.enter_async_context(network.open_transport(identity.peer_id))
    config = NodeConfig(name=f"robot{index}", limits=network.limits, federation=federation)
    return await stack.enter_async_context(open_node(
        NOWHERE, config, identity=identity, store=temp_store(stack), transport=transport,
        wall_clock=lambda: 1_700_000_000.0 + trio.current_time(), offload=inline_offload))


async def test_three_nodes_average_their_models(autojump_clock: trio.testing.MockClock) -> None:
    federation = FederationConfig(enabled=True, deadline_s=5.0, interval_s=60.0)
    network = MemoryNetwork(seed=7)
    start = {"w": torch.zeros(3)}
    services: list[Federation] = []
    with trio.fail_after(600):
        async with AsyncExitStack() as stack:
            nodes = [await open_robot(stack, network, i, federation) for i in range(3)]
            for node in nodes[1:]:
                await node.transport.connect(nodes[0].transport.listen_addrs()[0])
            await nodes[1].transport.connect(nodes[2].transport.listen_addrs()[0])

            def trainer(value: float):  # type: ignore[no-untyped-def]
                async def train_local(state: dict[str, torch.Tensor], _r: int) -> LocalModel:
                    return LocalModel({"w": state["w"] + value}, num_samples=1)
                return train_local

            for i, node in enumerate(nodes):
                services.append(await start_federation(node, start, trainer(float(i))))
            await trio.sleep(150.0)  # virtual: rounds at t = 60 and t = 120
            stats = [s.statistics() for s in services]
            models = [s.global_state["w"] for s in services]
            for node in nodes:
                node.cancel()
    assert [s.rounds for s in stats] == [2, 2, 2]
    assert all(s.version == 2 and not s.last_missing for s in stats)
    assert all(len(s.last_included) in (1, 3) for s in stats)
    # round 1: mean(0, 1, 2) = 1; round 2 starts from 1: mean(1, 2, 3) = 2, on every node
    assert all(torch.equal(m, torch.full((3,), 2.0)) for m in models)


async def test_federation_is_opt_in(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork(seed=8)
    with trio.fail_after(60):
        async with AsyncExitStack() as stack:
            node = await open_robot(stack, network, 0, FederationConfig())
            with pytest.raises(PeerdataError, match="opt-in"):
                await start_federation(node, {"w": torch.zeros(1)}, None)  # type: ignore[arg-type]
            node.cancel()
