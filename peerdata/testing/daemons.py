"""One `peerdata run` daemon as a child process: start it with a readiness pipe, stop it by PID
(SIGTERM, then SIGKILL after a timeout), kill it, read its peak memory, edit its config.

Rule: a child is waited on through its readiness pipe, never a fixed sleep; every start either
returns a ready `Robot` or raises SwarmError with the tail of the child's stderr.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomlkit

from peerdata.errors import PeerdataError

# The child runs the `peerdata run` command through `peerdata.cli.run.main`, which skips
# importing the other commands (numpy, datasets...): ~35 MB less per daemon. `-c` keeps this
# independent of where the console script was installed.
_ENTRY = "from peerdata.cli.run import main; main()"
LOOPBACK = "/ip4/127.0.0.1/tcp/0"
Settings = Mapping[str, Mapping[str, Any]]
"""config.toml settings: section -> key -> value."""


class SwarmError(PeerdataError):
    """A swarm daemon failed to start, to connect, or to deliver its images in time."""


@dataclass
class Robot:
    """One running daemon started by this module."""

    index: int
    home: Path
    process: subprocess.Popen[bytes]
    peer_id: str = ""
    listen_addrs: tuple[str, ...] = ()
    control: str = ""

    @property
    def pid(self) -> int:
        return self.process.pid


def spawn_robot(index: int, home: Path, *, log_level: str = "info",
                prefix: Sequence[str] = (), entry: str = _ENTRY,
                stdin: int = subprocess.DEVNULL) -> tuple[Robot, int]:
    """Start `peerdata run --home HOME --ready-fd W`; return it and the pipe's read end.

    `prefix` runs it through another program (`ip netns exec NS`, see testing/netem.py);
    `entry` is the child's `-c` code (another main taking the same options), `stdin` its input.
    """
    read_fd, write_fd = os.pipe()
    stderr = open(home / "daemon.stderr", "ab")  # noqa: SIM115 - handed to the child
    try:
        process = subprocess.Popen(
            [*prefix, sys.executable, "-c", entry, "--home", str(home),
             "--ready-fd", str(write_fd), "--log-level", log_level],
            stdin=stdin, stdout=subprocess.DEVNULL, stderr=stderr,
            pass_fds=(write_fd,), start_new_session=True,  # our Ctrl-C is ours to relay
        )
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)  # the child holds the only write end: EOF means it died
        stderr.close()
    return Robot(index, home, process), read_fd


def await_ready(robot: Robot, read_fd: int, timeout_s: float) -> Robot:
    """Read the robot's readiness line (closing `read_fd`); stop it if it never comes.

    Raises:
        SwarmError: the daemon exited or stayed silent for `timeout_s`.
    """
    try:
        info = _read_ready(read_fd, timeout_s, robot.process)
    except BaseException:
        stop_robot(robot, timeout_s=5.0)
        raise
    finally:
        os.close(read_fd)
    robot.peer_id = str(info["peer_id"])
    robot.listen_addrs = tuple(info["listen_addrs"])
    robot.control = str(info["control"])
    return robot


def start_robot(index: int, home: Path, *, ready_timeout_s: float = 60.0,
                log_level: str = "info") -> Robot:
    """Start `peerdata run --home HOME` and return once it reported readiness on its pipe.

    Raises:
        SwarmError: the daemon exited or stayed silent for `ready_timeout_s`.
    """
    robot, read_fd = spawn_robot(index, home, log_level=log_level)
    return await_ready(robot, read_fd, ready_timeout_s)


def _read_ready(fd: int, timeout_s: float, process: subprocess.Popen[bytes]) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    buf = b""
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            raise SwarmError(f"daemon pid {process.pid} not ready within {timeout_s} s")
        readable, _, _ = select.select([fd], [], [], left)
        if not readable:
            continue
        chunk = os.read(fd, 4096)
        if not chunk:
            code = process.wait(timeout=timeout_s)
            raise SwarmError(f"daemon pid {process.pid} exited with code {code} before ready"
                             f"{_stderr_tail(process)}")
        buf += chunk
    return dict(json.loads(buf.split(b"\n", 1)[0]))


def _stderr_tail(process: subprocess.Popen[bytes]) -> str:
    """The last error line the daemon wrote (its stderr goes to HOME/daemon.stderr)."""
    home = Path(process.args[process.args.index("--home") + 1])  # type: ignore[union-attr,index,arg-type]
    try:
        text = (home / "daemon.stderr").read_text(errors="replace")
    except OSError:
        return ""
    start = text.rfind("error:")  # the CLI's one error message, possibly wrapped by rich
    tail = text[start:] if start >= 0 else (text.strip().splitlines() or [""])[-1]
    return f": {' '.join(tail.split())}" if tail.strip() else ""


def stop_robot(robot: Robot, *, timeout_s: float = 10.0, terminate: bool = True) -> int | None:
    """SIGTERM by PID, wait up to `timeout_s`, then SIGKILL. Returns the exit code.

    With `terminate=False` the SIGTERM is taken as sent already (a second one would cut the
    graceful shutdown short).
    """
    process = robot.process
    if process.poll() is None:
        if terminate:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL)
            process.wait()
    return process.returncode


def peak_rss_mib(pid: int) -> float | None:
    """A live process's peak resident memory (VmHWM, MiB), or None (gone, not Linux)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError, IndexError):
        return None
    return None


def kill_robot(robot: Robot) -> None:
    """SIGKILL by PID, no grace (for crash tests)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(robot.pid, signal.SIGKILL)
    robot.process.wait()


def edit_config(home: Path, settings: Settings) -> None:
    """Set `[section] key = value` in HOME/config.toml, keeping its comments (tomlkit).

    A key missing from its section is added at the section's end; a missing section is appended.
    """
    path = home / "config.toml"
    doc = tomlkit.parse(path.read_text(encoding="utf-8"))
    for section, values in settings.items():
        if section not in doc:
            doc[section] = tomlkit.table()
        table = doc[section]
        for key, value in values.items():
            table[key] = list(value) if isinstance(value, tuple) else value  # type: ignore[index]
    path.write_text(tomlkit.dumps(doc), encoding="utf-8")


def cli_json(home: Path, *args: str, timeout_s: float = 120.0) -> dict[str, Any]:
    """Run `peerdata ARGS --home HOME --format json` as a user would; the last stdout line is
    the answer (a non-zero exit raises CalledProcessError)."""
    out = subprocess.run(
        [sys.executable, "-c", "from peerdata.cli.main import main; main()", *args,
         "--home", str(home), "--format", "json"],
        capture_output=True, text=True, timeout=timeout_s, check=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))
