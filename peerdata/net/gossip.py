"""GossipSub on a running host, re-exposed as bounded trio channels of GossipMessage.

Rule: gossip is best effort. We refuse to publish what receivers would silently drop (over
MAX_GOSSIP_BYTES), but we never promise delivery: callers batch and re-send.

Peer score (py-libp2p 0.8.1's `ScoreParams`; what it applies is in docs/trust.md): a forwarder's
invalid messages (P4) and an application score set by the node (P6, `Gossip.set_peer_score`:
the vote reputation's kappa) are the only components used. A peer with more than
-PUBLISH_THRESHOLD recent invalid messages has its messages dropped unvalidated; a peer whose
whole score is under GRAYLIST_THRESHOLD (kappa < -0.5: it inverts its votes; or five recent
invalid messages) gets nothing we publish or forward, and its GRAFTs are refused.
"""

from __future__ import annotations

import inspect
import logging
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager

import trio
from google.protobuf.message import DecodeError
from libp2p.abc import IHost, INetStream
from libp2p.peer.id import ID
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.pubsub.rpc_queue import DefaultMaxMessageSize
from libp2p.pubsub.score import ScoreParams, TopicScoreParams
from libp2p.tools.anyio_service import background_trio_service

from peerdata.config import NetConfig
from peerdata.errors import LocalProtocolError
from peerdata.net.transport import (
    GOSSIP_SUBSCRIBER_QUEUE,
    MAX_GOSSIP_BYTES,
    GossipMessage,
    GossipValidator,
)

logger = logging.getLogger("peerdata.net")

GOSSIP_PROTOCOLS = ("/meshsub/1.1.0", "/meshsub/1.0.0")
assert MAX_GOSSIP_BYTES < DefaultMaxMessageSize  # receivers' limit on one pubsub RPC
# libp2p's default spam guard drops more than 10 messages a second per forwarding peer per
# topic. Our peers are authenticated members of one fleet and a sharing round produces bursts
# of votes well above that, so the guard is raised, not removed: a runaway peer is still capped.
MAX_MESSAGES_PER_TOPIC_PER_S = 1000.0

# Peer score (module rule). Invalid messages: -1 each, decayed 2% per heartbeat (half-life
# ~35 heartbeats), at most -100. Application score: 10 x the node's score (kappa, in [-1, 1]).
INVALID_MESSAGE_WEIGHT, INVALID_MESSAGE_CAP, INVALID_MESSAGE_DECAY = 1.0, 100.0, 0.98
APP_SCORE_WEIGHT = 10.0
# 0.8.1 compares the publish and gossip thresholds with the topic score alone (P1-P4 and
# behaviour penalties; the application score is left out for a single topic) and the graylist
# threshold with the whole score, so the graylist is not below the other two here.
GOSSIP_THRESHOLD = -5.0
PUBLISH_THRESHOLD = -10.0
GRAYLIST_THRESHOLD = -5.0


def score_params(app_score: Callable[[ID], float]) -> ScoreParams:
    """py-libp2p's score parameters for a fleet (module rule)."""
    return ScoreParams(
        p4_invalid_messages=TopicScoreParams(weight=INVALID_MESSAGE_WEIGHT,
                                             cap=INVALID_MESSAGE_CAP,
                                             decay=INVALID_MESSAGE_DECAY),
        p6_appl_slack_weight=APP_SCORE_WEIGHT,
        app_specific_score_fn=app_score,
        publish_threshold=PUBLISH_THRESHOLD,
        gossip_threshold=GOSSIP_THRESHOLD,
        graylist_threshold=GRAYLIST_THRESHOLD,
    )


class _AppScore:
    """The node's score of a peer (set late: the reputation exists after the transport)."""

    def __init__(self) -> None:
        self.fn: Callable[[str], float] = lambda _peer: 0.0

    def __call__(self, peer: ID) -> float:
        return max(-1.0, min(1.0, float(self.fn(peer.to_base58()))))


class _GuardedPubsub(Pubsub):
    """Pubsub that survives a peer's malformed RPC and never interleaves its own frames.

    Reading: py-libp2p 0.8.1 catches stream and framing errors but not protobuf's DecodeError,
    so one peer sending a length-prefixed frame that is not an RPC killed the whole daemon
    (seen in 20-robot swarms: 11 such frames in two runs, all from our own daemons). Such a
    peer's stream is reset and the peer dropped from pubsub, as py-libp2p does for its other
    read errors.

    Writing: `write_msg` is called from several tasks (publish, forwarding, heartbeat
    control) with no lock, and yamux's `write` releases its lock between chunks and while it
    waits for window, so two RPCs to one peer can interleave into the garbage above. One lock
    per stream serialises them (the likely origin of those frames; not proven).
    """

    async def write_msg(self, stream: INetStream, rpc_msg: rpc_pb2.RPC) -> bool:
        locks: weakref.WeakKeyDictionary[INetStream, trio.Lock] = self.__dict__.setdefault(
            "_write_locks", weakref.WeakKeyDictionary())
        lock = locks.get(stream)
        if lock is None:
            lock = locks[stream] = trio.Lock()
        async with lock:
            return bool(await super().write_msg(stream, rpc_msg))

    async def stream_handler(self, stream: INetStream) -> None:
        peer_id = stream.muxed_conn.peer_id
        try:
            await super().stream_handler(stream)
        except DecodeError as exc:
            logger.warning("peer %s sent a malformed pubsub RPC (%s); its stream is reset",
                           peer_id.to_base58(), exc)
            with trio.move_on_after(1.0) as scope:
                scope.shield = True
                try:
                    await stream.reset()
                except Exception:
                    logger.debug("pubsub stream reset failed", exc_info=True)
            self._handle_dead_peer(peer_id)


class Gossip:
    """Publish/subscribe over one GossipSub router; create with `open_gossip`."""

    def __init__(self, pubsub: Pubsub, nursery: trio.Nursery,
                 app_score: _AppScore | None = None) -> None:
        self._pubsub = pubsub
        self._nursery = nursery
        self._app_score = app_score or _AppScore()
        self._subscribers: dict[str, list[trio.MemorySendChannel[GossipMessage]]] = {}
        self._registering: set[trio.Event] = set()
        self.on_receive: Callable[[GossipMessage], None] = lambda _msg: None

    async def publish(self, topic: str, data: bytes) -> None:
        """Gossip `data` on `topic`; raise LocalProtocolError if it is too large to deliver."""
        if len(data) > MAX_GOSSIP_BYTES:
            raise LocalProtocolError(
                f"gossip message of {len(data)} bytes exceeds {MAX_GOSSIP_BYTES} "
                "(receivers would drop it); send it as a request instead"
            )
        # A subscribe() that has not reached libp2p yet must not miss our own message.
        for registered in list(self._registering):
            await registered.wait()
        await self._pubsub.publish(topic, data)

    def subscribe(self, topic: str) -> trio.MemoryReceiveChannel[GossipMessage]:
        """Return a new bounded channel that receives every message delivered on `topic`."""
        send, receive = trio.open_memory_channel[GossipMessage](GOSSIP_SUBSCRIBER_QUEUE)
        first = topic not in self._subscribers
        self._subscribers.setdefault(topic, []).append(send)
        if first:
            registered = trio.Event()
            self._registering.add(registered)
            self._nursery.start_soon(self._forward, topic, registered)
        return receive

    def set_peer_score(self, score: Callable[[str], float]) -> None:
        """The application's score of a peer (its peer ID -> [-1, 1]; 0 = neutral); see the
        module rule for what GossipSub does with it. Called on the event loop, often: cheap."""
        self._app_score.fn = score

    def peer_score(self, peer_id: str, topic: str) -> float:
        """GossipSub's whole score of a peer on a topic (as its graylist sees it)."""
        scorer = getattr(self._pubsub.router, "scorer", None)
        return 0.0 if scorer is None else float(scorer.score(ID.from_base58(peer_id), [topic]))

    def set_validator(self, topic: str, validator: GossipValidator) -> None:
        """Accept or reject each message on `topic` before it is delivered or forwarded.

        A validator that takes a third argument also gets the peer that forwarded the message
        to us (not always its publisher): a fleet must not take gossip relayed by strangers.
        """
        with_forwarder = _takes_forwarder(validator)

        def check(forwarder: ID, msg: rpc_pb2.Message) -> bool:
            try:
                sender = ID(msg.from_id).to_base58()
                if with_forwarder:
                    return bool(validator(sender, msg.data, forwarder.to_base58()))  # type: ignore[call-arg]
                return bool(validator(sender, msg.data))
            except Exception:
                logger.warning("gossip validator for %s raised; message rejected", topic,
                               exc_info=True)
                return False

        self._pubsub.set_topic_validator(topic, check, False)

    async def _forward(self, topic: str, registered: trio.Event) -> None:
        try:
            subscription = await self._pubsub.subscribe(topic)
        finally:
            registered.set()
            self._registering.discard(registered)
        while True:
            msg = await subscription.get()
            message = GossipMessage(topic=topic, sender=ID(msg.from_id).to_base58(),
                                    data=msg.data)
            self.on_receive(message)
            live = []
            for send in self._subscribers[topic]:
                try:
                    # Waiting here is the backpressure: libp2p's own queue behind us then
                    # fills and drops, which is the best-effort contract.
                    await send.send(message)
                    live.append(send)
                except trio.BrokenResourceError:
                    continue  # that subscriber closed its channel
            self._subscribers[topic] = live


def _takes_forwarder(validator: GossipValidator) -> bool:
    try:
        params = inspect.signature(validator).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 3 or any(p.kind is p.VAR_POSITIONAL for p in params)


@asynccontextmanager
async def open_gossip(host: IHost, net: NetConfig) -> AsyncIterator[Gossip]:
    """Run GossipSub (heartbeat `net.gossip_heartbeat_s`) on `host` for the block."""
    router = GossipSub(
        protocols=list(GOSSIP_PROTOCOLS),  # type: ignore[arg-type]
        degree=6,
        degree_low=4,
        degree_high=12,
        heartbeat_interval=net.gossip_heartbeat_s,  # type: ignore[arg-type]
        heartbeat_initial_delay=min(0.1, net.gossip_heartbeat_s),
        max_messages_per_topic_per_second=MAX_MESSAGES_PER_TOPIC_PER_S,
        score_params=score_params(app_score := _AppScore()),
    )
    pubsub = _GuardedPubsub(host, router)  # strict signing (default): sender IDs are verified
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(background_trio_service(pubsub))
        await stack.enter_async_context(background_trio_service(router))
        await pubsub.wait_until_ready()
        nursery = await stack.enter_async_context(trio.open_nursery())
        try:
            yield Gossip(pubsub, nursery, app_score)
        finally:
            nursery.cancel_scope.cancel()
