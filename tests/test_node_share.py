"""Offer/fetch between nodes on a MemoryNetwork (MockClock): only missing images move, each
verified; a peer that sends anything wrong is logged with its peer ID, its link dropped, and
nothing of what it sent reaches the store."""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from test_node_support import Started, add_local, addr_of, png, raw_peer, start_node

from peerdata.config import LimitsConfig
from peerdata.errors import TransportError
from peerdata.identity import Identity
from peerdata.node.share import batches, media_type_of
from peerdata.store import Sample, SqliteStore
from peerdata.testing.memory_network import MemoryNetwork, MemoryTransport
from peerdata.wire.codec import encode
from peerdata.wire.messages import ImageData, ImageItem, ImageOffer, OfferItem, content_id
from peerdata.wire.versions import FETCH_PROTOCOL, SHARE_PROTOCOL


async def _pair(stack: AsyncExitStack, network: MemoryNetwork) -> tuple[Started, Started]:
    a = await start_node(stack, network, "a")
    b = await start_node(stack, network, "b", bootstrap=(addr_of(a.node.peer_id),))
    await b.node.wait_until(lambda s: s.peers_connected == 1)
    return a, b


def _offer_item(cid: bytes, size: int, origin: str) -> OfferItem:
    return OfferItem(cid=cid, size=size, has_label=True, origin=origin, origin_round=0,
                     novel_votes=0, voters=(), hops=0)


def test_batches_respect_message_and_list_limits() -> None:
    items = tuple(_offer_item(bytes([i]) * 32, 1000, "1" * 46) for i in range(10))
    assert [len(b) for b in batches(items, 3000, 100)] == [2] * 5
    assert [len(b) for b in batches(items, 10**9, 4)] == [4, 4, 2]


def test_media_type_sniffing() -> None:
    assert media_type_of(png(1)) == "image/png"
    assert media_type_of(b"\xff\xd8\xff\xe0rest") == "image/jpeg"
    assert media_type_of(b"GIF89a") == "application/octet-stream"


async def _offer_from_a_stalling_peer(
    stack: AsyncExitStack, network: MemoryNetwork, receiver: Started, data: bytes
) -> tuple[MemoryTransport, bytes]:
    """A raw peer offers `data` to `receiver`, then never answers the fetch; returns once the
    receiver's fetch has reached it."""
    peer = await raw_peer(stack, network)
    fetch_started = trio.Event()

    async def stall(peer_id: str, payload: bytes) -> bytes:
        fetch_started.set()
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    peer.set_handler(FETCH_PROTOCOL, stall)
    await peer.connect(addr_of(receiver.node.peer_id))
    offer = ImageOffer(sender=peer.peer_id, round_id=0,
                       items=(_offer_item(content_id(data), len(data), peer.peer_id),))
    await peer.request(receiver.node.peer_id, SHARE_PROTOCOL, encode(offer))
    await fetch_started.wait()
    return peer, data


async def test_receiver_fetches_only_missing_images(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(60):
        async with AsyncExitStack() as stack:
            a, b = await _pair(stack, MemoryNetwork())
            cids = [add_local(a.store, png(i)) for i in range(3)]
            add_local(b.store, png(0))  # b already holds image 0
            wanted = await a.node.share.offer(b.node.peer_id, cids)
            assert set(wanted) == set(cids[1:])
            stats = await b.node.wait_until(lambda s: s.share.images_verified == 2)
            assert stats.samples_received == 2 and stats.samples_local == 1
            for cid in cids:
                assert b.store.get_blob(cid) == a.store.get_blob(cid)
            got = b.store.get_sample(cids[1])
            assert got is not None and got.origin == a.node.peer_id and got.label == 1
            notice = b.node.inbox.receive_nowait()
            assert notice.sender == a.node.peer_id and notice.cid in cids[1:]
            assert (await a.node.statistics()).share.images_sent == 2
            # offering again moves nothing
            assert await a.node.share.offer(b.node.peer_id, cids) == ()


class ReadWatch(SqliteStore):
    """A store that notes each sample or blob read made outside the node's offload."""

    offloaded = False
    on_loop: list[str]

    def get_sample(self, cid: bytes) -> Sample | None:
        if not self.offloaded:
            self.on_loop.append("get_sample")
        return super().get_sample(cid)

    def get_blob(self, cid: bytes) -> bytes:
        if not self.offloaded:
            self.on_loop.append("get_blob")
        return super().get_blob(cid)


async def test_an_offer_reads_the_store_only_through_the_offload(
    autojump_clock: trio.testing.MockClock, tmp_path: Path,
) -> None:
    """The daemon's offload is a worker thread: a read outside it would block the event loop."""
    with trio.fail_after(60):
        async with AsyncExitStack() as stack:
            store = stack.enter_context(ReadWatch.open(tmp_path / "a"))
            store.on_loop = []

            async def offload(fn: Callable[..., Any], *args: Any) -> Any:
                store.offloaded = True
                try:
                    return fn(*args)
                finally:
                    store.offloaded = False

            network = MemoryNetwork()
            a = await start_node(stack, network, "a", store=store, offload=offload)
            b = await start_node(stack, network, "b", bootstrap=(addr_of(a.node.peer_id),))
            await b.node.wait_until(lambda s: s.peers_connected == 1)
            cids = [add_local(store, png(i)) for i in range(2)]
            store.on_loop.clear()
            assert set(await a.node.share.offer(b.node.peer_id, cids)) == set(cids)
            await b.node.wait_until(lambda s: s.share.images_verified == 2)
            assert store.on_loop == []


async def test_fetch_of_images_never_offered_is_not_served(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(60):
        network = MemoryNetwork()
        async with AsyncExitStack() as stack:
            a = await start_node(stack, network, "a")
            secret = add_local(a.store, png(7))
            thief = await raw_peer(stack, network)
            await thief.connect(addr_of(a.node.peer_id))
            from peerdata.wire.codec import decode_as
            from peerdata.wire.messages import ImageRequest

            raw = await thief.request(a.node.peer_id, FETCH_PROTOCOL,
                                      encode(ImageRequest(cids=(secret,))))
            assert decode_as(raw, ImageData).items == ()


async def _offer_from_raw(network: MemoryNetwork, stack: AsyncExitStack, target: Started,
                          items: list[ImageItem]) -> str:
    """A hand-driven peer offers `items` to `target` and serves them exactly as given."""
    peer = await raw_peer(stack, network)

    async def serve(peer_id: str, payload: bytes) -> bytes:
        return encode(ImageData(items=tuple(items)))

    peer.set_handler(FETCH_PROTOCOL, serve)
    await peer.connect(addr_of(target.node.peer_id))
    offer = ImageOffer(sender=peer.peer_id, round_id=0, items=tuple(
        _offer_item(i.cid, len(i.data), peer.peer_id) for i in items))
    await peer.request(target.node.peer_id, SHARE_PROTOCOL, encode(offer))
    return peer.peer_id


async def test_sha256_mismatch_rejects_reply_stores_nothing_and_drops_link(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="peerdata")
    with trio.fail_after(60):
        network = MemoryNetwork()
        async with AsyncExitStack() as stack:
            b = await start_node(stack, network, "b")
            good, bad = png(1), png(2)
            items = [ImageItem(cid=content_id(good), data=good, label=1, media_type="image/png"),
                     ImageItem(cid=content_id(bad), data=bad + b"tampered", label=1,
                               media_type="image/png")]
            liar = await _offer_from_raw(network, stack, b, items)
            stats = await b.node.wait_until(lambda s: s.share.images_rejected == 2)
            assert stats.share.images_verified == 0 and stats.samples_received == 0
            assert stats.links_dropped == 1
            assert not b.store.has_blob(content_id(good))  # not even the good one
            assert any("event=link_dropped" in r.getMessage() and liar in r.getMessage()
                       and "hash to" in r.getMessage() for r in caplog.records)
            # the node keeps serving: an honest peer's image still arrives
            honest = [ImageItem(cid=content_id(good), data=good, label=1,
                                media_type="image/png")]
            await _offer_from_raw(network, stack, b, honest)
            await b.node.wait_until(lambda s: s.share.images_verified == 1)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\x01\x02\xc1garbage", "malformed msgpack"),  # malformed message
        (b"\x01\x63\x80", "unknown message type"),  # unknown message type tag 99
        (b"\x02\x02\x80", "unsupported protocol version"),  # unknown protocol version
        (encode(ImageData(items=())), "expected ImageOffer"),  # a valid message, wrong type
    ],
)
async def test_bad_request_is_refused_logged_and_link_dropped(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture,
    payload: bytes, reason: str,
) -> None:
    caplog.set_level(logging.INFO, logger="peerdata")
    with trio.fail_after(60):
        network = MemoryNetwork()
        async with AsyncExitStack() as stack:
            a, b = await _pair(stack, network)
            evil = await raw_peer(stack, network)
            await evil.connect(addr_of(b.node.peer_id))
            with pytest.raises(TransportError):
                await evil.request(b.node.peer_id, SHARE_PROTOCOL, payload)
            assert (await b.node.statistics()).links_dropped == 1
            lines = [r.getMessage() for r in caplog.records if "event=link_dropped" in
                     r.getMessage()]
            assert len(lines) == 1 and evil.peer_id in lines[0] and reason in lines[0]
            # dropped: even a valid request from it is refused until net.reconnect_max_s passed
            offer = encode(ImageOffer(sender=evil.peer_id, round_id=0, items=()))
            with pytest.raises(TransportError):
                await evil.request(b.node.peer_id, SHARE_PROTOCOL, offer)
            await trio.sleep(b.node.config.net.reconnect_max_s)
            await evil.request(b.node.peer_id, SHARE_PROTOCOL, offer)
            assert (await b.node.statistics()).links_dropped == 1
            # b keeps working with a
            cid = add_local(a.store, png(5))
            assert await a.node.share.offer(b.node.peer_id, [cid]) == (cid,)
            await b.node.wait_until(lambda s: s.share.images_verified == 1)


async def test_oversize_image_in_reply_is_refused(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(60):
        limits = LimitsConfig(max_message_bytes=64 * 1024, max_image_bytes=4096)
        network = MemoryNetwork(limits=limits)
        async with AsyncExitStack() as stack:
            b = await start_node(stack, network, "b", limits=limits)
            big = png(3, size=8000)
            item = ImageItem(cid=content_id(big), data=big, label=None, media_type="image/png")
            peer = await raw_peer(stack, network)

            async def serve(peer_id: str, payload: bytes) -> bytes:
                return encode(ImageData(items=(item,)))

            peer.set_handler(FETCH_PROTOCOL, serve)
            await peer.connect(addr_of(b.node.peer_id))
            # it lies about the size in the offer, then sends the large image
            offer = ImageOffer(sender=peer.peer_id, round_id=0,
                               items=(_offer_item(item.cid, 100, peer.peer_id),))
            await peer.request(b.node.peer_id, SHARE_PROTOCOL, encode(offer))
            stats = await b.node.wait_until(lambda s: s.share.images_rejected == 1)
            assert stats.links_dropped == 1 and stats.samples_received == 0
            assert not b.store.has_blob(item.cid)


async def test_oversize_frame_is_refused_before_the_node_sees_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(60):
        small = LimitsConfig(max_message_bytes=4096, max_image_bytes=2048)
        network = MemoryNetwork(limits=small)
        async with AsyncExitStack() as stack:
            b = await start_node(stack, network, "b", limits=small)
            evil = await stack.enter_async_context(network.open_transport(
                Identity.generate().peer_id, limits=LimitsConfig()))
            await evil.connect(addr_of(b.node.peer_id))
            with pytest.raises(TransportError):
                await evil.request(b.node.peer_id, SHARE_PROTOCOL, b"\x01\x02" + b"x" * 10_000)
            assert (await b.node.statistics()).share.offers_received == 0


async def test_peer_that_stops_mid_transfer_leaves_nothing_behind(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(120):
        network = MemoryNetwork()
        async with AsyncExitStack() as stack:
            b = await start_node(stack, network, "b")
            peer, data = await _offer_from_a_stalling_peer(stack, network, b, png(9))
            network.kill(peer.peer_id)  # the sender crashes while its reply is in flight
            stats = await b.node.wait_until(lambda s: s.share.fetch_failures == 1)
            assert stats.samples_received == 0 and not b.store.has_blob(content_id(data))
            assert stats.peers_connected == 0


async def test_a_stalled_sender_does_not_hold_up_others(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(120):
        network = MemoryNetwork()
        async with AsyncExitStack() as stack:
            a, b = await _pair(stack, network)
            staller, data = await _offer_from_a_stalling_peer(stack, network, b, png(11))
            start = trio.current_time()
            cid = add_local(a.store, png(12))
            await a.node.share.offer(b.node.peer_id, [cid])
            await b.node.wait_until(lambda s: s.share.images_verified == 1)
            assert trio.current_time() - start < b.node.config.net.request_timeout_s
            # the stalled fetch ends at the request timeout, with nothing stored
            stats = await b.node.wait_until(lambda s: s.share.fetch_failures == 1)
            assert stats.samples_received == 1 and not b.store.has_blob(content_id(data))


async def test_fetch_failing_in_transit_is_retried_with_backoff(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(120):
        network = MemoryNetwork()
        async with AsyncExitStack() as stack:
            b = await start_node(stack, network, "b")
            peer = await raw_peer(stack, network)
            data = png(13)
            item = ImageItem(cid=content_id(data), data=data, label=2, media_type="image/png")
            calls: list[float] = []

            async def flaky(peer_id: str, payload: bytes) -> bytes:
                calls.append(trio.current_time())
                if len(calls) < 3:
                    raise OSError("connection reset")  # the client sees the stream reset
                return encode(ImageData(items=(item,)))

            peer.set_handler(FETCH_PROTOCOL, flaky)
            await peer.connect(addr_of(b.node.peer_id))
            offer = ImageOffer(sender=peer.peer_id, round_id=0,
                               items=(_offer_item(item.cid, len(data), peer.peer_id),))
            await peer.request(b.node.peer_id, SHARE_PROTOCOL, encode(offer))
            stats = await b.node.wait_until(lambda s: s.share.images_verified == 1)
            assert stats.share.fetch_failures == 2 and stats.links_dropped == 0
            net = b.node.config.net
            gaps = [round(y - x, 3) for x, y in zip(calls, calls[1:], strict=False)]
            assert gaps == [net.reconnect_initial_s, 2 * net.reconnect_initial_s]
            assert b.store.get_blob(item.cid) == data


async def test_a_send_the_peer_failed_to_fetch_is_offered_again(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The receiver wanted the image, then lost the link before fetching it (as a robot killed
    then: its fetch queue is gone): the sender kept the send and offers it again."""
    with trio.fail_after(300):
        async with AsyncExitStack() as stack:
            network = MemoryNetwork()
            a, b = await _pair(stack, network)
            cid = add_local(a.store, png(7))
            network.partition(a.node.peer_id, b.node.peer_id)  # replies, then no fetch
            with pytest.raises(TransportError):
                await a.node.share.offer(b.node.peer_id, [cid])
            assert [r.peer for r in a.store.list_outbox("send")] == [b.node.peer_id]
            network.heal(a.node.peer_id, b.node.peer_id)
            await b.node.wait_until(lambda s: s.share.images_verified == 1)
            assert b.store.get_sample(cid) is not None
            assert a.node.share.sends.counts["resent"] >= 1
            assert a.store.list_outbox("send") == []  # served: removed before the reply left
