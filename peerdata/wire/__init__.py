"""The peerdata wire protocol: messages, codec, framing, signing, versions. Pure: no I/O.

Rule: this package never imports trio, torch or libp2p; proto/PROTOCOL.md is its spec.
"""

from __future__ import annotations

from peerdata.wire.codec import decode, decode_as, encode
from peerdata.wire.fields import CID_BYTES, ERROR_CODES
from peerdata.wire.messages import (
    MESSAGE_TYPES,
    ErrorReply,
    Feedback,
    Hello,
    ImageData,
    ImageItem,
    ImageOffer,
    ImageRequest,
    MemberCert,
    Message,
    OfferItem,
    OfferReply,
    RelayState,
    Reports,
    Revocations,
    Vote,
    content_id,
    verify_item,
)
from peerdata.wire.replay import ReplayGuard, ReplayGuardStats
from peerdata.wire.signing import (
    sign_feedback,
    sign_member_cert,
    sign_revocations,
    sign_vote,
    signing_payload,
    verify_authority_signature,
    verify_feedback,
    verify_vote,
)
from peerdata.wire.versions import (
    FEEDBACK_TOPIC,
    FETCH_PROTOCOL,
    FLEET_TOPIC,
    HELLO_PROTOCOL,
    MEMBER_PROTOCOL,
    MODEL_PROTOCOL,
    PROTOCOL_VERSION,
    RELAY_PROTOCOL,
    SHARE_PROTOCOL,
    VOTES_TOPIC,
)

__all__ = [
    "CID_BYTES", "ERROR_CODES", "FEEDBACK_TOPIC", "FETCH_PROTOCOL", "FLEET_TOPIC",
    "HELLO_PROTOCOL", "MEMBER_PROTOCOL", "MemberCert", "Revocations", "sign_member_cert",
    "sign_revocations", "verify_authority_signature",
    "MESSAGE_TYPES", "MODEL_PROTOCOL", "PROTOCOL_VERSION", "RELAY_PROTOCOL", "SHARE_PROTOCOL",
    "VOTES_TOPIC", "ErrorReply", "Feedback", "Hello", "ImageData", "ImageItem",
    "ImageOffer", "ImageRequest", "Message", "OfferItem", "OfferReply", "RelayState",
    "Reports", "ReplayGuard", "ReplayGuardStats", "Vote", "content_id", "decode", "decode_as",
    "encode",
    "sign_feedback", "sign_vote", "signing_payload", "verify_feedback", "verify_item",
    "verify_vote",
]
