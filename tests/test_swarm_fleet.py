"""Real daemons on 127.0.0.1: mesh through a bootstrap, share, survive a SIGKILL, restart.

Every assertion goes through the CLI's JSON output (`peerdata peers/status --format json` run as
a subprocess); the daemons report readiness on a pipe, and the fixture kills them by PID.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from peerdata.exit_codes import ExitCode
from peerdata.store import SqliteStore
from peerdata.testing.swarm import Swarm, kill_robot, open_swarm, share_all, write_images

pytestmark = [pytest.mark.swarm, pytest.mark.slow]

_ENTRY = "from peerdata.cli.main import main; main()"
TIMEOUT = 60.0


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a subprocess."""
    return subprocess.run([sys.executable, "-c", _ENTRY, *args], capture_output=True, text=True,
                          timeout=TIMEOUT, check=False)


def cli_json(*args: str) -> dict[str, Any]:
    """Run the real CLI with `--format json` and parse the JSON on its last stdout line."""
    proc = cli(*args, "--format", "json")
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def connected(swarm: Swarm, index: int) -> set[str]:
    peers = cli_json("peers", "--home", str(swarm.robots[index].home))["peers"]
    return {p["peer_id"] for p in peers if p["connected"]}


@pytest.fixture
def swarm3(tmp_path: Path) -> Iterator[Swarm]:
    out = tmp_path / "s"
    with open_swarm(3, out, ready_timeout_s=TIMEOUT) as swarm:
        try:
            swarm.wait_peers(2, TIMEOUT)
            yield swarm
        finally:
            for r in swarm.robots:  # belt and braces: nothing outlives the test
                if r.process.poll() is None:
                    os.kill(r.pid, signal.SIGKILL)
                    r.process.wait()


def test_three_daemons_mesh_and_share_verified_images(swarm3: Swarm) -> None:
    ids = [r.peer_id for r in swarm3.robots]
    for i in range(3):
        assert connected(swarm3, i) == set(ids) - {ids[i]}
    expected = share_all(swarm3, images_per_pair=2)
    for r in swarm3.robots:
        swarm3.call(r.index, "wait", {"images_received": expected, "timeout_s": TIMEOUT},
                    timeout_s=TIMEOUT + 5)
    for r in swarm3.robots:
        status = cli_json("status", "--home", str(r.home))
        assert status["peer_id"] == r.peer_id
        assert status["images_verified"] == expected == 4
        assert status["images_rejected"] == 0 and status["samples_received"] == 4
        assert status["images_sent"] == 4 and status["bytes_sent"] > 0
    # exit codes through the daemon: a non-image is DATA, a second daemon on a home UNREACHABLE
    not_image = swarm3.out / "notes.txt"
    not_image.write_text("hello")
    home0 = str(swarm3.robots[0].home)
    sent = cli("send", str(not_image), "--to", ids[1], "--home", home0)
    assert sent.returncode == ExitCode.DATA and "not a PNG or JPEG" in " ".join(sent.stderr.split())
    second = cli("run", "--home", home0)
    assert second.returncode == ExitCode.UNREACHABLE
    assert "already serving" in " ".join(second.stderr.split())
    assert cli_json("status", "--home", home0)["pid"] == swarm3.robots[0].pid  # unharmed
    # SIGINT is a graceful stop too, with the documented exit code
    r2 = swarm3.robots[2]
    os.kill(r2.pid, signal.SIGINT)
    assert r2.process.wait(timeout=TIMEOUT) == ExitCode.INTERRUPTED
    assert not (r2.home / "control.sock").exists()


def test_sigkill_mid_transfer_then_restart_from_home(swarm3: Swarm) -> None:
    r0, r1, r2 = swarm3.robots
    # r2 first receives two images and stores them
    paths = write_images(swarm3.out / "images" / "first", [1000, 1001])
    swarm3.call(0, "send", {"paths": [str(p) for p in paths], "to": r2.peer_id})
    swarm3.call(2, "wait", {"images_received": 2, "timeout_s": TIMEOUT}, timeout_s=TIMEOUT + 5)
    # then r1 offers a large batch and r2 dies while fetching it
    big = write_images(swarm3.out / "images" / "big", list(range(2000, 2030)), size=256)
    swarm3.call(1, "send", {"paths": [str(p) for p in big], "to": r2.peer_id})
    kill_robot(r2)
    # the survivors see the link go down, log it with the peer ID, and keep serving
    for i in (0, 1):
        swarm3.call(i, "wait", {"peers": 1, "timeout_s": TIMEOUT}, timeout_s=TIMEOUT + 5)
        assert connected(swarm3, i) == {swarm3.robots[1 - i].peer_id}
        log = (swarm3.robots[i].home / "node.log").read_text().splitlines()
        assert {"event": "link_down", "peer": r2.peer_id} in [
            {k: e.get(k) for k in ("event", "peer")} for e in map(json.loads, log)]
    more = write_images(swarm3.out / "images" / "after", [3000])
    swarm3.call(0, "send", {"paths": [str(more[0])], "to": r1.peer_id})
    swarm3.call(1, "wait", {"images_received": 1, "timeout_s": TIMEOUT}, timeout_s=TIMEOUT + 5)
    # r2 restarts from its home: same peer ID, its samples still there, back in the mesh
    again = swarm3.start(2, ready_timeout_s=TIMEOUT)
    assert again.peer_id == r2.peer_id
    swarm3.wait_peers(2, TIMEOUT)
    # r1 kept its send in the outbox: the batch r2 died fetching arrives after the restart
    swarm3.call(2, "wait", {"samples_received": 32, "timeout_s": TIMEOUT}, timeout_s=TIMEOUT + 5)
    status = cli_json("status", "--home", str(again.home))
    assert status["samples_received"] == 32
    assert connected(swarm3, 2) == {r0.peer_id, r1.peer_id}
    assert (again.home / "node.pid").read_text().split()[0] == str(again.pid)
    swarm3.stop()
    assert [r.process.returncode for r in swarm3.robots] == [0, 0, 0]  # graceful on SIGTERM
    assert not (again.home / "node.pid").exists() and not (again.home / "control.sock").exists()
    with SqliteStore.open(again.home) as store:  # every stored sample's bytes verify
        samples = store.list_samples(source="received")
        assert len(samples) == status["samples_received"]
        for sample in samples:
            store.get_blob(sample.cid)
