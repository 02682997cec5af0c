"""The federation service a node runs when `federation.enabled`: one exchange round per period.

Rule: a trio task in the node's nursery (`run(task_status=...)`), which owns nothing but its
inbox. Rounds are numbered by the fleet clock (`peerdata.federated.clock.FleetClock`: wall
time, with a stated skew tolerance), so separate processes agree on the round without talking;
local training is an injected async callable that the node backs with `trio.to_thread.run_sync`,
so this module never touches torch training.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import trio

from peerdata.config import NodeConfig
from peerdata.errors import PeerdataError
from peerdata.federated.asyncmode import AsyncExchange
from peerdata.federated.clock import FleetClock
from peerdata.federated.exchange import FederatedPeer, LocalModel, RoundResult
from peerdata.federated.inbox import ModelInbox, Serve, transport_sender
from peerdata.federated.tiers import TierHooks, play_multitier
from peerdata.identity import Identity
from peerdata.ml.aggregate import MultiTierConfig, StateDict, rule_by_name
from peerdata.net.transport import Transport

logger = logging.getLogger("peerdata.federated")

TrainLocal = Callable[[StateDict, int], Awaitable[LocalModel]]
"""(global model, round ID) -> this peer's model after local training on its own data."""

AdoptModel = Callable[[StateDict, RoundResult], Awaitable[None]]
"""(model to continue from, the round) -> None: the node loads the round's model into its own."""


@dataclass(frozen=True)
class FederationStats:
    """A snapshot for `peerdata status`: rounds played, model version, last round's outcome."""

    rounds: int
    version: int
    last_round: int | None
    last_included: tuple[str, ...]
    last_missing: tuple[str, ...]
    rejected_total: int
    bytes_sent: int
    bytes_received: int
    model_digest: str  # first 16 hex of SHA-256 over the model's tensors: equal = same model


def model_digest(state: StateDict) -> str:
    """A short fingerprint of a state dict (names, dtypes, shapes and values, in order)."""
    h = hashlib.sha256()
    for name, t in state.items():
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


class Federation:
    """Runs `FederatedPeer` rounds over a Transport at each of the fleet clock's boundaries."""

    def __init__(self, transport: Transport, peer: FederatedPeer, train_local: TrainLocal, *,
                 clock: FleetClock, serve: Serve | None = None,
                 adopt: AdoptModel | None = None,
                 on_round: Callable[[], None] | None = None,
                 tiers: TierHooks | None = None) -> None:
        self._transport = transport
        self._peer = peer
        self._train_local = train_local
        self._clock = clock
        self._serve = serve or transport.set_handler
        self._adopt = adopt
        self._on_round = on_round
        self._tiers = tiers
        if peer.config.strategy == "multitier" and tiers is None:
            raise PeerdataError("multitier federation needs TierHooks (label counts, training)")
        self._inbox = ModelInbox(peer.config.max_update_bytes)
        peer.hold = self._inbox.hold
        self._results: list[RoundResult] = []

    async def run(self, *, max_rounds: int | None = None, first_round: int = 1,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve MODEL_PROTOCOL and play a round at each round boundary (from `first_round`
        on) until cancelled, or until `max_rounds` were played."""
        self._inbox.attach(self._serve)
        send = transport_sender(self._transport)
        task_status.started()
        if self._peer.config.mode == "async":
            await AsyncExchange(self._peer, self._inbox, send, self._members, self._train_local,
                                self._record).run()
            return
        played, last = 0, first_round - 1
        while max_rounds is None or played < max_rounds:
            round_id, wait = self._clock.next_round(after=last)
            await trio.sleep(wait)
            last = round_id
            self._inbox.release()
            try:
                result = await self._play(round_id, self._members(), send)
            except PeerdataError as exc:  # our own misuse (e.g. an update over the size limit)
                logger.error("federated round %d failed: %s", round_id, exc)
                continue
            finally:
                played += 1
            logger.info("federated round %d: %d included, %d missing, %d rejected", round_id,
                        len(result.included), len(result.missing), len(result.rejected))
            await self._record(result)

    def _members(self) -> tuple[str, ...]:
        return (self._transport.peer_id, *self._transport.connected_peers())

    async def _record(self, result: RoundResult) -> None:
        """Keep a round's (or an asynchronous step's) result, adopt its model, wake waiters."""
        self._results.append(result)
        if result.model is not None and self._adopt is not None:
            await self._adopt(result.model, result)
        if self._on_round is not None:
            self._on_round()

    async def _play(self, round_id: int, peers: tuple[str, ...],
                    send: Callable[[str, bytes], Awaitable[None]]) -> RoundResult:
        collect, cfg = self._inbox.collect, self._peer.config
        if cfg.strategy == "multitier" and cfg.mode == "aggregator" and self._tiers is not None:
            tiers = MultiTierConfig(top_tier=3, et=cfg.local_epochs, er=cfg.local_epochs)
            return await play_multitier(self._peer, round_id, peers, self._tiers, tiers,
                                        send_update=send, collect=collect)
        local = await self._train_local(self._peer.global_state, round_id)
        if cfg.mode == "gossip":
            return await self._peer.gossip_round(round_id, peers, local, send_update=send,
                                                 collect=collect)
        return await self._peer.aggregator_round(round_id, peers, local, send_update=send,
                                                 collect=collect)

    @property
    def results(self) -> tuple[RoundResult, ...]:
        """Every round played so far, oldest first."""
        return tuple(self._results)

    @property
    def global_state(self) -> StateDict:
        """The latest global model (what the node should load into its own model)."""
        return self._peer.global_state

    def statistics(self) -> FederationStats:
        """Counters for the CLI."""
        last = self._results[-1] if self._results else None
        return FederationStats(
            rounds=len(self._results), version=self._peer.version,
            last_round=last.round_id if last else None,
            last_included=last.included if last else (),
            last_missing=last.missing if last else (),
            rejected_total=sum(len(r.rejected) for r in self._results),
            bytes_sent=sum(r.bytes_sent for r in self._results),
            bytes_received=sum(r.bytes_received for r in self._results),
            model_digest=model_digest(self._peer.global_state),
        )


class FederatedNode(Protocol):
    """What `start_federation` needs of a node (`peerdata.node.Node` has it)."""

    config: NodeConfig
    identity: Identity
    transport: Transport

    async def start_service(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """Start `fn(*args, task_status=...)` in the node's nursery."""
        ...

    def serve(self, protocol: str, handler: Callable[[str, bytes], Awaitable[bytes]]) -> None:
        """Answer `protocol` with `handler` behind the node's receive guard."""
        ...

    def wall_time(self) -> float:
        """Wall-clock seconds (what the fleet's round numbers come from)."""
        ...


async def start_federation(node: FederatedNode, global_state: StateDict,
                           train_local: TrainLocal, *,
                           wall_clock: Callable[[], float] | None = None,
                           adopt: AdoptModel | None = None,
                           on_round: Callable[[], None] | None = None,
                           tiers: TierHooks | None = None) -> Federation:
    """Start the federation service in `node`'s nursery, as `node.config.federation` says.

    Rounds follow `wall_clock` (default: the node's own wall clock, `node.wall_time`).

    `adopt`, if given, is awaited with each round's resulting model (not after a round that
    produced none, e.g. when the aggregator's global model missed the deadline); `on_round` is
    called after every round (the node wakes its `wait_until` waiters with it).

    Raises:
        PeerdataError: federation is not enabled, or its strategy is unknown.
    """
    cfg = node.config.federation
    if not cfg.enabled:
        raise PeerdataError("federation.enabled is false: model exchange is opt-in")
    peer = FederatedPeer(node.identity, cfg, rule_by_name(cfg.strategy), global_state)
    clock = FleetClock(cfg.interval_s, cfg.clock_skew_s, wall_clock or node.wall_time)
    federation = Federation(node.transport, peer, train_local, clock=clock, serve=node.serve,
                            adopt=adopt, on_round=on_round, tiers=tiers)
    await node.start_service(federation.run)
    return federation
