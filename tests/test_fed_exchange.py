"""The model-update exchange on the in-memory network under MockClock: stragglers, bad peers."""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack

import pytest
import torch
import trio
import trio.testing

from peerdata.config import FederationConfig
from peerdata.federated import (
    FederatedPeer,
    LocalModel,
    ModelInbox,
    RoundResult,
    elect_aggregator,
    transport_sender,
)
from peerdata.federated.asyncmode import MAX_STALENESS
from peerdata.federated.clock import FleetClock
from peerdata.federated.service import Federation
from peerdata.federated.tensors import BlobOptions, blobs_from_state
from peerdata.identity import Identity
from peerdata.ml.aggregate import CoordinateMedian, FedAvg
from peerdata.net.transport import Transport
from peerdata.testing.memory_network import MemoryNetwork
from peerdata.wire.model_update import encode_model_update, sign_model_update
from peerdata.wire.versions import MODEL_PROTOCOL

IDS = [Identity.from_private_bytes(bytes([i + 1]) * 32) for i in range(3)]
A, B, C = IDS
DEADLINE = 10.0
TIMEOUT = 120.0  # virtual seconds; the clock autojumps


def start_state() -> dict[str, torch.Tensor]:
    return {"w": torch.zeros(2), "steps": torch.tensor(0, dtype=torch.int64)}


def local(value: float, n: int) -> LocalModel:
    return LocalModel({"w": torch.full((2,), value), "steps": torch.tensor(1)}, n)


async def open_wired(stack: AsyncExitStack, net: MemoryNetwork, peers: list[str],
                     max_update_bytes: int) -> dict[str, tuple[Transport, ModelInbox]]:
    """One transport per peer on `net`, each with a model inbox serving /model (the set-up
    every exchange test shares)."""
    wired = {}
    for peer in peers:
        transport = await stack.enter_async_context(net.open_transport(peer))
        inbox = ModelInbox(max_update_bytes)
        inbox.attach(transport.set_handler)
        wired[peer] = (transport, inbox)
    return wired


async def open_connected(stack: AsyncExitStack, net: MemoryNetwork, peers: list[str]
                         ) -> list[Transport]:
    """Transports for `peers`, every one connected to the first and the second to the third
    (for services, which find their members through connections)."""
    transports = [await stack.enter_async_context(net.open_transport(p)) for p in peers]
    for t in transports[1:]:
        await t.connect(transports[0].listen_addrs()[0])
    if len(transports) > 2:
        await transports[1].connect(transports[2].listen_addrs()[0])
    return transports


def test_election_is_shared_and_rotates() -> None:
    peers = [i.peer_id for i in IDS]
    chosen = {elect_aggregator(r, peers) for r in range(20)}
    assert elect_aggregator(5, peers) == elect_aggregator(5, list(reversed(peers)))
    assert len(chosen) == 3


async def test_three_nodes_with_a_straggler(autojump_clock: trio.testing.MockClock) -> None:
    cfg = FederationConfig(enabled=True, deadline_s=DEADLINE, aggregator=A.peer_id,
                           clock_skew_s=0.0)
    net = MemoryNetwork(seed=1)
    members = [i.peer_id for i in IDS]
    results: dict[str, list[RoundResult]] = {i.peer_id: [] for i in IDS}
    finished_at: dict[str, float] = {}
    with trio.fail_after(TIMEOUT):
        async with AsyncExitStack() as stack:
            wired = await open_wired(stack, net, members, cfg.max_update_bytes)
            nodes = {ident.peer_id: (FederatedPeer(ident, cfg, FedAvg(), start_state()),
                                     wired[ident.peer_id][1],
                                     transport_sender(wired[ident.peer_id][0]))
                     for ident in IDS}

            async def node(ident: Identity, rounds: list[tuple[float, float, int]]) -> None:
                peer, inbox, send = nodes[ident.peer_id]
                for round_id, (delay, value, n) in enumerate(rounds, start=1):
                    await trio.sleep(delay)  # virtual time: local training takes this long
                    result = await peer.aggregator_round(
                        round_id, members, local(value, n), send_update=send,
                        collect=inbox.collect)
                    results[ident.peer_id].append(result)
                    finished_at[f"{ident.peer_id}:{round_id}"] = trio.current_time()
                    if round_id == 1:  # everyone starts round 2 together
                        await trio.sleep_until(50.0)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(node, A, [(0.0, 1.0, 1), (0.0, 1.0, 1)])
                nursery.start_soon(node, B, [(1.0, 3.0, 3), (0.0, 3.0, 3)])
                # C trains for 25 s in round 1: its update arrives after A's deadline (10 s)
                nursery.start_soon(node, C, [(25.0, 100.0, 1), (0.0, 5.0, 4)])

    r1_a, r1_b, r1_c = (results[i.peer_id][0] for i in IDS)
    # the round closed at the deadline without waiting for C, and left C out
    assert finished_at[f"{A.peer_id}:1"] == pytest.approx(DEADLINE)
    assert r1_a.aggregator == A.peer_id
    assert r1_a.included == (A.peer_id, B.peer_id) and r1_a.missing == (C.peer_id,)
    assert torch.allclose(r1_a.model["w"], torch.full((2,), 2.5))  # (1*1 + 3*3) / 4
    assert torch.equal(r1_b.model["w"], r1_a.model["w"])
    # C's late update never reached the model, but C still picks up the global model
    assert r1_c.model is not None and torch.equal(r1_c.model["w"], r1_a.model["w"])
    assert r1_c.version == 1 and r1_c.included == (A.peer_id,)
    # round 2: C's stale round-1 update is refused, its fresh one counted
    r2_a = results[A.peer_id][1]
    assert set(r2_a.included) == {A.peer_id, B.peer_id, C.peer_id} and r2_a.missing == ()
    assert any("round 1" in r.reason for r in r2_a.rejected)
    expected = 2.5 + (1 * (1 - 2.5) + 3 * (3 - 2.5) + 4 * (5 - 2.5)) / 8
    assert torch.allclose(r2_a.model["w"], torch.full((2,), expected))
    assert all(results[i.peer_id][1].version == 2 for i in IDS)


async def test_top_k_global_goes_as_a_delta_to_robots_in_step(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """With top-k configured the aggregator sends its model as a top-k delta to the peers whose
    update it took (they hold its version) and whole, in float32, to a late one: all three end
    with the same bytes, and the delta was the smaller message."""
    cfg = FederationConfig(enabled=True, deadline_s=DEADLINE, aggregator=A.peer_id,
                           clock_skew_s=0.0, topk_fraction=0.5)
    net = MemoryNetwork(seed=15)
    members = [i.peer_id for i in IDS]
    trained = {A.peer_id: [4.0, 2.0, 0.0, 0.0], B.peer_id: [0.0, 0.0, 6.0, 1.0],
               C.peer_id: [9.0, 9.0, 9.0, 9.0]}
    out: dict[str, RoundResult] = {}
    with trio.fail_after(TIMEOUT):
        async with AsyncExitStack() as stack:
            wired = await open_wired(stack, net, members, cfg.max_update_bytes)

            async def node(ident: Identity, delay: float) -> None:
                transport, inbox = wired[ident.peer_id]
                peer = FederatedPeer(ident, cfg, FedAvg(), {"w": torch.zeros(4)})
                await trio.sleep(delay)  # virtual: C trains past A's deadline
                out[ident.peer_id] = await peer.aggregator_round(
                    1, members, LocalModel({"w": torch.tensor(trained[ident.peer_id])}, 1),
                    send_update=transport_sender(transport), collect=inbox.collect)

            async with trio.open_nursery() as nursery:
                for ident, delay in ((A, 0.0), (B, 1.0), (C, 25.0)):
                    nursery.start_soon(node, ident, delay)
    a, b, c = (out[i.peer_id] for i in IDS)
    assert a.included == (A.peer_id, B.peer_id) and a.missing == (C.peer_id,)
    # mean of A and B = [2, 1, 3, 0.5]; its two largest changes travel: [2, 0, 3, 0]
    assert a.model["w"].tolist() == [2.0, 0.0, 3.0, 0.0]
    assert b.model is not None and c.model is not None
    assert torch.equal(b.model["w"], a.model["w"]) and torch.equal(c.model["w"], a.model["w"])
    assert b.version == c.version == 1
    assert b.bytes_received < c.bytes_received  # delta to B, the whole model to C


async def test_bad_updates_never_reach_the_model(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture,
) -> None:
    cfg = FederationConfig(enabled=True, deadline_s=DEADLINE, aggregator=A.peer_id,
                           max_update_bytes=4096)
    net = MemoryNetwork(seed=2)
    members = [i.peer_id for i in IDS]
    nan_state = {"w": torch.tensor([float("nan"), 0.0]), "steps": torch.tensor(1)}
    poisoned = encode_model_update(sign_model_update(
        B, round_id=1, base_version=0, kind="update", is_delta=False, num_samples=1000,
        label_counts=(), tag="", tensors=blobs_from_state(nan_state, BlobOptions())))
    wrong_shape = encode_model_update(sign_model_update(
        C, round_id=1, base_version=0, kind="update", is_delta=False, num_samples=1000,
        label_counts=(), tag="", tensors=blobs_from_state(
            {"w": torch.ones(3), "steps": torch.tensor(1)}, BlobOptions())))
    with trio.fail_after(TIMEOUT), caplog.at_level(logging.WARNING, "peerdata.federated"):
        async with net.open_transport(A.peer_id) as ta, \
                net.open_transport(B.peer_id) as tb, net.open_transport(C.peer_id) as tc:
            inbox = ModelInbox(cfg.max_update_bytes)
            inbox.attach(ta.set_handler)
            peer = FederatedPeer(A, cfg, FedAvg(), start_state())
            for transport in (tb, tc):
                transport.set_handler(MODEL_PROTOCOL, ModelInbox(4096).handle)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(tb.request, A.peer_id, MODEL_PROTOCOL, poisoned)
                nursery.start_soon(tc.request, A.peer_id, MODEL_PROTOCOL, wrong_shape)
                result = await peer.aggregator_round(
                    1, members, local(1.0, 1), send_update=transport_sender(ta),
                    collect=inbox.collect)
    assert result.included == (A.peer_id,)
    assert torch.equal(result.model["w"], torch.ones(2))
    reasons = " | ".join(r.reason for r in result.rejected)
    assert "NaN" in reasons and "shape" in reasons
    assert sum("rejected" in r.getMessage() for r in caplog.records) == 2


async def test_oversize_update_is_refused_at_the_inbox(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = MemoryNetwork(seed=3)
    with trio.fail_after(TIMEOUT):
        async with net.open_transport(A.peer_id) as ta, net.open_transport(B.peer_id) as tb:
            inbox = ModelInbox(max_update_bytes=100)
            inbox.attach(ta.set_handler)
            with pytest.raises(Exception, match="reset"):
                await tb.request(A.peer_id, MODEL_PROTOCOL, b"\x01\x10" + b"\x00" * 200)
            assert await inbox.collect(trio.current_time() + 1.0, frozenset({B.peer_id})) == []


async def test_gossip_round_median_shrugs_off_a_liar(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cfg = FederationConfig(enabled=True, deadline_s=DEADLINE, mode="gossip")
    net = MemoryNetwork(seed=4)
    members = [i.peer_id for i in IDS]
    values = {A.peer_id: 1.0, B.peer_id: 2.0, C.peer_id: 1e6}  # C is scaling its model
    out: dict[str, RoundResult] = {}
    with trio.fail_after(TIMEOUT):
        async with AsyncExitStack() as stack:
            wiring = await open_wired(stack, net, members, cfg.max_update_bytes)

            async def node(ident: Identity) -> None:
                transport, inbox = wiring[ident.peer_id]
                peer = FederatedPeer(ident, cfg, CoordinateMedian(), start_state())
                out[ident.peer_id] = await peer.gossip_round(
                    1, members, local(values[ident.peer_id], 1),
                    send_update=transport_sender(transport), collect=inbox.collect)

            async with trio.open_nursery() as nursery:
                for ident in IDS:
                    nursery.start_soon(node, ident)
    for honest in (A, B):
        assert set(out[honest.peer_id].included) == set(members)
        assert torch.equal(out[honest.peer_id].model["w"], torch.full((2,), 2.0))


async def test_federation_service_runs_rounds_on_a_schedule(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cfg = FederationConfig(enabled=True, deadline_s=DEADLINE)
    net = MemoryNetwork(seed=5)
    members = [i.peer_id for i in IDS]
    aggregator = elect_aggregator(1, members)
    straggler = next(p for p in members if p != aggregator)
    services: dict[str, Federation] = {}
    values = {p: float(i + 1) for i, p in enumerate(members)}

    def trainer(peer_id: str):  # type: ignore[no-untyped-def]
        async def train_local(state: dict[str, torch.Tensor], round_id: int) -> LocalModel:
            if peer_id == straggler and round_id == 1:
                await trio.sleep(3 * DEADLINE)  # virtual: too slow for round 1
            return LocalModel({"w": state["w"] + values[peer_id], "steps": torch.tensor(1)}, 1)
        return train_local

    with trio.fail_after(1000):
        async with AsyncExitStack() as stack:
            transports = await open_connected(stack, net, members)
            async with trio.open_nursery() as nursery:
                for ident, transport in zip(IDS, transports, strict=True):
                    peer = FederatedPeer(ident, cfg, FedAvg(), start_state())
                    service = Federation(transport, peer, trainer(ident.peer_id),
                                         clock=FleetClock(100.0, 0.0, trio.current_time))
                    services[ident.peer_id] = service
                    await nursery.start(lambda s=service, **kw: s.run(max_rounds=2, **kw))
    stats = {p: s.statistics() for p, s in services.items()}
    assert all(s.rounds == 2 for s in stats.values())
    assert stats[aggregator].rejected_total == 1  # the straggler's round-1 update, next round
    assert all(s.version == 2 for s in stats.values())


async def test_multitier_round_over_the_network(autojump_clock: trio.testing.MockClock) -> None:
    from peerdata.federated.tiers import multitier_round
    from peerdata.ml.aggregate import MultiTierConfig, plan_tiers

    ids = {name: Identity.from_private_bytes(bytes([60 + i]) * 32)
           for i, name in enumerate(["t1", "t2", "l1", "l2", "l3"])}
    counts = {"t1": (50, 50), "t2": (40, 40), "l1": (5, 0), "l2": (0, 3), "l3": (2, 2)}
    step = {"t1": 1.0, "t2": 2.0, "l1": 10.0, "l2": 20.0, "l3": 30.0}
    tiers = MultiTierConfig(top_tier=2, et=2, er=1)
    plan = plan_tiers({ids[n].peer_id: counts[n] for n in ids}, tiers)
    name_of = {ident.peer_id: n for n, ident in ids.items()}
    assert [name_of[p] for p in plan.top] == ["t1", "t2"]
    assert {name_of[k]: name_of[v] for k, v in plan.leader.items()} == {
        "l3": "t1", "l1": "t2", "l2": "t1"}
    cfg = FederationConfig(enabled=True, deadline_s=DEADLINE)
    net = MemoryNetwork(seed=6)
    out: dict[str, RoundResult] = {}
    with trio.fail_after(TIMEOUT):
        async with AsyncExitStack() as stack:
            by_peer = await open_wired(stack, net, [i.peer_id for i in ids.values()],
                                       cfg.max_update_bytes)
            wiring = {name: by_peer[ident.peer_id] for name, ident in ids.items()}

            async def node(name: str) -> None:
                transport, inbox = wiring[name]

                async def train(start: dict[str, torch.Tensor], epochs: int) -> LocalModel:
                    if name == "l2":
                        await trio.sleep(3 * DEADLINE)  # virtual: a straggler
                    return LocalModel({"w": start["w"] + step[name] * epochs},
                                      sum(counts[name]), counts[name])

                peer = FederatedPeer(ids[name], cfg, FedAvg(), {"w": torch.zeros(2)})
                out[name] = await multitier_round(
                    peer, 1, plan, tiers, train, send_update=transport_sender(transport),
                    collect=inbox.collect)

            async with trio.open_nursery() as nursery:
                for name in ids:
                    nursery.start_soon(node, name)
    # seeds: t1 = 2, t2 = 4; fine-tuned: l3 = 32 (4 samples), l1 = 14 (5); l2 missed the round
    groups = (100 * 2 + 4 * 32) + (80 * 4 + 5 * 14)
    expected = torch.full((2,), groups / (104 + 85))
    for top in ("t1", "t2"):
        assert out[top].model is not None and torch.allclose(out[top].model["w"], expected)
        assert out[top].version == 1
    assert torch.equal(out["l3"].model["w"], torch.full((2,), 32.0))
    assert ids["l2"].peer_id in out["t1"].missing


async def test_clustered_round_gives_each_group_its_own_model(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Four peers whose updates point two opposite ways form two clusters; each peer gets its
    cluster's average (full models up, one model per cluster down), not the global mean."""
    from peerdata.ml.aggregate import Clustered

    ids = [Identity.from_private_bytes(bytes([90 + i]) * 32) for i in range(4)]
    members = [i.peer_id for i in ids]
    cfg = FederationConfig(enabled=True, deadline_s=DEADLINE, strategy="clustered")
    directions = {members[0]: (1.0, 0.0), members[1]: (2.0, 0.1),
                  members[2]: (-1.0, 0.0), members[3]: (-3.0, -0.1)}
    net = MemoryNetwork(seed=9)
    out: dict[str, RoundResult] = {}
    with trio.fail_after(TIMEOUT):
        async with AsyncExitStack() as stack:
            wiring = await open_wired(stack, net, members, cfg.max_update_bytes)

            async def node(ident: Identity) -> None:
                transport, inbox = wiring[ident.peer_id]
                peer = FederatedPeer(ident, cfg, Clustered(max_clusters=2), start_state())
                update = LocalModel({"w": torch.tensor(directions[ident.peer_id]),
                                     "steps": torch.tensor(1)}, 1)
                out[ident.peer_id] = await peer.aggregator_round(
                    1, members, update, send_update=transport_sender(transport),
                    collect=inbox.collect)

            async with trio.open_nursery() as nursery:
                for ident in ids:
                    nursery.start_soon(node, ident)
    models = {p: out[p].model["w"] for p in members}
    assert all(out[p].version == 1 and out[p].model is not None for p in members)
    assert torch.allclose(models[members[0]], torch.tensor([1.5, 0.05]))
    assert torch.equal(models[members[0]], models[members[1]])
    assert torch.allclose(models[members[2]], torch.tensor([-2.0, -0.05]))
    assert torch.equal(models[members[2]], models[members[3]])


def test_fleet_clock_numbers_rounds_from_wall_time() -> None:
    from peerdata.errors import ConfigError

    now = [1_000.0]
    clock = FleetClock(60.0, 2.0, lambda: now[0])
    assert clock.next_round() == (17, 20.0)  # round 17 starts at 1020 s
    assert clock.next_round(after=17) == (18, 80.0)  # never a round twice
    now[0] = 1_020.0
    assert clock.next_round() == (18, 60.0)
    with pytest.raises(ConfigError):
        FleetClock(60.0, 30.0)


async def test_robots_with_skewed_clocks_agree_on_rounds(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Three services whose wall clocks differ by up to 3 s (tolerance 2 s each way): every
    round includes everyone; an update that arrives while its aggregator's clock still shows
    the previous round is held for it, not refused."""
    cfg = FederationConfig(enabled=True, deadline_s=DEADLINE, clock_skew_s=2.0)
    net = MemoryNetwork(seed=13)
    offsets = {A.peer_id: 0.0, B.peer_id: 1.5, C.peer_id: -1.5}
    services: dict[str, Federation] = {}

    async def train_local(state: dict[str, torch.Tensor], _round: int) -> LocalModel:
        return LocalModel({"w": state["w"] + 1.0, "steps": torch.tensor(1)}, 1)

    with trio.fail_after(1000):
        async with AsyncExitStack() as stack:
            transports = await open_connected(stack, net, [i.peer_id for i in IDS])
            async with trio.open_nursery() as nursery:
                for ident, transport in zip(IDS, transports, strict=True):
                    offset = offsets[ident.peer_id]
                    clock = FleetClock(100.0, 2.0,
                                       lambda o=offset: 1_700_000_050.0 + o + trio.current_time())
                    service = Federation(transport, FederatedPeer(ident, cfg, FedAvg(),
                                                                  start_state()),
                                         train_local, clock=clock)
                    services[ident.peer_id] = service
                    await nursery.start(lambda s=service, **kw: s.run(max_rounds=3, **kw))
    stats = [s.statistics() for s in services.values()]
    assert {s.last_round for s in stats} == {17_000_003}
    assert all(s.version == 3 and not s.last_missing and s.rejected_total == 0 for s in stats)
    assert len({s.model_digest for s in stats}) == 1
    for peer_id, service in services.items():
        assert all(len(r.included) == 3 for r in service.results if r.aggregator == peer_id)


async def test_async_mode_does_not_wait_for_the_slow_robot(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """FedBuff at A (buffer 3): B trains in 1 s, C in 5 s. The global model moves on B's
    updates without waiting for C, C's late updates still count (staleness-weighted), and
    every robot ends within a few versions of the server's newest."""
    cfg = FederationConfig(enabled=True, deadline_s=DEADLINE, mode="async",
                           aggregator=A.peer_id, interval_s=30.0)
    net = MemoryNetwork(seed=14)
    took = {B.peer_id: 1.0, C.peer_id: 5.0}
    services: dict[str, Federation] = {}

    def trainer(peer_id: str):  # type: ignore[no-untyped-def]
        async def train_local(state: dict[str, torch.Tensor], _v: int) -> LocalModel:
            await trio.sleep(took.get(peer_id, 1.0))
            return LocalModel({"w": state["w"] + 1.0, "steps": torch.tensor(1)}, 1)
        return train_local

    with trio.fail_after(1000):
        async with AsyncExitStack() as stack:
            transports = await open_connected(stack, net, [i.peer_id for i in IDS])
            async with trio.open_nursery() as nursery:
                for ident, transport in zip(IDS, transports, strict=True):
                    service = Federation(transport, FederatedPeer(ident, cfg, FedAvg(),
                                                                  start_state()),
                                         trainer(ident.peer_id),
                                         clock=FleetClock(30.0, 0.0, trio.current_time))
                    services[ident.peer_id] = service
                    await nursery.start(service.run)
                await trio.sleep(30.0)
                nursery.cancel_scope.cancel()
    server = services[A.peer_id]
    steps = [r for r in server.results if r.model is not None]
    senders = [p for r in steps for p in r.included]
    assert len(steps) >= 5  # ~ one step per 3 updates, driven by B
    assert senders.count(B.peer_id) > 3 * senders.count(C.peer_id) > 0
    # C's updates, a version or two stale by the time they land, count; nothing is refused
    assert not any(r.rejected for r in server.results)
    version = server.statistics().version
    assert all(s.statistics().version >= version - 3 for s in services.values())
    assert float(server.global_state["w"][0]) > 5  # the model moved with every step


async def test_async_robot_that_joins_late_is_answered_with_the_newest_global(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """C joins when the server is more than MAX_STALENESS versions past the version C starts
    from, and B has stopped pushing: C's first update(s), against a base the server no longer
    holds, are refused, but each refusal is answered with the newest global, so C is in step
    at its next push and its updates move the model (before the answer, C retried from its
    starting version until some step's broadcast happened to reach it; here none would)."""
    cfg = FederationConfig(enabled=True, deadline_s=DEADLINE, mode="async",
                           aggregator=A.peer_id, interval_s=30.0)
    net = MemoryNetwork(seed=15)
    b_stopped = trio.Event()
    services: dict[str, Federation] = {}

    def service(ident: Identity, transport: Transport) -> Federation:
        async def train_local(state: dict[str, torch.Tensor], _v: int) -> LocalModel:
            if ident is B and b_stopped.is_set():
                await trio.sleep_forever()
            await trio.sleep(1.0)
            return LocalModel({"w": state["w"] + 1.0, "steps": torch.tensor(1)}, 1)
        services[ident.peer_id] = Federation(
            transport, FederatedPeer(ident, cfg, FedAvg(), start_state()), train_local,
            clock=FleetClock(30.0, 0.0, trio.current_time))
        return services[ident.peer_id]

    with trio.fail_after(1000):
        async with AsyncExitStack() as stack:
            a, b = await open_connected(stack, net, [A.peer_id, B.peer_id])
            c = await stack.enter_async_context(net.open_transport(C.peer_id))  # not connected
            async with trio.open_nursery() as nursery:
                await nursery.start(service(A, a).run)
                await nursery.start(service(B, b).run)
                await trio.sleep(40.0)  # B alone: about one step per 3 s
                b_stopped.set()
                joined_at = services[A.peer_id].statistics().version
                await c.connect(a.listen_addrs()[0])
                await nursery.start(service(C, c).run)
                await trio.sleep(30.0)
                nursery.cancel_scope.cancel()
    assert joined_at > MAX_STALENESS + 1  # C's version 0 is gone from the server's history
    server = services[A.peer_id]
    refused = [x for r in server.results for x in r.rejected]
    assert {x.peer for x in refused} == {C.peer_id} and 1 <= len(refused) <= 2, refused
    assert all("too stale" in x.reason for x in refused)
    steps_with_c = [r for r in server.results if r.model is not None and C.peer_id in r.included]
    assert len(steps_with_c) >= 5  # C alone, in step: one step per 3 of its updates
    assert services[C.peer_id].statistics().version >= server.statistics().version - 1


async def test_async_robot_does_not_outrun_a_stalled_server(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """B trains in 0.05 s; the server takes 3 s over each step (its adopt hook, like a loaded
    daemon saving its checkpoint). B sends at most a buffer's worth of updates from one version
    and then waits for the next, so none of its updates waits in the server's inbox until its
    base is gone: nothing is refused (before, B filled the inbox from one version, and the
    updates read 9 steps later were refused as too stale)."""
    cfg = FederationConfig(enabled=True, deadline_s=DEADLINE, mode="async",
                           aggregator=A.peer_id, interval_s=30.0)
    net = MemoryNetwork(seed=16)

    async def train_local(state: dict[str, torch.Tensor], _v: int) -> LocalModel:
        await trio.sleep(0.05)
        return LocalModel({"w": state["w"] + 1.0, "steps": torch.tensor(1)}, 1)

    async def slow_step(_model: dict[str, torch.Tensor], _result: RoundResult) -> None:
        await trio.sleep(3.0)

    with trio.fail_after(1000):
        async with AsyncExitStack() as stack:
            a, b = await open_connected(stack, net, [A.peer_id, B.peer_id])
            clock = FleetClock(30.0, 0.0, trio.current_time)
            server = Federation(a, FederatedPeer(A, cfg, FedAvg(), start_state()), train_local,
                                clock=clock, adopt=slow_step)
            robot = Federation(b, FederatedPeer(B, cfg, FedAvg(), start_state()), train_local,
                               clock=clock)
            async with trio.open_nursery() as nursery:
                await nursery.start(server.run)
                await nursery.start(robot.run)
                await trio.sleep(60.0)
                nursery.cancel_scope.cancel()
    assert not any(r.rejected for r in server.results)
    assert server.statistics().version >= 15  # one step per 3 s stall: B kept it busy
    assert robot.statistics().version >= server.statistics().version - 1
