"""The CLI in-process: init, help texts, and the documented exit codes for bad homes and keys."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from peerdata.cli.main import _register_all, app
from peerdata.exit_codes import ExitCode

_register_all()
runner = CliRunner()


def _init(home: Path, *extra: str) -> dict[str, object]:
    result = runner.invoke(app, ["init", "--home", str(home), "--format", "json", *extra])
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def test_init_creates_private_key_and_config(tmp_path: Path) -> None:
    home = tmp_path / "r1"
    out = _init(home, "--name", "robot-1", "--bootstrap", "/ip4/10.0.0.1/tcp/4001/p2p/12D3KooX")
    assert out["created_key"] and out["created_config"]
    assert str(out["peer_id"]).startswith("12D3KooW")
    assert stat.S_IMODE(os.stat(home / "node.key").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(home).st_mode) == 0o700
    config = (home / "config.toml").read_text()
    assert 'name = "robot-1"' in config and "/ip4/10.0.0.1/tcp/4001" in config


def test_init_again_never_overwrites_key_or_config(tmp_path: Path) -> None:
    home = tmp_path / "r1"
    first = _init(home)
    key = (home / "node.key").read_bytes()
    (home / "config.toml").write_text((home / "config.toml").read_text() + "# mine\n")
    second = _init(home, "--name", "other")
    assert second["peer_id"] == first["peer_id"]
    assert not second["created_key"] and not second["created_config"]
    assert (home / "node.key").read_bytes() == key
    assert (home / "config.toml").read_text().endswith("# mine\n")


def test_home_defaults_to_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PEERDATA_HOME", str(tmp_path / "envhome"))
    result = runner.invoke(app, ["init", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "envhome" / "node.key").exists()


@pytest.mark.parametrize("command", ["init", "run", "status", "peers", "send", "swarm"])
def test_every_command_has_teaching_help(command: str) -> None:
    result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "100"})
    assert result.exit_code == 0
    assert "Examples" in result.stdout and f"peerdata {command}" in result.stdout


def test_status_without_daemon_exits_unreachable(tmp_path: Path) -> None:
    _init(tmp_path / "r")
    for cmd in ("status", "peers"):
        result = runner.invoke(app, [cmd, "--home", str(tmp_path / "r")])
        assert result.exit_code == ExitCode.UNREACHABLE
        assert "no daemon is running" in result.output


def test_send_missing_image_exits_data(tmp_path: Path) -> None:
    result = runner.invoke(app, ["send", str(tmp_path / "nope.png"), "--to", "12D3KooWx",
                                 "--home", str(tmp_path)])
    assert result.exit_code == ExitCode.DATA
    assert "no such image file" in result.output


def test_run_on_missing_home_exits_config(tmp_path: Path) -> None:
    result = runner.invoke(app, ["run", "--home", str(tmp_path / "absent")])
    assert result.exit_code == ExitCode.CONFIG
    assert "peerdata init" in result.output


def test_run_with_world_readable_key_exits_config(tmp_path: Path) -> None:
    home = tmp_path / "r"
    _init(home)
    os.chmod(home / "node.key", 0o644)
    result = runner.invoke(app, ["run", "--home", str(home)])
    assert result.exit_code == ExitCode.CONFIG
    assert "refusing to start" in result.output and "chmod 600" in result.output


def test_run_with_a_file_as_home_exits_config(tmp_path: Path) -> None:
    home = tmp_path / "file"
    home.write_text("not a dir")
    result = runner.invoke(app, ["run", "--home", str(home)])
    assert result.exit_code == ExitCode.CONFIG
    assert "not a directory" in result.output


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any directory")
def test_run_with_unreadable_home_exits_config(tmp_path: Path) -> None:
    home = tmp_path / "r"
    _init(home)
    os.chmod(home, 0)
    try:
        result = runner.invoke(app, ["run", "--home", str(home)])
    finally:
        os.chmod(home, 0o700)
    assert result.exit_code == ExitCode.CONFIG
    assert "not readable" in result.output or "cannot read" in result.output


def test_run_with_a_home_below_a_file_exits_config(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    result = runner.invoke(app, ["run", "--home", str(tmp_path / "file" / "home")])
    assert result.exit_code == ExitCode.CONFIG
    assert "cannot read home" in result.output


def test_swarm_launcher_reports_a_daemon_that_dies_before_ready(tmp_path: Path) -> None:
    from peerdata.testing.swarm import SwarmError, start_robot

    home = tmp_path / "r"
    _init(home)
    os.chmod(home / "node.key", 0o640)  # the daemon refuses to start
    with pytest.raises(SwarmError, match="exited with code 3 before ready.*refusing"):
        start_robot(0, home, ready_timeout_s=30)


def test_run_with_corrupt_config_exits_config(tmp_path: Path) -> None:
    home = tmp_path / "r"
    _init(home)
    (home / "config.toml").write_text("[net]\nlisten = 3\n")
    result = runner.invoke(app, ["run", "--home", str(home)])
    assert result.exit_code == ExitCode.CONFIG
    assert "net.listen" in result.output
