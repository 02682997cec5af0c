"""Protocol version, libp2p protocol IDs and gossip topics.

Rule: every string a peer must agree on lives here, and a breaking change to a message bumps
both PROTOCOL_VERSION and the IDs of the protocols that carry it (see proto/PROTOCOL.md).
"""

from __future__ import annotations

from typing import Final

PROTOCOL_VERSION: Final = 1
"""The version byte of every envelope this node writes and the only one it accepts."""

HELLO_PROTOCOL: Final = "/peerdata/hello/1.0.0"
"""Hello -> Hello: exchange names, addresses and progress after connecting."""

SHARE_PROTOCOL: Final = "/peerdata/share/1.0.0"
"""ImageOffer -> OfferReply: announce images (with their vote state) to a peer."""

FETCH_PROTOCOL: Final = "/peerdata/fetch/1.0.0"
"""ImageRequest -> ImageData: download the bytes of offered images."""

RELAY_PROTOCOL: Final = "/peerdata/relay/1.0.0"
"""RelayState -> OfferReply: pass vote state on for an image the next peer already holds."""

MODEL_PROTOCOL: Final = "/peerdata/model/1.0.0"
"""Reserved for federated model updates; no messages are defined for it in version 1."""

MEMBER_PROTOCOL: Final = "/peerdata/member/1.0.0"
"""MemberCert -> MemberCert: show fleet membership before anything else (fleet mode)."""

FEEDBACK_TOPIC: Final = "peerdata/feedback/1"
"""Gossip topic carrying signed Feedback (an image's final utility) to its origin."""

VOTES_TOPIC: Final = "peerdata/votes/1"
"""Gossip topic carrying every signed Vote, for monitoring and for origins whose chain broke."""

FLEET_TOPIC: Final = "peerdata/fleet/1"
"""Gossip topic carrying the fleet authority's signed Revocations (fleet mode)."""

REQUEST_PROTOCOLS: Final = (HELLO_PROTOCOL, SHARE_PROTOCOL, FETCH_PROTOCOL, RELAY_PROTOCOL,
                             MEMBER_PROTOCOL)
TOPICS: Final = (FEEDBACK_TOPIC, VOTES_TOPIC, FLEET_TOPIC)
