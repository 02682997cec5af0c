"""The daemon's federation wiring: robots' own vision models averaged over a MemoryNetwork."""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path

import pytest
import torch
import trio
import trio.testing
from round_support import EPOCH, NOWHERE, addr_of, mixed, round_config, tiny_learner
from test_node_support import temp_store

from peerdata.config import FederationConfig, NetConfig, NodeConfig, PrivacyConfig
from peerdata.control.commands import make_dispatch
from peerdata.control.protocol import ControlRequest
from peerdata.identity import Identity
from peerdata.ml.privacy import PrivacyFilter
from peerdata.node.daemon import Daemon
from peerdata.node.federation import start_node_federation
from peerdata.node.learning import LearnerHost
from peerdata.node.node import inline_offload, open_node
from peerdata.node.rounds import RoundService
from peerdata.testing.memory_network import MemoryNetwork
from peerdata.wire.versions import MODEL_PROTOCOL

State = dict[str, torch.Tensor]


async def start_robot(stack: AsyncExitStack, network: MemoryNetwork, index: int,
                      federation: FederationConfig, checkpoint: Path,
                      bootstrap: tuple[str, ...] = ()) -> RoundService:
    """A node with a bootstrapped learner (checkpointed to `checkpoint`) and its round service."""
    identity = Identity.from_private_bytes(bytes([60 + index]) * 32)
    config = NodeConfig(name=f"r{index}", net=NetConfig(bootstrap=bootstrap),
                        limits=network.limits, round=round_config(), federation=federation)
    transport = await stack.enter_async_context(network.open_transport(identity.peer_id))
    node = await stack.enter_async_context(open_node(
        NOWHERE, config, identity=identity, store=temp_store(stack), transport=transport,
        wall_clock=lambda: EPOCH + trio.current_time(), offload=inline_offload))
    host = LearnerHost(config.name, tiny_learner(), index, checkpoint)
    service = RoundService(node, host, PrivacyFilter.from_config(PrivacyConfig()),
                           ml_offload=inline_offload)
    await node.start_service(service.run)
    await service.observer.observe(mixed({"bars": 30, "rings": 20}, seed=index), bootstrap=True,
                          seed=index)
    return service


@pytest.mark.parametrize(("strategy", "n"), [("fedavg", 3), ("multitier", 4)])
async def test_daemon_federation_averages_the_learners_models(
        autojump_clock: trio.testing.MockClock, tmp_path: Path, strategy: str, n: int) -> None:
    """FedAvg: all hold the aggregate. Multi-tier (top tier of 3): the top tier holds the
    global model; the fourth robot, low tier, keeps the seed it fine-tuned."""
    federation = FederationConfig(enabled=True, deadline_s=5.0, interval_s=60.0,
                                  strategy=strategy)
    network = MemoryNetwork(seed=11)
    with trio.fail_after(300):
        async with AsyncExitStack() as stack:
            robots = [await start_robot(stack, network, 0, federation, tmp_path / "r0.ckpt")]
            for i in range(1, n):
                robots.append(await start_robot(stack, network, i, federation,
                                                tmp_path / f"r{i}.ckpt",
                                                (addr_of(robots[0].node.peer_id),)))
            for r in robots:
                await r.node.wait_until(lambda s: s.peers_connected == n - 1)
            before: list[State] = [r.host.model_state() for r in robots]
            feds = [await start_node_federation(r.node, r) for r in robots]
            assert all(f is not None for f in feds)
            # virtual: one round; the wall clock is EPOCH + t, so rounds start at t = 40, 100
            await trio.sleep(90.0 - trio.current_time())
            after: list[State] = [r.host.model_state() for r in robots]
            status = await make_dispatch(robots[1].node, "c", lambda: None, services=Daemon(
                robots[1].node, rounds=robots[1], federation=feds[1]))(ControlRequest(1, "status"))
            for r in robots:
                r.node.cancel()
    stats = [f.statistics() for f in feds if f is not None]
    assert [s.rounds for s in stats] == [1] * n
    assert all(not s.last_missing for s in stats)
    assert status["federation"]["rounds"] == 1
    top = [i for i, s in enumerate(stats) if s.version == 1]
    assert len(top) == 3  # fedavg: everyone; multitier: the top tier
    # every robot holds a model none of them held before; the top ones hold the same one
    for i, model in enumerate(after):
        assert model.keys() == before[i].keys()
        assert any(not torch.equal(model[k], before[i][k]) for k in model)
    for i in top:
        assert all(torch.equal(after[i][k], after[top[0]][k]) for k in after[i])
    # and it was checkpointed: a restarted learner loads it
    for i in range(n):
        restored = LearnerHost.load(f"r{i}", tiny_learner(), i, tmp_path / f"r{i}.ckpt")
        assert all(torch.equal(v, after[i][k]) for k, v in restored.model_state().items())


async def test_daemon_federation_is_off_unless_enabled(
        autojump_clock: trio.testing.MockClock, tmp_path: Path) -> None:
    network = MemoryNetwork(seed=12)
    with trio.fail_after(120):
        async with AsyncExitStack() as stack:
            robot = await start_robot(stack, network, 0, FederationConfig(), tmp_path / "r.ckpt")
            assert await start_node_federation(robot.node, robot) is None
            status = await make_dispatch(robot.node, "c", lambda: None, services=Daemon(
                robot.node, rounds=robot))(ControlRequest(1, "status"))
            robot.node.cancel()
    assert "federation" not in status and status["rounds"] == 0
    assert MODEL_PROTOCOL not in robot.node.transport._handlers  # type: ignore[attr-defined]
