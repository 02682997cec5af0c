"""One federated round between peers, with no trusted server: elected aggregator, or gossip.

Rule: the algorithm never touches the network itself. It is handed two async callables
(hivemind-style), `send_update(peer, payload)` and `collect(deadline, expected)`, so it runs the
same over libp2p, over `peerdata.testing.memory_network`, or in a unit test. Deadlines are
durations from the round's local start on `trio.current_time()`, widened by the fleet clock's
skew tolerance (`federation.clock_skew_s`, see `peerdata.federated.clock`); whoever misses the
deadline is left out of the round and never blocks it.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import trio

from peerdata.config import FederationConfig
from peerdata.errors import LocalProtocolError, TransportError
from peerdata.federated.tensors import (
    BlobOptions,
    ErrorFeedback,
    blobs_from_state,
    state_from_blobs,
)
from peerdata.federated.validate import (
    Expectation,
    Hold,
    ReceivedUpdate,
    Rejection,
    UpdateValidator,
)
from peerdata.identity import Identity
from peerdata.ml.aggregate import (
    AggregationRule,
    ClientUpdate,
    Clustered,
    StateDict,
    aggregate_from,
)
from peerdata.wire.model_update import TensorBlob, encode_model_update, sign_model_update

logger = logging.getLogger("peerdata.federated")

SendUpdate = Callable[[str, bytes], Awaitable[None]]
"""Deliver one encoded ModelUpdate to a peer; raises TransportError when it cannot."""

Collect = Callable[[float, frozenset[str]], Awaitable[list[tuple[str, bytes]]]]
"""Return (sender, payload) pairs received until the absolute trio time `deadline`, or earlier
once every peer in `expected` has sent something."""


@dataclass(frozen=True)
class LocalModel:
    """This peer's model after local training, and what it may tell others about its data."""

    state: StateDict
    num_samples: int
    label_counts: tuple[int, ...] = ()
    tag: str = ""


@dataclass(frozen=True)
class RoundResult:
    """What one round did, for the node's statistics and the CLI."""

    round_id: int
    mode: str
    aggregator: str | None
    model: StateDict | None  # the model to continue from; None = keep the local one
    version: int  # global model version after the round
    included: tuple[str, ...]
    rejected: tuple[Rejection, ...]
    missing: tuple[str, ...]  # expected peers that sent nothing before the deadline
    bytes_sent: int
    bytes_received: int
    notes: tuple[str, ...] = field(default=())


def _grouped(models: dict[str, StateDict]) -> list[tuple[StateDict, list[str]]]:
    """Peers grouped by the (identical object) model they receive, in peer order."""
    groups: dict[int, tuple[StateDict, list[str]]] = {}
    for peer in sorted(models):
        groups.setdefault(id(models[peer]), (models[peer], []))[1].append(peer)
    return list(groups.values())


def elect_aggregator(round_id: int, peers: Sequence[str]) -> str:
    """The round's aggregator: the peer with the smallest SHA-256 of "round:peer".

    Every peer with the same member list computes the same answer, with no messages, and the
    role rotates pseudo-randomly from round to round.
    """
    if not peers:
        raise LocalProtocolError("cannot elect an aggregator among no peers")
    return min(peers, key=lambda p: hashlib.sha256(f"{round_id}:{p}".encode()).digest())


class FederatedPeer:
    """One node's side of the exchange: signs, sends, collects, validates and aggregates."""

    def __init__(self, identity: Identity, config: FederationConfig, rule: AggregationRule,
                 global_state: StateDict, version: int = 0) -> None:
        self._identity = identity
        self._config = config
        self._rule = rule
        self._options = BlobOptions(config.update_dtype, config.topk_fraction)
        self._memory = ErrorFeedback()  # what top-k left out of our deltas, sent later
        self.global_state = {k: v.detach().clone() for k, v in global_state.items()}
        self.version = version
        self.hold: Hold | None = None  # where updates a round early wait (the inbox's hold)

    def window(self, phases: int = 1) -> float:
        """Seconds from our round start to the end of phase `phases`: one deadline per phase,
        plus the clock skew tolerance for each (a peer's round may start that much later)."""
        return phases * (self._config.deadline_s + self._config.clock_skew_s)

    @property
    def peer_id(self) -> str:
        """This node's peer ID."""
        return self._identity.peer_id

    @property
    def config(self) -> FederationConfig:
        """The federation settings this peer runs with."""
        return self._config

    @property
    def options(self) -> BlobOptions:
        """How our updates go on the wire (dtype, top-k)."""
        return self._options

    def encode_update(self, round_id: int, kind: str, state: StateDict,
                      local: LocalModel | None, *, base: StateDict | None, base_version: int,
                      options: BlobOptions) -> bytes:
        """Our signed ModelUpdate: `state`, or `state - base` when a base is given.

        Raises:
            LocalProtocolError: the encoding exceeds federation.max_update_bytes.
        """
        if base is not None and options.topk_fraction < 1 and kind != "global":
            blobs = self._memory.blobs(state, options, base)
        else:
            blobs = blobs_from_state(state, options, base)
        return self.encode_blobs(round_id, kind, blobs, local, is_delta=base is not None,
                                 base_version=base_version)

    def encode_blobs(self, round_id: int, kind: str, blobs: tuple[TensorBlob, ...],
                     local: LocalModel | None, *, is_delta: bool, base_version: int) -> bytes:
        """Our signed ModelUpdate carrying `blobs` as they are.

        Raises:
            LocalProtocolError: the encoding exceeds federation.max_update_bytes.
        """
        msg = sign_model_update(
            self._identity, round_id=round_id, base_version=base_version, kind=kind,
            is_delta=is_delta, num_samples=local.num_samples if local else 1,
            label_counts=local.label_counts if local else (), tag=local.tag if local else "",
            tensors=blobs,
        )
        payload = encode_model_update(msg)
        if len(payload) > self._config.max_update_bytes:
            raise LocalProtocolError(
                f"our {kind} update is {len(payload)} bytes, over federation.max_update_bytes "
                f"{self._config.max_update_bytes}"
            )
        return payload

    def encode_plan(self, round_id: int, counts: tuple[int, ...]) -> bytes:
        """Our signed multi-tier plan message: label counts, and no weights."""
        empty = TensorBlob(name="plan", dtype="int64", shape=(0,), encoding="dense", data=b"",
                           indices=b"")
        return encode_model_update(sign_model_update(
            self._identity, round_id=round_id, base_version=0, kind="plan", is_delta=False,
            num_samples=max(1, sum(counts)), label_counts=counts, tag="", tensors=(empty,)))

    def choose_aggregator(self, round_id: int, peers: Sequence[str]) -> str:
        """The configured aggregator if it takes part, else the elected one."""
        members = sorted(set(peers) | {self.peer_id})
        configured = self._config.aggregator
        return configured if configured in members else elect_aggregator(round_id, members)

    async def aggregator_round(self, round_id: int, peers: Sequence[str], local: LocalModel, *,
                               send_update: SendUpdate, collect: Collect) -> RoundResult:
        """Send our update to the round's aggregator and adopt the global model it returns;
        if we are the aggregator, collect, validate, aggregate and send the global model."""
        start = trio.current_time()
        others = frozenset(peers) - {self.peer_id}
        aggregator = self.choose_aggregator(round_id, peers)
        validator = UpdateValidator(self.global_state)
        if aggregator == self.peer_id:
            expect = Expectation(round_id, self.version, frozenset({"update"}),
                                 self._config.max_update_bytes)
            accepted, rejected = await self.gather(
                collect, start + self.window(), others, validator, expect)
            updates = [ClientUpdate(self.peer_id, local.state, local.num_samples, local.tag)]
            updates += [ClientUpdate(u.peer, u.state, u.num_samples, u.tag or None)
                        for u in accepted]
            models = self.aggregate_for_each(updates, sorted(others))
            included = tuple(sorted(u.peer for u in accepted))
            new_state, sent_bytes = await self.send_globals(
                round_id, models, frozenset(included), send_update)
            self.adopt(new_state)
            return RoundResult(
                round_id, "aggregator", aggregator, new_state, self.version,
                (self.peer_id, *included), tuple(rejected),
                tuple(sorted(others - set(included) - {r.peer for r in rejected})),
                sent_bytes, sum(u.wire_bytes for u in accepted),
            )
        # clustered: peers hold different cluster models, so an update is the full model
        clustered = isinstance(self._rule, Clustered)
        payload = self.encode_update(
            round_id, "update", local.state, local,
            base=None if clustered else self.global_state, base_version=self.version,
            options=BlobOptions(self._config.update_dtype) if clustered else self._options)
        sent = await self.send_all([aggregator], payload, send_update)
        # The round's aggregator is authoritative: its global model for this round is adopted
        # with its version, so a robot that joined late (or missed rounds) is in step again
        # after one round (its delta, against an older version, was refused this once).
        expect = Expectation(round_id, self.version + 1, frozenset({"global"}),
                             self._config.max_update_bytes)
        fresh, rejected = await self.gather(
            collect, start + self.window(2), frozenset({aggregator}), validator, expect)
        if not fresh:
            logger.warning("round %d: no global model from %s before the deadline",
                           round_id, aggregator)
            return RoundResult(round_id, "aggregator", aggregator, None, self.version, (),
                               tuple(rejected), (aggregator,), sent * len(payload),
                               0)
        self.adopt(fresh[0].state, fresh[0].base_version)
        return RoundResult(round_id, "aggregator", aggregator, fresh[0].state, self.version,
                           (aggregator,), tuple(rejected), (), sent * len(payload),
                           fresh[0].wire_bytes)

    async def send_globals(self, round_id: int, models: dict[str, StateDict],
                           in_step: frozenset[str], send_update: SendUpdate
                           ) -> tuple[StateDict, int]:
        """Send each peer its model of the round; return ours as the others decode it (so
        every peer holds the same bytes) and the bytes sent.

        Dense in the update dtype; with top-k configured (and not clustered), the peers in
        `in_step` (we accepted their delta, so they hold our version) get the top-k delta from
        our model, and the others the new model whole, in float32.
        """
        version = self.version + 1
        groups = _grouped(models)
        sent = 0
        # clustered: a peer holds its cluster's model, not ours, so a delta from ours is wrong
        if self._options.topk_fraction < 1 and not isinstance(self._rule, Clustered):
            blobs = blobs_from_state(models[self.peer_id], self._options, self.global_state)
            new_state = state_from_blobs(blobs, self.global_state, self.global_state)
            delta = self.encode_blobs(round_id, "global", blobs, None, is_delta=True,
                                      base_version=version)
            whole = self.encode_update(round_id, "global", new_state, None, base=None,
                                       base_version=version, options=BlobOptions("float32"))
            receivers = [p for p in groups[0][1] if p != self.peer_id]
            for payload, to in ((delta, [p for p in receivers if p in in_step]),
                                (whole, [p for p in receivers if p not in in_step])):
                sent += len(payload) * await self.send_all(to, payload, send_update)
            return new_state, sent
        dense = BlobOptions(self._config.update_dtype)
        for model, receivers in groups:
            payload = self.encode_update(round_id, "global", model, None, base=None,
                                         base_version=version, options=dense)
            sent += len(payload) * await self.send_all(
                [p for p in receivers if p != self.peer_id], payload, send_update)
        return state_from_blobs(blobs_from_state(models[self.peer_id], dense),
                                self.global_state), sent

    def aggregate_for_each(self, updates: Sequence[ClientUpdate], others: Sequence[str]
                           ) -> dict[str, StateDict]:
        """The model each peer continues from: the rule's aggregate for all, or (clustered) the
        model of the peer's cluster; a peer that sent nothing gets the everyone-model."""
        if isinstance(self._rule, Clustered):
            result = self._rule.aggregate_clusters(updates, reference=self.global_state)
            return {p: result.model_for(p) if p in result.assignment else result.global_model
                    for p in (self.peer_id, *others)}
        model = aggregate_from(self._rule, list(updates), self.global_state)
        return dict.fromkeys((self.peer_id, *others), model)

    async def gossip_round(self, round_id: int, neighbours: Sequence[str], local: LocalModel, *,
                           send_update: SendUpdate, collect: Collect) -> RoundResult:
        """Send our full model to each neighbour, then combine ours with what arrived in time
        using the configured rule (FedAvg = gossip averaging, median = robust gossip)."""
        start = trio.current_time()
        others = frozenset(neighbours) - {self.peer_id}
        full = BlobOptions(self._config.update_dtype)
        payload = self.encode_update(round_id, "gossip", local.state, local, base=None,
                                     base_version=round_id, options=full)
        sent = await self.send_all(sorted(others), payload, send_update)
        validator = UpdateValidator(local.state)
        expect = Expectation(round_id, round_id, frozenset({"gossip"}),
                             self._config.max_update_bytes)
        accepted, rejected = await self.gather(
            collect, start + self.window(), others, validator, expect)
        updates = [ClientUpdate(self.peer_id, local.state, local.num_samples)]
        updates += [ClientUpdate(u.peer, u.state, u.num_samples) for u in accepted]
        new_state = self._rule.aggregate(updates)
        self.global_state = {k: v.detach().clone() for k, v in new_state.items()}
        included = tuple(sorted(u.peer for u in accepted))
        return RoundResult(
            round_id, "gossip", None, new_state, self.version, (self.peer_id, *included),
            tuple(rejected), tuple(sorted(others - set(included) - {r.peer for r in rejected})),
            sent * len(payload), sum(u.wire_bytes for u in accepted),
        )

    async def gather(
        self, collect: Collect, deadline: float, expected: frozenset[str],
        validator: UpdateValidator, expect: Expectation,
    ) -> tuple[list[ReceivedUpdate], list[Rejection]]:
        """Collect until every expected peer sent a valid update or the deadline passes.

        Invalid or stale messages (e.g. a straggler's update from an earlier round still in
        the inbox) are rejected and logged, and waiting goes on for that peer.
        """
        accepted: dict[str, ReceivedUpdate] = {}
        rejected: list[Rejection] = []
        while True:
            waiting = expected - set(accepted)
            if not waiting or trio.current_time() >= deadline:
                return list(accepted.values()), rejected
            batch = await collect(deadline, waiting)
            if not batch:
                return list(accepted.values()), rejected
            good, bad = validator.screen(batch, expect, allowed=expected,
                                         already=frozenset(accepted), hold=self.hold)
            rejected += bad
            accepted.update((update.peer, update) for update in good)

    def adopt(self, state: StateDict, version: int | None = None) -> None:
        """Make `state` the global model, as `version` (default: ours plus one)."""
        self.global_state = {k: v.detach().clone() for k, v in state.items()}
        self.version = self.version + 1 if version is None else version

    async def send_all(self, peers: Sequence[str], payload: bytes,
                        send_update: SendUpdate) -> int:
        """Send `payload` to every peer concurrently; count the deliveries that succeeded.

        A peer that cannot be reached is logged and skipped; sending stops at the deadline.
        """
        delivered = 0

        async def one(peer: str) -> None:
            nonlocal delivered
            try:
                await send_update(peer, payload)
                delivered += 1
            except TransportError as exc:
                logger.warning("model update to %s not delivered: %s", peer, exc)

        with trio.move_on_after(self._config.deadline_s):
            async with trio.open_nursery() as nursery:
                for peer in peers:
                    nursery.start_soon(one, peer)
        return delivered
