"""The daemon under a service manager: sd_notify readiness on $NOTIFY_SOCKET (what systemd's
Type=notify waits for), a SIGHUP reload that applies the log level and reports what needs a
restart, and STOPPING on SIGTERM. One real daemon; synchronised on its notify messages."""

from __future__ import annotations

import json
import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from peerdata.node.home import init_home
from peerdata.ops.service import sd_notify
from peerdata.testing.swarm import LOOPBACK, edit_config, start_robot, stop_robot

pytestmark = [pytest.mark.swarm]


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(120)
    try:
        yield sock, path
    finally:
        sock.close()


def test_sd_notify_without_systemd_is_a_no_op() -> None:
    assert sd_notify("READY=1", env={}) is False
    assert sd_notify("READY=1", env={"NOTIFY_SOCKET": "relative/path"}) is False


def test_notify_ready_reload_and_stop(tmp_path: Path, notify_socket: tuple[socket.socket, str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    sock, path = notify_socket
    home = tmp_path / "robot"
    init_home(home, listen=(LOOPBACK,))
    edit_config(home, {"round": {"interval_s": 0.0, "scenario": "synthetic-3"}})
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    robot = start_robot(0, home, ready_timeout_s=120)
    try:
        ready = sock.recv(4096).decode()
        assert ready == f"READY=1\nMAINPID={robot.pid}"
        edit_config(home, {"log": {"level": "debug"}, "round": {"interval_s": 5.0}})
        os.kill(robot.pid, signal.SIGHUP)
        assert sock.recv(4096) == b"RELOADING=1"
        assert sock.recv(4096) == b"READY=1"
        events = [json.loads(x) for x in (home / "node.log").read_text().splitlines()]
        [reloaded] = [e for e in events if e["event"] == "reloaded"]
        assert reloaded["applied"] == "log.level"
        assert reloaded["needs_restart"] == "round.interval_s"
        edit_config(home, {"round": {"budget_fraction": 9}})  # invalid: refused, still running
        os.kill(robot.pid, signal.SIGHUP)
        assert sock.recv(4096) == b"RELOADING=1"
        assert sock.recv(4096) == b"READY=1"
        events = [json.loads(x) for x in (home / "node.log").read_text().splitlines()]
        assert any(e["event"] == "reload_refused" and "budget_fraction" in e["error"]
                   for e in events)
        assert robot.process.poll() is None
    finally:
        assert stop_robot(robot) == 0
    assert sock.recv(4096) == b"STOPPING=1"


def test_the_systemd_unit_verifies(tmp_path: Path) -> None:
    import shutil
    import subprocess
    import sys

    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian: package systemd)")
    unit = (Path(__file__).parents[1] / "deploy" / "peerdata.service").read_text()
    assert "Type=notify" in unit and "Restart=on-failure" in unit
    assert "NoNewPrivileges=true" in unit and "ProtectSystem=strict" in unit
    exe = Path(sys.executable).with_name("peerdata")
    if not exe.exists():
        pytest.skip(f"{exe} is not installed (pip install -e .)")
    local = tmp_path / "peerdata.service"
    local.write_text(unit.replace("/opt/peerdata/.venv/bin/peerdata", str(exe)))
    done = subprocess.run([analyze, "verify", str(local)], capture_output=True, text=True,
                          timeout=60)
    problems = [line for line in done.stderr.splitlines()
                if "peerdata.service" in line and "User" not in line]
    assert done.returncode == 0 and not problems, done.stderr
