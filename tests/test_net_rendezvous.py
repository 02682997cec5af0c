"""Rendezvous discovery over real libp2p on 127.0.0.1: two robots that know only a rendezvous
point (no bootstrap naming each other) find each other's addresses there and link; a point that
cannot be reached is retried and never stops the robot."""

from __future__ import annotations

import dataclasses
import logging

import trio

from peerdata.config import LimitsConfig, NetConfig
from peerdata.net.libp2p_transport import open_libp2p_transport

NET = NetConfig(connect_timeout_s=5.0, request_timeout_s=5.0, gossip_heartbeat_s=0.5,
                reconnect_initial_s=0.1, reconnect_max_s=0.5, rendezvous_refresh_s=0.5)
LIMITS = LimitsConfig(max_message_bytes=256 * 1024, max_image_bytes=128 * 1024)


async def _first_found(found: trio.MemoryReceiveChannel[str], peer_id: str) -> str:
    async for addr in found:
        if addr.endswith(f"/p2p/{peer_id}"):
            return addr
    raise AssertionError("discovery channel closed")


async def test_robots_find_each_other_at_a_rendezvous_point() -> None:
    with trio.fail_after(60):
        point_net = dataclasses.replace(NET, rendezvous_serve=True)
        async with open_libp2p_transport((91).to_bytes(32, "big"), point_net, LIMITS) as point:
            robot_net = dataclasses.replace(NET, rendezvous=point.listen_addrs()[0])
            async with open_libp2p_transport((92).to_bytes(32, "big"), robot_net, LIMITS) as a, \
                    open_libp2p_transport((93).to_bytes(32, "big"), robot_net, LIMITS) as b:
                assert b.peer_id not in a.connected_peers()
                addr_b = await _first_found(a.discovered(), b.peer_id)
                addr_a = await _first_found(b.discovered(), a.peer_id)
                assert addr_a in [*a.listen_addrs()] and addr_b in [*b.listen_addrs()]
                assert await a.connect(addr_b) == b.peer_id  # what was found is dialable


class _Failures(logging.Handler):
    """Sets `retried` once the rendezvous client logged two failed attempts."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count, self.retried = 0, trio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.count += "rendezvous at" in record.getMessage()
        if self.count >= 2:
            self.retried.set()


async def test_an_unreachable_point_is_retried_without_stopping_the_robot() -> None:
    failures = _Failures()
    logging.getLogger("peerdata.net").addHandler(failures)
    try:
        await _retried(failures)
    finally:
        logging.getLogger("peerdata.net").removeHandler(failures)


async def _retried(failures: _Failures) -> None:
    with trio.fail_after(60):
        async with open_libp2p_transport((94).to_bytes(32, "big"), NET, LIMITS) as gone:
            dead = gone.listen_addrs()[0]
        net = dataclasses.replace(NET, rendezvous=dead)
        async with open_libp2p_transport((95).to_bytes(32, "big"), net, LIMITS) as robot, \
                open_libp2p_transport((96).to_bytes(32, "big"), NET, LIMITS) as other:
            await failures.retried.wait()  # its attempts failed, backed off, were retried
            assert await robot.connect(other.listen_addrs()[0]) == other.peer_id
            assert robot.discovered().statistics().current_buffer_used == 0
