"""A peer cannot stop the daemon: store failures end one job, quotas refuse offers with a
reason, bombs are refused before decoding, a restart on a full disk says so, homes are 0700."""

from __future__ import annotations

import logging
import os
import resource
import signal
import struct
import subprocess
import sys
import zlib
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
import trio
import trio.testing
from test_node_support import add_local, addr_of, png, raw_peer, start_node

from peerdata.config import LimitsConfig, NetConfig, TrustConfig
from peerdata.errors import DataError, StoreError, TransportError
from peerdata.net.libp2p_transport import open_libp2p_transport
from peerdata.node.home import check_home, init_home
from peerdata.node.ingest import to_pixels
from peerdata.store import Provenance, SqliteStore
from peerdata.testing.memory_network import MemoryNetwork
from peerdata.wire.codec import decode, encode
from peerdata.wire.messages import (
    ErrorReply,
    ImageData,
    ImageItem,
    ImageOffer,
    OfferItem,
    OfferReply,
    content_id,
)
from peerdata.wire.versions import FETCH_PROTOCOL, SHARE_PROTOCOL


class FullDisk(SqliteStore):
    """A store whose disk is full from `full` on: every blob write fails as SqliteStore's do."""

    full = False

    def put_blob(self, data: bytes, provenance: Provenance = "local",
                 received_from: str | None = None) -> bytes:
        if self.full:
            raise StoreError("cannot write blob: [Errno 28] No space left on device")
        return super().put_blob(data, provenance, received_from)


def _item(data: bytes, origin: str, size: int | None = None) -> OfferItem:
    return OfferItem(cid=content_id(data), size=len(data) if size is None else size,
                     has_label=True, origin=origin, origin_round=0, novel_votes=0, voters=(),
                     hops=0)


async def test_a_store_failure_ends_the_fetch_job_not_the_node(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture, tmp_path: Path,
) -> None:
    with trio.fail_after(60):
        async with AsyncExitStack() as stack:
            network = MemoryNetwork()
            disk = stack.enter_context(FullDisk.open(tmp_path / "b"))
            a = await start_node(stack, network, "a")
            b = await start_node(stack, network, "b", store=disk,
                                 bootstrap=(addr_of(a.node.peer_id),))
            await b.node.wait_until(lambda s: s.peers_connected == 1)
            disk.full = True
            first = add_local(a.store, png(1))
            assert await a.node.share.offer(b.node.peer_id, [first]) == (first,)
            await b.node.wait_until(lambda s: s.share.fetch_failures >= 1)
            assert "event=store_failed" in caplog.text and "No space left" in caplog.text
            disk.full = False  # the disk has room again: the same node takes the next offer
            second = add_local(a.store, png(2))
            assert await a.node.share.offer(b.node.peer_id, [second]) == (second,)
            await b.node.wait_until(lambda s: s.share.images_verified == 1)
            assert disk.may_leave(second) and disk.blob_provenance(second) == "received"
            assert disk.stored_bytes(a.node.peer_id) == len(png(2))


async def test_offers_over_a_quota_are_refused_with_the_reason(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture,
) -> None:
    trust = TrustConfig(max_peer_bytes=250, max_store_bytes=10_000)
    with trio.fail_after(60):
        async with AsyncExitStack() as stack:
            network = MemoryNetwork()
            b = await start_node(stack, network, "b", trust=trust)
            peer = await raw_peer(stack, network)
            await peer.connect(addr_of(b.node.peer_id))

            async def offer(*items: OfferItem) -> object:
                return decode(await peer.request(b.node.peer_id, SHARE_PROTOCOL, encode(
                    ImageOffer(sender=peer.peer_id, round_id=0, items=items))))

            small = png(1, 200)
            assert await offer(_item(small, peer.peer_id)) == \
                OfferReply(wanted=(content_id(small),))
            # Queued but not yet fetched still counts: 200 + 100 > 250.
            reply = await offer(_item(png(2, 100), peer.peer_id))
            assert isinstance(reply, ErrorReply) and reply.code == "busy"
            assert "trust.max_peer_bytes=250" in reply.message
            assert "event=offer_refused_quota" in caplog.text
            assert (await b.node.statistics()).links_dropped == 0  # a refusal, not a protocol error


async def test_free_space_floor_refuses_offers(
    autojump_clock: trio.testing.MockClock, tmp_path: Path,
) -> None:
    trust = TrustConfig(min_free_bytes=2**62)  # more than any disk has free
    with trio.fail_after(60):
        async with AsyncExitStack() as stack:
            network = MemoryNetwork()
            store = SqliteStore.open(tmp_path / "b")
            stack.callback(store.close)
            b = await start_node(stack, network, "b", store=store, trust=trust)
            peer = await raw_peer(stack, network)
            await peer.connect(addr_of(b.node.peer_id))
            reply = decode(await peer.request(b.node.peer_id, SHARE_PROTOCOL, encode(
                ImageOffer(sender=peer.peer_id, round_id=0, items=(_item(png(1), peer.peer_id),)))))
            assert isinstance(reply, ErrorReply) and "disk nearly full" in reply.message


async def test_a_reply_whose_size_differs_from_the_offer_drops_the_link(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(60):
        async with AsyncExitStack() as stack:
            network = MemoryNetwork()
            b = await start_node(stack, network, "b")
            peer = await raw_peer(stack, network)
            data = png(3)

            async def serve(peer_id: str, payload: bytes) -> bytes:
                return encode(ImageData(items=(ImageItem(cid=content_id(data), data=data,
                                                         label=1, media_type="image/png"),)))

            peer.set_handler(FETCH_PROTOCOL, serve)
            await peer.connect(addr_of(b.node.peer_id))
            await peer.request(b.node.peer_id, SHARE_PROTOCOL, encode(ImageOffer(
                sender=peer.peer_id, round_id=0, items=(_item(data, peer.peer_id, size=5),))))
            await b.node.wait_until(lambda s: s.links_dropped == 1)
            assert b.store.blob_provenance(content_id(data)) is None


def _png_header_only(width: int, height: int) -> bytes:
    """A small PNG that declares a huge image (IHDR, one IDAT of zeros, IEND)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(
            ">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 200_000, 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + \
        chunk(b"IEND", b"")


def test_a_decompression_bomb_is_refused_before_decoding() -> None:
    bomb = _png_header_only(50_000, 50_000)  # 2.5 Gpixel declared, a few hundred bytes sent
    assert len(bomb) < 2_000
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(DataError, match="max_pixels"):
        to_pixels(bomb)
    with pytest.raises(DataError, match="max_pixels"):
        to_pixels(_png_header_only(200, 200), max_pixels=100)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50 * 1024  # KiB


def test_a_home_readable_by_others_is_made_0700(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    home = tmp_path / "robot"
    init_home(home)
    os.chmod(home, 0o755)
    with caplog.at_level(logging.WARNING):
        check_home(home)
    assert os.stat(home).st_mode & 0o777 == 0o700
    assert "event=home_mode_fixed" in caplog.text and "was=755" in caplog.text


def _no_file_writes() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))  # every file write fails: disk "full"
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def test_restart_on_a_full_disk_exits_6_with_one_clear_line(tmp_path: Path) -> None:
    home = tmp_path / "robot"
    init_home(home)
    proc = subprocess.run(
        [sys.executable, "-c", "from peerdata.cli.run import main; main()", "--home", str(home)],
        capture_output=True, text=True, timeout=60, preexec_fn=_no_file_writes)
    assert proc.returncode == 6, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "disk full or the home read-only" in " ".join(proc.stderr.split())


async def test_one_peer_cannot_hold_more_streams_or_bytes_than_its_limits(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Over real libp2p: streams past `max_streams_per_peer` and request bytes past
    `max_buffered_bytes_per_peer` are reset at once; another peer is served all along."""
    limits = LimitsConfig(max_message_bytes=64 * 1024, max_image_bytes=32 * 1024,
                          max_streams_per_peer=3, max_buffered_bytes_per_peer=100 * 1024)
    net = NetConfig(connect_timeout_s=5.0, request_timeout_s=20.0)
    release = trio.Event()
    inside = [0]
    all_in = trio.Event()

    async def hold(peer_id: str, payload: bytes) -> bytes:
        inside[0] += 1
        if inside[0] == 3:
            all_in.set()
        await release.wait()
        return b"ok"

    async def echo(peer_id: str, payload: bytes) -> bytes:
        return payload

    with trio.fail_after(30):
        async with open_libp2p_transport(bytes([9]) * 32, net, limits) as server, \
                open_libp2p_transport(bytes([10]) * 32, net, limits) as flooder, \
                open_libp2p_transport(bytes([11]) * 32, net, limits) as other:
            server.set_handler("/hold/1", hold)
            server.set_handler("/echo/1", echo)
            for c in (flooder, other):
                await c.connect(server.listen_addrs()[0])
            outcomes: list[str] = []

            async def one(payload: bytes) -> None:
                try:
                    outcomes.append((await flooder.request(server.peer_id, "/hold/1",
                                                           payload)).decode())
                except TransportError:
                    outcomes.append("reset")

            async with trio.open_nursery() as nursery:
                for _ in range(3):
                    nursery.start_soon(one, b"x")
                await all_in.wait()  # three streams held: the flooder's limit
                for _ in range(5):
                    await one(b"y")  # each one more is reset at once
                assert outcomes == ["reset"] * 5
                # Another peer is not affected by the flooder's limits.
                assert await other.request(server.peer_id, "/echo/1", b"hi") == b"hi"
                release.set()
            assert sorted(outcomes) == ["ok"] * 3 + ["reset"] * 5
            # Bytes: two 60 KiB requests held at once exceed 100 KiB; the second is reset.
            release2 = trio.Event()
            started = trio.Event()

            async def hold_big(peer_id: str, payload: bytes) -> bytes:
                started.set()
                await release2.wait()
                return b"big"

            server.set_handler("/big/1", hold_big)
            big: list[str] = []

            async def first() -> None:
                big.append((await flooder.request(server.peer_id, "/big/1",
                                                  b"z" * 60_000)).decode())

            async with trio.open_nursery() as nursery:
                nursery.start_soon(first)
                await started.wait()
                with pytest.raises(TransportError):
                    await flooder.request(server.peer_id, "/echo/1", b"w" * 60_000)
                release2.set()
            assert big == ["big"]
            assert await flooder.request(server.peer_id, "/echo/1", b"w" * 60_000) == \
                b"w" * 60_000
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name == "peerdata.net")
    assert "max_streams_per_peer=3" in logged and "max_buffered_bytes_per_peer" in logged
