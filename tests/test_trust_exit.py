"""The exit rule over real libp2p on 127.0.0.1: a hostile peer never gets a raw local image.

A robot holds the astronaut photo (a real face) as a raw local sample and its privacy-filter
output. A fresh libp2p key asks for the raw content ID every way the protocol allows (/fetch,
/relay, /share) and is answered exactly as for a content ID the robot never held; `send` of the
raw file delivers only the blurred filter output; every byte the hostile peer receives is
searched for the raw image.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import trio

from peerdata.config import NetConfig, NodeConfig
from peerdata.control.commands import make_dispatch
from peerdata.control.protocol import ControlRequest
from peerdata.identity import Identity, create_identity
from peerdata.ml.privacy import FilteredImage, PrivacyFilter
from peerdata.ml.privacy.imageformat import encode_png
from peerdata.net.libp2p_transport import Libp2pTransport, open_libp2p_transport
from peerdata.node.node import Node, open_node
from peerdata.store import Sample, Store, content_id
from peerdata.wire import (
    ErrorReply,
    ImageData,
    ImageOffer,
    ImageRequest,
    OfferItem,
    OfferReply,
    RelayState,
    decode,
    encode,
)
from peerdata.wire.versions import FETCH_PROTOCOL, RELAY_PROTOCOL, SHARE_PROTOCOL

skimage_data = pytest.importorskip("skimage.data", reason="scikit-image (dev extra) has astronaut")

NET = NetConfig(connect_timeout_s=5.0, request_timeout_s=20.0, reconnect_initial_s=0.2,
                reconnect_max_s=1.0)


def astronaut_png() -> bytes:
    bgr = cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2BGR)
    return encode_png(cv2.resize(bgr, (256, 256), interpolation=cv2.INTER_AREA))


def add_sample(store: Store, data: bytes, provenance: Any) -> bytes:
    cid = store.put_blob(data, provenance)
    store.add_sample(Sample(cid=cid, source="local", label=1, origin=None, domain=None,
                            prediction=None, confidence=None, embedding=None,
                            observed_round=0, created_at=0.0))
    return cid


class Hostile:
    """A fresh libp2p key that records every byte it is sent."""

    def __init__(self, transport: Libp2pTransport) -> None:
        self.t = transport
        self.received: list[bytes] = []
        self.offers: list[ImageOffer] = []
        self.offer_seen = trio.Event()

        async def on_share(peer_id: str, payload: bytes) -> bytes:
            self.received.append(payload)
            offer = decode(payload)
            assert isinstance(offer, ImageOffer)
            self.offers.append(offer)
            self.offer_seen.set()
            return encode(OfferReply(wanted=tuple(i.cid for i in offer.items)))

        async def on_fetch(peer_id: str, payload: bytes) -> bytes:
            self.received.append(payload)
            return encode(ImageData(items=()))

        transport.set_handler(SHARE_PROTOCOL, on_share)
        transport.set_handler(FETCH_PROTOCOL, on_fetch)

    async def ask(self, peer: str, protocol: str, msg: Any) -> bytes:
        reply = await self.t.request(peer, protocol, encode(msg))
        self.received.append(reply)
        return reply


@asynccontextmanager
async def robot_and_hostile(home: Path) -> AsyncIterator[tuple[Node, Hostile]]:
    identity = create_identity(home)
    async with open_node(home, NodeConfig(name="robot", net=NET), identity=identity) as node:
        async with open_libp2p_transport(Identity.generate().private_key_bytes, NET,
                                         node.config.limits) as bad:
            hostile = Hostile(bad)
            await bad.connect(node.transport.listen_addrs()[0])
            yield node, hostile


async def test_a_raw_local_image_is_answered_like_an_unknown_one(tmp_path: Path) -> None:
    raw = astronaut_png()
    privacy = PrivacyFilter.from_config(NodeConfig().privacy)
    filtered = privacy.filter_image(raw)
    assert isinstance(filtered, FilteredImage) and filtered.regions  # the face was found
    assert filtered.png != raw
    unknown = content_id(b"never held by anyone")
    with trio.fail_after(60):
        async with robot_and_hostile(tmp_path / "robot") as (node, hostile):
            store, me = node.store, node.peer_id
            raw_cid = add_sample(store, raw, "local")
            safe_cid = add_sample(store, filtered.png, "filtered")
            assert not store.may_leave(raw_cid) and store.may_leave(safe_cid)

            # /fetch: a raw cid is left out of the reply, exactly like an unknown one.
            for cids in ((raw_cid,), (unknown,), (raw_cid, unknown)):
                assert await hostile.ask(me, FETCH_PROTOCOL, ImageRequest(cids=cids)) == \
                    encode(ImageData(items=()))
            # /relay: "not found" for both, byte for byte.
            relay = {c: await hostile.ask(me, RELAY_PROTOCOL, RelayState(
                cid=c, origin=hostile.t.peer_id, origin_round=1, novel_votes=0, voters=(),
                hops=0)) for c in (raw_cid, unknown)}
            assert relay[raw_cid] == relay[unknown]
            assert isinstance(decode(relay[raw_cid]), ErrorReply)
            # /share: the robot "wants" a raw cid, as it wants an unknown one; it does not
            # want the filtered image it holds.
            for cid, wanted in ((raw_cid, (raw_cid,)), (unknown, (unknown,)), (safe_cid, ())):
                item = OfferItem(cid=cid, size=len(raw), has_label=False,
                                 origin=hostile.t.peer_id, origin_round=1, novel_votes=0,
                                 voters=(), hops=0)
                reply = await hostile.ask(me, SHARE_PROTOCOL, ImageOffer(
                    sender=hostile.t.peer_id, round_id=1, items=(item,)))
                assert decode(reply) == OfferReply(wanted=wanted)

            # The one exit function refuses the raw cid even when our own code asks (a relay
            # of a peer-named cid goes through offer_items): no offer reaches the peer.
            raw_item = OfferItem(cid=raw_cid, size=len(raw), has_label=True, origin=me,
                                 origin_round=1, novel_votes=0, voters=(), hops=0)
            assert await node.share.offer_items(hostile.t.peer_id, [raw_item], 1) is None
            assert hostile.offers == []
            # ... and having been "offered" nothing, /fetch of it still yields nothing.
            assert await hostile.ask(me, FETCH_PROTOCOL, ImageRequest(cids=(raw_cid,))) == \
                encode(ImageData(items=()))

            # The filtered image does leave once offered, and it is the blurred one.
            safe_item = OfferItem(cid=safe_cid, size=len(filtered.png), has_label=True,
                                  origin=me, origin_round=1, novel_votes=0, voters=(), hops=0)
            assert await node.share.offer_items(hostile.t.peer_id, [safe_item], 1) == \
                (safe_cid,)
            got = decode(await hostile.ask(me, FETCH_PROTOCOL, ImageRequest(
                cids=(safe_cid, raw_cid))))
            assert isinstance(got, ImageData) and [i.cid for i in got.items] == [safe_cid]
            assert got.items[0].data == filtered.png
            assert all(raw not in payload for payload in hostile.received)


async def test_send_offers_only_the_privacy_filter_output(tmp_path: Path) -> None:
    raw = astronaut_png()
    photo = tmp_path / "astronaut.png"
    photo.write_bytes(raw)
    with trio.fail_after(60):
        async with robot_and_hostile(tmp_path / "robot") as (node, hostile):
            dispatch = make_dispatch(node, "c", lambda: None)
            sent = await dispatch(ControlRequest(1, "send", {
                "paths": [str(photo)], "to": hostile.t.peer_id}))
            assert sent["offered"] == 1 and sent["dropped_by_privacy"] == 0
            await hostile.offer_seen.wait()
            (offer,) = hostile.offers
            (item,) = offer.items
            assert item.cid != content_id(raw) and item.cid.hex() == sent["cids"][0]
            got = decode(await hostile.ask(node.peer_id, FETCH_PROTOCOL,
                                           ImageRequest(cids=(item.cid,))))
            assert isinstance(got, ImageData) and len(got.items) == 1
            data = got.items[0].data
            assert content_id(data) == item.cid and data != raw
            # The face is blurred: those pixels differ clearly from the raw photo's.
            before = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)
            after = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            x, y, w, h = (np.array([178, 63, 90, 113]) * 256 / 512).astype(int)
            diff = np.abs(before[y:y + h, x:x + w].astype(int) - after[y:y + h, x:x + w])
            assert diff.mean() > 5
            assert node.store.blob_provenance(content_id(raw)) is None  # raw not even stored
            assert all(raw not in payload for payload in hostile.received)
