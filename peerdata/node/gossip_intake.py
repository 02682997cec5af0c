"""Gossip into the node: Votes and Feedback on their topics, checked before anything else sees
them.

Rule: a message is delivered to `inbox` and forwarded only if it decodes as its topic's type
(`TOPIC_TYPES`), carries a valid signature of whom it names, and that signer and the sender are
fleet members; every refusal is counted and logged with the sender's peer ID. The inbox is
bounded: when full, messages are dropped and counted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio

from peerdata.config import LimitsConfig
from peerdata.errors import RemoteProtocolError, SignatureError
from peerdata.net.transport import GossipMessage, GossipValidator, Transport
from peerdata.node.logs import event
from peerdata.wire.codec import decode_as
from peerdata.wire.messages import Feedback, Message, Vote
from peerdata.wire.signing import verify_feedback, verify_vote
from peerdata.wire.versions import FEEDBACK_TOPIC, VOTES_TOPIC

log = logging.getLogger("peerdata.node")

GOSSIP_INBOX = 256
# What each gossip topic carries; anything else on it is refused.
TOPIC_TYPES: dict[str, type[Message]] = {VOTES_TOPIC: Vote, FEEDBACK_TOPIC: Feedback}


class GossipIntake:
    """Subscribes to our topics and passes valid messages to `inbox` (see the module rule)."""

    def __init__(self, transport: Transport, limits: LimitsConfig,
                 is_member: Callable[[str], bool], notify: Callable[[], None]) -> None:
        self._transport, self._limits = transport, limits
        self._is_member, self._notify = is_member, notify
        self._send, self.inbox = trio.open_memory_channel[tuple[str, Message]](GOSSIP_INBOX)
        self.counts = {"received": 0, "rejected": 0, "dropped": 0}

    def validator(self, topic: str) -> GossipValidator:
        """Refuse (neither deliver nor forward) gossip that is not a valid message of the
        topic's type, or that a non-member signed, published or forwarded to us; count and log
        each refusal with the sender's peer ID."""
        expected = TOPIC_TYPES[topic]

        def validate(sender: str, data: bytes, forwarder: str = "") -> bool:
            try:
                if forwarder and not self._is_member(forwarder):
                    raise RemoteProtocolError(f"forwarded by {forwarder}, not a fleet member")
                msg = decode_as(data, expected, limits=self._limits)
                # Signed by whom it names, and that signer a member: else not forwarded.
                try:
                    if isinstance(msg, Vote):
                        signer = msg.voter
                        verify_vote(msg)
                    else:
                        assert isinstance(msg, Feedback)
                        signer = msg.reporter
                        verify_feedback(msg)
                except SignatureError as exc:
                    raise RemoteProtocolError(f"bad signature: {exc}") from None
                if not self._is_member(signer) or not self._is_member(sender):
                    raise RemoteProtocolError(f"signer {signer} is not a fleet member")
            except RemoteProtocolError as exc:
                self.counts["rejected"] += 1
                event(log, logging.WARNING, "gossip_rejected", peer=sender, topic=topic,
                      error=str(exc)[:200])
                return False
            return True

        return validate

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Subscribe with the validators set; pass what arrives to `inbox` until cancelled."""
        channels = []
        for topic in TOPIC_TYPES:
            self._transport.set_gossip_validator(topic, self.validator(topic))
            channels.append(self._transport.subscribe(topic))
        async with trio.open_nursery() as nursery:
            for ch in channels:
                nursery.start_soon(self._read_topic, ch)
            task_status.started()

    async def _read_topic(self, channel: trio.MemoryReceiveChannel[GossipMessage]) -> None:
        async for msg in channel:
            try:
                decoded = decode_as(msg.data, TOPIC_TYPES[msg.topic], limits=self._limits)
            except RemoteProtocolError:
                continue  # the validator refused and counted it already
            self.counts["received"] += 1
            try:
                self._send.send_nowait((msg.sender, decoded))
            except trio.WouldBlock:
                self.counts["dropped"] += 1  # nobody reads gossip yet (the round logic will)
            self._notify()
