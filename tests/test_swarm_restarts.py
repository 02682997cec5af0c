"""Real daemons with `tcp/0` listen addresses restarted again and again (the bootstrap robot
included, kill -9 and SIGTERM, one of them onto a new port) relink every time: saved peers are
redialled, a restarted daemon takes its previous port back when free, and the newest address
of a peer is the one introduced. Synchronised on the daemons' own `wait` command."""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from peerdata.store import SqliteStore
from peerdata.testing.swarm import Swarm, kill_robot, open_swarm, stop_robot

pytestmark = [pytest.mark.swarm, pytest.mark.slow]

TIMEOUT = 60.0


def _port(robot_addrs: tuple[str, ...]) -> int:
    return int(robot_addrs[0].split("/tcp/")[1].split("/")[0])


@pytest.fixture
def swarm3(tmp_path: Path) -> Iterator[Swarm]:
    with open_swarm(3, tmp_path / "s", ready_timeout_s=TIMEOUT) as swarm:
        try:
            swarm.wait_peers(2, TIMEOUT)
            yield swarm
        finally:
            for r in swarm.robots:
                if r.process.poll() is None:
                    os.kill(r.pid, signal.SIGKILL)
                    r.process.wait()


def test_restarted_daemons_relink_and_keep_their_ports(swarm3: Swarm) -> None:
    ports = [_port(r.listen_addrs) for r in swarm3.robots]
    # 1. everybody stops (SIGTERM) and restarts: every port comes back, the mesh too
    swarm3.stop()
    swarm3.start_many([2, 1, 0], ready_timeout_s=TIMEOUT)  # the bootstrap robot last
    assert [_port(r.listen_addrs) for r in swarm3.robots] == ports
    swarm3.wait_peers(2, TIMEOUT)
    # 2. robot 1 dies while the bootstrap robot is down, and its port is taken meanwhile:
    #    it comes back on a new port, finds robot 2 from its saved peers, and robot 0 (back
    #    later on its old port) learns robot 1's new address from either of them
    kill_robot(swarm3.robots[0])
    kill_robot(swarm3.robots[1])
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", ports[1]))
        squatter.listen()
        moved = swarm3.start(1, ready_timeout_s=TIMEOUT)
        assert _port(moved.listen_addrs) != ports[1]
        swarm3.call(1, "wait", {"peers": 1, "timeout_s": TIMEOUT}, timeout_s=TIMEOUT + 5)
        swarm3.start(0, ready_timeout_s=TIMEOUT)
        swarm3.wait_peers(2, TIMEOUT)
    # 3. the saved addresses are the newest ones
    stop_robot(swarm3.robots[2])
    with SqliteStore.open(swarm3.robots[2].home) as store:
        saved = {p.peer_id: p.address for p in store.list_peers()}
    assert saved == {swarm3.robots[0].peer_id: swarm3.robots[0].listen_addrs[0],
                     swarm3.robots[1].peer_id: moved.listen_addrs[0]}
