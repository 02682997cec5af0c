"""The federation service a node runs when `federation.enabled`: one exchange round per period.

Rule: a trio task in the node's nursery (`run(task_status=...)`), which owns nothing but its
inbox. Rounds are numbered from an injected clock (`round_id = floor(clock() / interval_s)`),
so peers agree on the round without talking; local training is an injected async callable that
the node backs with `trio.to_thread.run_sync`, so this module never touches torch training.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import trio

from peerdata.config import NodeConfig
from peerdata.errors import PeerdataError
from peerdata.federated.exchange import FederatedPeer, LocalModel, RoundResult
from peerdata.federated.inbox import ModelInbox, transport_sender
from peerdata.identity import Identity
from peerdata.ml.aggregate import StateDict, rule_by_name
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


class Federation:
    """Runs `FederatedPeer` rounds over a Transport every `interval_s` seconds."""

    def __init__(self, transport: Transport, peer: FederatedPeer, train_local: TrainLocal, *,
                 interval_s: float, mode: str, max_update_bytes: int,
                 clock: Callable[[], float] = trio.current_time,
                 adopt: AdoptModel | None = None) -> None:
        if interval_s <= 0:
            raise PeerdataError("federation interval must be > 0")
        self._transport = transport
        self._peer = peer
        self._train_local = train_local
        self._interval_s = interval_s
        self._mode = mode
        self._clock = clock
        self._adopt = adopt
        self._inbox = ModelInbox(max_update_bytes)
        self._results: list[RoundResult] = []

    async def run(self, *, max_rounds: int | None = None,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve MODEL_PROTOCOL and play a round at each period boundary until cancelled."""
        self._inbox.attach(self._transport)
        send = transport_sender(self._transport)
        task_status.started()
        played = 0
        while max_rounds is None or played < max_rounds:
            now = self._clock()
            round_id = math.floor(now / self._interval_s) + 1
            await trio.sleep(round_id * self._interval_s - now)
            peers = (self._transport.peer_id, *self._transport.connected_peers())
            local = await self._train_local(self._peer.global_state, round_id)
            try:
                if self._mode == "gossip":
                    result = await self._peer.gossip_round(
                        round_id, peers, local, send_update=send, collect=self._inbox.collect)
                else:
                    result = await self._peer.aggregator_round(
                        round_id, peers, local, send_update=send, collect=self._inbox.collect)
            except PeerdataError as exc:  # our own misuse (e.g. an update over the size limit)
                logger.error("federated round %d failed: %s", round_id, exc)
                continue
            finally:
                played += 1
            self._results.append(result)
            if result.model is not None and self._adopt is not None:
                await self._adopt(result.model, result)
            logger.info("federated round %d: %d included, %d missing, %d rejected", round_id,
                        len(result.included), len(result.missing), len(result.rejected))

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
        )


class FederatedNode(Protocol):
    """What `start_federation` needs of a node (`peerdata.node.Node` has it)."""

    config: NodeConfig
    identity: Identity
    transport: Transport

    async def start_service(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """Start `fn(*args, task_status=...)` in the node's nursery."""
        ...


async def start_federation(node: FederatedNode, global_state: StateDict,
                           train_local: TrainLocal, *,
                           clock: Callable[[], float] = trio.current_time,
                           adopt: AdoptModel | None = None) -> Federation:
    """Start the federation service in `node`'s nursery, as `node.config.federation` says.

    `adopt`, if given, is awaited with each round's resulting model (not after a round that
    produced none, e.g. when the aggregator's global model missed the deadline).

    Raises:
        PeerdataError: federation is not enabled, or its strategy is unknown.
    """
    cfg = node.config.federation
    if not cfg.enabled:
        raise PeerdataError("federation.enabled is false: model exchange is opt-in")
    peer = FederatedPeer(node.identity, cfg, rule_by_name(cfg.strategy), global_state)
    federation = Federation(node.transport, peer, train_local, interval_s=cfg.interval_s,
                            mode=cfg.mode, max_update_bytes=cfg.max_update_bytes, clock=clock,
                            adopt=adopt)
    await node.start_service(federation.run)
    return federation
