"""Multi-tier rounds over the network (MTF-Grasp), peer to peer, with the exchange's callables.

Rule: every peer is handed the same `TierPlan` (from `plan_tiers` on label histograms) and plays
its role: a low-tier peer waits for its leader's seed, fine-tunes `er` epochs and returns a delta
against the seed; a top-tier peer trains `et` epochs, sends the seed to its group, averages the
group, and either aggregates across the top tier (the elected aggregator) or sends its group
model there and adopts the global one. Each peer sends one model and receives one, except that a
leader sends one seed per follower: 2(N-1) transfers in all, as FedAvg. Whoever misses a phase's
deadline is left out; nothing waits for it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import trio

from peerdata.errors import RemoteProtocolError
from peerdata.federated.exchange import (
    Collect,
    FederatedPeer,
    LocalModel,
    RoundResult,
    SendUpdate,
    elect_aggregator,
)
from peerdata.federated.tensors import BlobOptions, blobs_from_state, state_from_blobs
from peerdata.federated.validate import EarlyUpdate, Expectation, UpdateValidator
from peerdata.ml.aggregate import (
    ClientUpdate,
    MultiTier,
    MultiTierConfig,
    StateDict,
    TierPlan,
    plan_tiers,
)
from peerdata.wire.model_update import decode_model_update

logger = logging.getLogger("peerdata.federated")

TrainFrom = Callable[[StateDict, int], Awaitable[LocalModel]]
"""(model to start from, epochs) -> this peer's model after that much local training."""


class HeldCollect:
    """A Collect that hands out only the expected senders' messages and holds the rest for a
    later phase (one inbox serves seeds, group updates and the global model)."""

    def __init__(self, collect: Collect) -> None:
        self._collect = collect
        self._held: list[tuple[str, bytes]] = []
        self._later: list[tuple[str, bytes]] = []  # non-plan messages met in the plan phase

    async def __call__(self, deadline: float, expected: frozenset[str]) -> list[tuple[str, bytes]]:
        ready = [m for m in self._held if m[0] in expected]
        self._held = [m for m in self._held if m[0] not in expected]
        missing = expected - {peer for peer, _ in ready}
        if missing:
            for message in await self._collect(deadline, missing):
                (ready if message[0] in expected else self._held).append(message)
        return ready

    async def plans(self, deadline: float, expected: frozenset[str]
                    ) -> list[tuple[str, bytes]]:
        """Like a call, but hand out only plan messages; the rest wait for `end_plans`."""
        out: list[tuple[str, bytes]] = []
        for sender, payload in await self(deadline, expected):
            try:
                kind = decode_model_update(payload, len(payload)).kind
            except RemoteProtocolError:
                kind = "plan"  # refused, with its reason, by the plan check
            (out if kind == "plan" else self._later).append((sender, payload))
        return out

    def end_plans(self) -> None:
        """The plan phase is over: what arrived for later phases is handed out from now on."""
        self._held += self._later
        self._later = []


async def multitier_round(
    peer: FederatedPeer, round_id: int, plan: TierPlan, tiers: MultiTierConfig,
    train: TrainFrom, *, send_update: SendUpdate, collect: Collect,
) -> RoundResult:
    """Play this peer's part of one multi-tier round; `RoundResult.model` is the model it keeps
    (a low-tier peer: its fine-tuned seed; a top-tier peer: the new global model)."""
    me = peer.peer_id
    start = trio.current_time()
    aggregator = elect_aggregator(round_id, list(plan.top))
    inbox = HeldCollect(collect)
    limit = peer.config.max_update_bytes
    dense = BlobOptions(peer.config.update_dtype)
    if me in plan.leader:
        leader = plan.leader[me]
        seeds, rejected = await peer.gather(
            inbox, start + peer.window(), frozenset({leader}), UpdateValidator(peer.global_state),
            Expectation(round_id, round_id, frozenset({"seed"}), limit))
        if not seeds:
            return RoundResult(round_id, "multitier", aggregator, None, peer.version, (),
                               tuple(rejected), (leader,), 0, 0)
        seed = seeds[0].state
        local = await train(seed, tiers.er)
        payload = peer.encode_update(round_id, "update", local.state, local, base=seed,
                                     base_version=round_id, options=peer.options)
        sent = await peer.send_all([leader], payload, send_update)
        return RoundResult(round_id, "multitier", aggregator, local.state, peer.version,
                           (leader,), tuple(rejected), (), sent * len(payload),
                           seeds[0].wire_bytes)
    # top tier: train the seed, hand it out, average the group
    local = await train(peer.global_state, tiers.et)
    followers = plan.group(me)[1:]
    seed_payload = peer.encode_update(round_id, "seed", local.state, local, base=None,
                                      base_version=round_id, options=dense)
    # followers apply their delta to the seed as they decoded it
    seed = state_from_blobs(blobs_from_state(local.state, dense), local.state)
    sent_bytes = len(seed_payload) * await peer.send_all(followers, seed_payload, send_update)
    lows, rejected = await peer.gather(
        inbox, start + peer.window(2), frozenset(followers), UpdateValidator(seed),
        Expectation(round_id, round_id, frozenset({"update"}), limit))
    members = [ClientUpdate(me, seed, local.num_samples)]
    members += [ClientUpdate(u.peer, u.state, u.num_samples) for u in lows]
    group_model, group_samples = MultiTier.group_model(members)
    received = sum(u.wire_bytes for u in lows)
    included = tuple(sorted(u.peer for u in lows))
    missing = set(followers) - set(included)
    validator = UpdateValidator(peer.global_state)
    if me == aggregator:
        tops = frozenset(plan.top) - {me}
        groups, bad = await peer.gather(
            inbox, start + peer.window(3), tops, validator,
            Expectation(round_id, peer.version, frozenset({"update"}), limit))
        step_two = [ClientUpdate(me, group_model, group_samples)]
        step_two += [ClientUpdate(g.peer, g.state, g.num_samples) for g in groups]
        new_state = MultiTier.global_model(step_two)
        payload = peer.encode_update(round_id, "global", new_state, None, base=None,
                                     base_version=peer.version + 1, options=dense)
        new_state = state_from_blobs(blobs_from_state(new_state, dense), peer.global_state)
        sent_bytes += len(payload) * await peer.send_all(sorted(tops), payload, send_update)
        peer.adopt(new_state)
        return RoundResult(
            round_id, "multitier", aggregator, new_state, peer.version,
            (me, *included, *sorted(g.peer for g in groups)), tuple(rejected + bad),
            tuple(sorted(missing | (tops - {g.peer for g in groups}))), sent_bytes,
            received + sum(g.wire_bytes for g in groups))
    group = LocalModel(group_model, group_samples)
    payload = peer.encode_update(round_id, "update", group_model, group, base=peer.global_state,
                                 base_version=peer.version, options=peer.options)
    sent_bytes += len(payload) * await peer.send_all([aggregator], payload, send_update)
    next_version = peer.version + 1
    globals_, bad = await peer.gather(
        inbox, start + peer.window(4), frozenset({aggregator}), validator,
        Expectation(round_id, next_version, frozenset({"global"}), limit))
    if not globals_:
        missing.add(aggregator)
        return RoundResult(round_id, "multitier", aggregator, None, peer.version, included,
                           tuple(rejected + bad), tuple(sorted(missing)), sent_bytes, received)
    peer.adopt(globals_[0].state, globals_[0].base_version)
    return RoundResult(round_id, "multitier", aggregator, globals_[0].state, peer.version,
                       (*included, aggregator), tuple(rejected + bad), tuple(sorted(missing)),
                       sent_bytes, received + globals_[0].wire_bytes)


@dataclass(frozen=True)
class TierHooks:
    """What a multi-tier round needs of the node beyond the exchange: its label histogram
    (never images) and local training from a given model for a given number of epochs."""

    label_counts: Callable[[], tuple[int, ...]]
    train: Callable[[StateDict, int, int], Awaitable[LocalModel]]  # (start, round, epochs)


async def exchange_plans(peer: FederatedPeer, round_id: int, peers: Sequence[str],
                         counts: tuple[int, ...], *, send_update: SendUpdate,
                         collect: HeldCollect) -> dict[str, tuple[int, ...]]:
    """Phase 0: send our label counts to every peer, and gather theirs until the deadline.

    Every peer plans from the counts that reached it; a peer whose counts did not arrive is
    left out of that peer's plan. Peers that see the fleet differently may plan differently for
    a round, which costs that round's missing updates, never a wrong model. Messages of later
    phases that arrive meanwhile are held in `collect` for them.
    """
    me = peer.peer_id
    others = frozenset(peers) - {me}
    await peer.send_all(sorted(others), peer.encode_plan(round_id, counts), send_update)
    expect = Expectation(round_id, 0, frozenset({"plan"}), peer.config.max_update_bytes)
    plans: dict[str, tuple[int, ...]] = {me: counts}
    deadline = trio.current_time() + peer.window()
    while others - set(plans) and trio.current_time() < deadline:
        batch = await collect.plans(deadline, others - set(plans))
        if not batch:
            break
        for sender, payload in batch:
            try:
                plans[sender] = UpdateValidator.check_plan(sender, payload, expect)
            except EarlyUpdate:
                if peer.hold is not None:
                    peer.hold(sender, payload)
            except RemoteProtocolError as exc:
                logger.warning("plan from %s rejected: %s", sender, exc)
    collect.end_plans()
    return plans


async def play_multitier(peer: FederatedPeer, round_id: int, peers: Sequence[str],
                         hooks: TierHooks, tiers: MultiTierConfig, *, send_update: SendUpdate,
                         collect: Collect) -> RoundResult:
    """One multi-tier round in a daemon: exchange label counts, plan, play our role."""
    inbox = HeldCollect(collect)
    counts = await exchange_plans(peer, round_id, peers, hooks.label_counts(),
                                  send_update=send_update, collect=inbox)
    plan = plan_tiers(counts, tiers)

    async def train(start: StateDict, epochs: int) -> LocalModel:
        return await hooks.train(start, round_id, epochs)

    return await multitier_round(peer, round_id, plan, tiers, train, send_update=send_update,
                                 collect=inbox)
