"""Who may hold a link and relay gossip: forwarders seen by the validator, idle strangers
disconnected, a flooding peer's refused streams freed and its link closed."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
import trio
import trio.testing

from peerdata.config import LimitsConfig, NetConfig
from peerdata.errors import TransportError
from peerdata.fleet import Membership, init_authority, issue_certificate
from peerdata.identity import Identity
from peerdata.net.gossip import _takes_forwarder
from peerdata.net.libp2p_transport import open_libp2p_transport
from peerdata.node.membership import MemberService

NET = NetConfig(connect_timeout_s=5.0, request_timeout_s=20.0, gossip_heartbeat_s=0.2)


def test_validators_with_a_third_argument_get_the_forwarder() -> None:
    assert not _takes_forwarder(lambda sender, data: True)
    assert _takes_forwarder(lambda sender, data, forwarder="": True)
    assert _takes_forwarder(lambda *args: True)


async def test_the_gossip_validator_sees_the_forwarding_peer() -> None:
    limits = LimitsConfig()
    seen: list[tuple[str, str]] = []

    def validate(sender: str, data: bytes, forwarder: str = "") -> bool:
        seen.append((sender, forwarder))
        return data != b"refused"

    with trio.fail_after(30):
        async with open_libp2p_transport(bytes([21]) * 32, NET, limits) as pub, \
                open_libp2p_transport(bytes([22]) * 32, NET, limits) as sub:
            sub.set_gossip_validator("t", validate)
            inbox = sub.subscribe("t")
            pub.subscribe("t")
            await sub.connect(pub.listen_addrs()[0])
            while True:  # the mesh forms within a few heartbeats: re-send until it arrives
                await pub.publish("t", b"hello")
                with trio.move_on_after(0.5):
                    msg = await inbox.receive()
                    break
            assert msg.data == b"hello"
            assert (pub.peer_id, pub.peer_id) in seen  # publisher and forwarder, both named


class _Links:
    """The part of a Transport the stranger sweep reads: who is connected now."""

    def __init__(self) -> None:
        self.peers: set[str] = set()

    def connected_peers(self) -> tuple[str, ...]:
        return tuple(self.peers)


async def test_an_idle_stranger_is_disconnected_after_the_deadline(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    authority = init_authority(tmp_path / "fa")
    me, member = Identity.generate(), Identity.generate()
    now = [time.time()]
    membership = Membership("fleet", authority.peer_id, me.peer_id, lambda: now[0])
    membership.own_cert = issue_certificate(authority, me.peer_id, now[0], 1)
    membership.check_certificate(issue_certificate(authority, member.peer_id, now[0], 1),
                                 member.peer_id)
    links = _Links()
    dropped: list[tuple[str, float]] = []
    first_drop = trio.Event()

    async def drop_link(peer: str, reason: str) -> None:
        dropped.append((peer, trio.current_time()))
        links.peers.discard(peer)
        first_drop.set()

    service = MemberService(membership, links, LimitsConfig(), None,  # type: ignore[arg-type]
                            drop_link, stranger_deadline_s=20.0)
    with trio.fail_after(200):  # virtual seconds (the clock autojumps)
        async with trio.open_nursery() as nursery:
            start = trio.current_time()
            links.peers |= {"stranger", member.peer_id}
            nursery.start_soon(service.drop_idle_strangers)
            await first_drop.wait()
            await trio.sleep(60.0)  # the member stays, however long
            nursery.cancel_scope.cancel()
    (peer, at), = dropped
    assert peer == "stranger" and 20.0 <= at - start <= 25.0
    assert links.peers == {member.peer_id}
    assert service.refused == 1
    assert any("event=stranger_dropped" in r.getMessage() for r in caplog.records)


async def test_refused_streams_leave_nothing_buffered_and_a_flood_loses_its_link(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Streams past the per-peer limit are reset with what the muxer buffered for them; a
    peer refused twice its stream limit at once is disconnected."""
    caplog.set_level(logging.INFO, logger="peerdata.net")
    limits = LimitsConfig(max_message_bytes=1024 * 1024, max_image_bytes=512 * 1024,
                          max_streams_per_peer=2, max_buffered_bytes_per_peer=1024 * 1024)
    release = trio.Event()
    inside = [0]
    both_in = trio.Event()

    async def hold(peer_id: str, payload: bytes) -> bytes:
        inside[0] += 1
        if inside[0] == 2:
            both_in.set()
        await release.wait()
        return b"ok"

    with trio.fail_after(40):
        async with open_libp2p_transport(bytes([23]) * 32, NET, limits) as server, \
                open_libp2p_transport(bytes([24]) * 32, NET, limits) as flooder:
            server.set_handler("/hold/1", hold)
            events = server.peer_events()
            await flooder.connect(server.listen_addrs()[0])
            outcomes: list[str] = []

            async def one(payload: bytes) -> None:
                try:
                    outcomes.append((await flooder.request(server.peer_id, "/hold/1",
                                                           payload)).decode())
                except TransportError:
                    outcomes.append("reset")

            async with trio.open_nursery() as nursery:
                for _ in range(2):
                    nursery.start_soon(one, b"x")
                await both_in.wait()
                await one(b"y" * 200_000)  # refused: its 200 kB must not stay buffered
                conns = server._host.get_network().connections
                muxers = [c.muxed_conn for cs in conns.values() for c in cs]
                assert muxers and all(
                    sum(len(b) for b in m.stream_buffers.values()) < 200_000 for m in muxers)
                for _ in range(3):  # 4 refusals = twice max_streams_per_peer while it holds 2
                    await one(b"z")
                release.set()
            assert outcomes.count("reset") >= 4
            logged = "\n".join(r.getMessage() for r in caplog.records)
            assert "link closed: 4 streams refused at once" in logged
            async for ev in events:  # the flooder's link goes down
                if ev.peer_id == flooder.peer_id and not ev.connected:
                    break


def test_a_reset_stream_leaves_no_unread_bytes_in_the_muxer() -> None:
    """py-libp2p's yamux keeps a reset stream's unread bytes for 60-90 s; we drop them (and
    leave alone a stream whose reset did not finish: libp2p still owns its slot)."""
    from types import SimpleNamespace

    from peerdata.net.inbound import _discard_unread

    conn = SimpleNamespace(stream_buffers={7: bytearray(256 * 1024), 9: bytearray(b"x")},
                           streams={7: object(), 9: object()}, stream_events={7: 1, 9: 2})
    done = SimpleNamespace(muxed_stream=SimpleNamespace(conn=conn, stream_id=7,
                                                        _backlog_slot_released=True))
    pending = SimpleNamespace(muxed_stream=SimpleNamespace(conn=conn, stream_id=9,
                                                           _backlog_slot_released=False))
    _discard_unread(done)  # type: ignore[arg-type]
    _discard_unread(pending)  # type: ignore[arg-type]
    assert list(conn.stream_buffers) == list(conn.streams) == list(conn.stream_events) == [9]
