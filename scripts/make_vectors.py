#!/usr/bin/env python3
"""Write the golden wire vectors in proto/vectors/ from fixed keys, nonces and timestamps.

Rule: deterministic. Running it twice writes identical files; `--check` exits 1 if the files on
disk differ from what this version of peerdata encodes (tests/test_wire_vectors.py runs it).

    .venv/bin/python scripts/make_vectors.py           # (re)write proto/vectors/
    .venv/bin/python scripts/make_vectors.py --check   # verify only
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from peerdata.identity import Identity
from peerdata.wire import (
    ErrorReply,
    Hello,
    ImageData,
    ImageItem,
    ImageOffer,
    ImageRequest,
    Message,
    OfferItem,
    OfferReply,
    RelayState,
    Reports,
    content_id,
    encode,
    sign_feedback,
    sign_member_cert,
    sign_revocations,
    sign_vote,
)

VECTORS_DIR = Path(__file__).resolve().parent.parent / "proto" / "vectors"

# Test keys only: the Ed25519 seeds 0x01*32, 0x02*32, 0x03*32. Never use them for a real node.
ALICE = Identity.from_private_bytes(b"\x01" * 32)
BOB = Identity.from_private_bytes(b"\x02" * 32)
CAROL = Identity.from_private_bytes(b"\x03" * 32)
IMAGE = b"\x89PNG\r\n\x1a\n peerdata test image"
CID = content_id(IMAGE)
TIMESTAMP = 1_750_000_000.25


def build_vectors() -> dict[str, Message]:
    """Name -> message for every golden vector (one or more per message type)."""
    item = OfferItem(cid=CID, size=len(IMAGE), has_label=True, origin=ALICE.peer_id,
                     origin_round=7, novel_votes=1, voters=(BOB.peer_id,), hops=1)
    return {
        "hello": Hello(protocol_version=1, peer_id=ALICE.peer_id, name="robot-a",
                       listen_addrs=(f"/ip4/127.0.0.1/tcp/4001/p2p/{ALICE.peer_id}",),
                       agent="peerdata/0.1.0", samples=60000, round_id=7),
        "image_offer": ImageOffer(sender=BOB.peer_id, round_id=3, items=(item,)),
        "offer_reply": OfferReply(wanted=(CID,)),
        "offer_reply_empty": OfferReply(wanted=()),
        "image_request": ImageRequest(cids=(CID,)),
        "image_data": ImageData(items=(ImageItem(cid=CID, data=IMAGE, label=3,
                                                 media_type="image/png"),)),
        "image_data_unlabelled": ImageData(items=(ImageItem(cid=CID, data=IMAGE, label=None,
                                                            media_type="image/png"),)),
        "relay_state": RelayState(cid=CID, origin=ALICE.peer_id, origin_round=7, novel_votes=1,
                                  voters=(BOB.peer_id,), hops=1),
        "vote": sign_vote(BOB, origin=ALICE.peer_id, cid=CID, round_id=7, novel=True,
                          score=3.75, timestamp=TIMESTAMP, nonce=bytes(range(16))),
        "feedback": sign_feedback(CAROL, origin=ALICE.peer_id, cid=CID, round_id=7,
                                  novel_votes=1, voters=(BOB.peer_id, CAROL.peer_id),
                                  timestamp=TIMESTAMP + 1, nonce=bytes(range(16, 32))),
        "error_reply": ErrorReply(code="not_found", message="no such image"),
        "reports": Reports(origin=ALICE.peer_id, votes=(
            sign_vote(BOB, origin=ALICE.peer_id, cid=CID, round_id=7, novel=True, score=3.75,
                      timestamp=TIMESTAMP, nonce=bytes(range(16))),
            sign_vote(BOB, origin=ALICE.peer_id, cid=content_id(IMAGE + b"2"), round_id=7,
                      novel=False, score=0.5, timestamp=TIMESTAMP, nonce=bytes(range(64, 80)))),
            feedback=(sign_feedback(CAROL, origin=ALICE.peer_id, cid=CID, round_id=7,
                                    novel_votes=1, voters=(BOB.peer_id, CAROL.peer_id),
                                    timestamp=TIMESTAMP + 1, nonce=bytes(range(16, 32))),)),
        # Fleet membership: alice is the fleet authority here.
        "member_cert": sign_member_cert(ALICE, member=BOB.peer_id, issued_at=TIMESTAMP,
                                        expires_at=TIMESTAMP + 86_400.0,
                                        nonce=bytes(range(32, 48))),
        "revocations": sign_revocations(ALICE, serial=2, revoked=(CAROL.peer_id,),
                                        issued_at=TIMESTAMP + 2, nonce=bytes(range(48, 64))),
    }


def build_invalid() -> dict[str, dict[str, str]]:
    """Name -> {hex, error}: bytes a decoder must refuse, and a substring of the error."""
    vote = encode(build_vectors()["vote"])
    return {
        "unknown_version": {"hex": (b"\x02" + vote[1:]).hex(),
                            "error": "unsupported protocol version 2"},
        "unknown_type": {"hex": (b"\x01\xee" + vote[2:]).hex(),
                         "error": "unknown message type tag 238"},
        "truncated": {"hex": vote[:-3].hex(), "error": "truncated"},
        "trailing_bytes": {"hex": (vote + b"\x00").hex(), "error": "trailing bytes"},
        "wrong_type_for_body": {"hex": (b"\x01\x07" + b"\x93\x01\x02\x03").hex(),
                                "error": "Vote must be a map"},
    }


def render() -> dict[str, str]:
    """File name -> file text for everything under proto/vectors/ except README."""
    files = {f"{name}.hex": encode(msg).hex() + "\n" for name, msg in build_vectors().items()}
    files["invalid.json"] = json.dumps(build_invalid(), indent=2, sort_keys=True) + "\n"
    return files


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare only; write nothing")
    args = parser.parse_args()
    stale = []
    for name, text in render().items():
        path = VECTORS_DIR / name
        current = path.read_text(encoding="ascii") if path.exists() else None
        if current != text:
            stale.append(name)
            if not args.check:
                path.write_text(text, encoding="ascii")
    if args.check and stale:
        print(f"stale vectors: {', '.join(stale)} (run scripts/make_vectors.py)", file=sys.stderr)
        return 1
    print(f"{'checked' if args.check else 'wrote'} {len(render())} files in {VECTORS_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
