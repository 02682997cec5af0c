"""`peerdata doctor` on real homes: exit 0 on a fresh one (warnings allowed), and a specific
message with a distinct exit code for a world-readable key, a corrupt detector model, a full
disk and an unreachable peer."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from peerdata.cli.main import _register_all, app
from peerdata.node.home import init_home
from peerdata.ops.doctor import DoctorCode
from peerdata.testing.swarm import edit_config

runner = CliRunner()


def doctor(home: Path, *args: str) -> tuple[int, dict[str, Any]]:
    _register_all()
    result = runner.invoke(app, ["doctor", "--home", str(home), "--format", "json", *args])
    return result.exit_code, json.loads(result.stdout.strip().splitlines()[-1])


def failures(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in report["checks"] if c["status"] == "fail"]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    init_home(tmp_path / "robot", name="robot")
    return tmp_path / "robot"


def test_fresh_home_passes_with_warnings_allowed(home: Path) -> None:
    code, report = doctor(home, "--min-free-bytes", "1")
    assert code == 0 and report["ok"] and report["failed"] == 0
    names = {c["name"] for c in report["checks"]}
    assert names == {"home", "key", "config", "disk", "models", "peers", "clock"}
    clock = next(c for c in report["checks"] if c["name"] == "clock")
    assert clock["status"] == "warn" and "no daemon running" in clock["message"]


def test_world_readable_key(home: Path) -> None:
    os.chmod(home / "node.key", 0o644)
    code, report = doctor(home, "--min-free-bytes", "1")
    assert code == DoctorCode.KEY_PERMISSIONS == 21
    [fail] = failures(report)
    assert fail["name"] == "key" and "mode 0644" in fail["message"]
    assert "chmod 600" in fail["message"]


def test_corrupt_detector_model(home: Path) -> None:
    model = home / "face_detection_yunet.onnx"
    model.write_bytes(b"\x08\x07this is not an onnx model" * 100)
    edit_config(home, {"privacy": {"yunet_model": str(model)}})
    code, report = doctor(home, "--min-free-bytes", "1")
    assert code == DoctorCode.MODEL_CORRUPT == 24
    [fail] = failures(report)
    assert fail["name"] == "models" and "detector model unusable" in fail["message"]
    assert str(model) in fail["message"]


def test_model_not_matching_its_sha256(home: Path) -> None:
    model = home / "face_detection_yunet.onnx"
    model.write_bytes(b"whatever")
    edit_config(home, {"privacy": {"yunet_model": str(model), "yunet_sha256": "0" * 64}})
    code, report = doctor(home, "--min-free-bytes", "1")
    assert code == 24 and "sha256" in failures(report)[0]["message"].lower()


def test_disk_below_the_minimum(home: Path) -> None:
    free = shutil.disk_usage(home).free
    code, report = doctor(home, "--min-free-bytes", str(free * 2))  # the real reading, too low
    assert code == DoctorCode.DISK_FULL == 23
    [fail] = failures(report)
    assert fail["name"] == "disk" and fail["message"].startswith("disk full:")


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs (root only; skipped elsewhere)."""
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a tmpfs needs root (the --min-free-bytes test covers the check)")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_really_full_disk(small_fs: Path) -> None:
    init_home(small_fs / "robot")
    with contextlib.suppress(OSError), open(small_fs / "filler", "wb") as f:
        while True:
            f.write(b"\0" * 65536)
    code, report = doctor(small_fs / "robot")  # the default minimum
    assert code == 23 and "0 MiB free" in failures(report)[0]["message"]


def test_unreachable_peer(home: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on: bound, never listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        peer = f"/ip4/127.0.0.1/tcp/{port}/p2p/12D3KooWLRhSShcwDWqkgAR5hK4EHhQiSrnKDrYLTYhkZA5M5kxt"
        edit_config(home, {"net": {"bootstrap": [peer]}})
        code, report = doctor(home, "--min-free-bytes", "1", "--peer-timeout", "2")
    assert code == DoctorCode.PEER_UNREACHABLE == 25
    [fail] = failures(report)
    assert fail["name"] == "peers" and fail["message"].startswith(f"peer unreachable: {peer}")


def test_reachable_peer_and_invalid_config(home: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        peer = f"/ip4/127.0.0.1/tcp/{s.getsockname()[1]}/p2p/12D3KooWpeer"
        edit_config(home, {"net": {"bootstrap": [peer]}})
        code, report = doctor(home, "--min-free-bytes", "1")
    assert code == 0 and any(c["name"] == "peers" and c["status"] == "ok"
                             for c in report["checks"])
    edit_config(home, {"round": {"budget_fraction": 7}})
    code, report = doctor(home, "--min-free-bytes", "1")
    assert code == 3 and "budget_fraction" in failures(report)[0]["message"]


def test_each_failure_has_its_own_code() -> None:
    codes = [int(c) for c in DoctorCode if c != DoctorCode.OK]
    assert len(set(codes)) == len(codes) and 0 not in codes


def test_clock_skew_from_the_offsets_the_daemon_measured() -> None:
    from peerdata.ops.doctor import check_clock

    near = check_clock({"clock_offsets_s": {"peerA": 0.2, "peerB": -3.0}})
    assert [c.status for c in near] == ["ok", "ok"]
    far = check_clock({"clock_offsets_s": {"peerA": 12.0, "peerB": -45.0}})
    assert [(c.status, c.code) for c in far] == [("warn", 0), ("fail", 26)]
    assert "peerB: its clock is 45.0 s ahead of ours" in far[1].message
    assert check_clock({})[0].status == "warn"  # nothing signed received yet: not measured
