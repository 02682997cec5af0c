"""A local swarm: N real `peerdata run` daemons on 127.0.0.1, driven through their control sockets.

Rule: every child is started with a readiness pipe and waited on through it (never a fixed
sleep), and every child this module starts is stopped by PID (SIGTERM, then SIGKILL after a
timeout) when the `open_swarm` block exits, however it exits (Ctrl-C included).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from peerdata.control.client import call
from peerdata.errors import ControlError
from peerdata.node.home import init_home
from peerdata.testing.daemons import (
    LOOPBACK,
    Robot,
    Settings,
    SwarmError,
    await_ready,
    edit_config,
    kill_robot,
    peak_rss_mib,
    spawn_robot,
    start_robot,
    stop_robot,
)
from peerdata.testing.netem import Netem, open_netem

__all__ = ["LOOPBACK", "Robot", "RobotReport", "Settings", "Swarm", "SwarmError",
           "SwarmReport", "await_ready", "collect", "edit_config", "kill_robot", "make_image",
           "open_swarm", "run_swarm", "share_all", "spawn_robot", "start_robot", "stop_robot",
           "write_images"]

# A SIGTERMed daemon spends up to node/rounds.DRAIN_S (10 s) delivering waiting votes and then
# shuts down; a stop that gives up sooner SIGKILLs a healthy daemon on a loaded machine.
STOP_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class RobotReport:
    """What one robot did during a swarm run (the `--format json` row)."""

    index: int
    peer_id: str
    peers: int
    images_sent: int
    images_received: int
    images_verified: int
    images_rejected: int
    bytes_sent: int
    bytes_received: int
    peak_rss_mib: float | None = None


@dataclass(frozen=True)
class SwarmReport:
    """The outcome of `run_swarm`."""

    robots: tuple[RobotReport, ...]
    rounds: int
    images_per_pair: int
    expected_per_robot: int
    ok: bool
    out: str
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Swarm:
    """Running robots; robot 0 is the bootstrap node.

    `settings(index)` is written into each new home's config.toml before its daemon starts.
    With `netem`, each robot runs in its own network namespace behind an emulated link.
    """

    out: Path
    robots: list[Robot] = field(default_factory=list)
    settings: Callable[[int], Settings] | None = None
    netem: Netem | None = None
    memory: dict[int, float] = field(default_factory=dict)  # peak RSS (MiB) seen at stops

    def home(self, index: int) -> Path:
        return self.out / f"robot-{index}"

    def start(self, index: int, *, ready_timeout_s: float = 60.0) -> Robot:
        """Create (or reuse) robot `index`'s home and start its daemon."""
        return self.start_many([index], ready_timeout_s=ready_timeout_s)[0]

    def start_many(self, indices: list[int], *, ready_timeout_s: float = 60.0) -> list[Robot]:
        """Start several robots at once (all spawned, then each awaited on its pipe).

        Robot 0 is the bootstrap: start it alone first, so the others know its address.
        """
        spawned: list[tuple[Robot, int]] = []
        try:
            for index in indices:
                home = self.home(index)
                bootstrap = () if index == 0 else tuple(self.robots[0].listen_addrs[:1])
                listen = LOOPBACK if self.netem is None else self.netem.listen(index)
                made = init_home(home, name=f"robot-{index}", listen=(listen,),
                                 bootstrap=bootstrap)
                if made.created_config and self.settings is not None:
                    edit_config(home, self.settings(index))
                prefix: list[str] = []
                if self.netem is not None:
                    self.netem.add_robot(index)
                    prefix = self.netem.prefix(index)
                robot, read_fd = spawn_robot(index, home, prefix=prefix)
                spawned.append((robot, read_fd))
                if index < len(self.robots):
                    self.robots[index] = robot
                else:
                    self.robots.append(robot)
            deadline = time.monotonic() + ready_timeout_s
            while spawned:
                robot, read_fd = spawned.pop(0)
                await_ready(robot, read_fd, max(deadline - time.monotonic(), 0.1))
        finally:
            for _, read_fd in spawned:  # an earlier one failed: the rest are stopped on exit
                os.close(read_fd)
        return [self.robots[i] for i in indices]

    def call(self, index: int, cmd: str, args: dict[str, Any] | None = None,
             timeout_s: float = 30.0) -> dict[str, Any]:
        """Send one control command to robot `index`."""
        return call(self.robots[index].home, cmd, args, timeout_s=timeout_s)

    def wait_peers(self, count: int, timeout_s: float = 60.0) -> None:
        """Block until every live robot has `count` connected peers (the daemon waits)."""
        for r in self.robots:
            if r.process.poll() is None:
                self.call(r.index, "wait", {"peers": count, "timeout_s": timeout_s},
                          timeout_s=timeout_s + 5)

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Stop every robot (in parallel: SIGTERM all, then wait, then SIGKILL stragglers).

        Each live daemon's peak memory is recorded first (`memory`, and OUT/memory.json).
        """
        for r in self.robots:
            if r.process.poll() is None and (mib := peak_rss_mib(r.pid)) is not None:
                self.memory[r.index] = max(mib, self.memory.get(r.index, 0.0))
        if self.memory:
            with contextlib.suppress(OSError):
                (self.out / "memory.json").write_text(json.dumps(
                    {"peak_rss_mib": {str(i): m for i, m in sorted(self.memory.items())}}))
        for r in self.robots:
            if r.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(r.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for r in self.robots:
            stop_robot(r, timeout_s=max(deadline - time.monotonic(), 0.1), terminate=False)


@contextlib.contextmanager
def open_swarm(count: int, out: Path, *, ready_timeout_s: float = 60.0,
               stop_timeout_s: float = STOP_TIMEOUT_S,
               settings: Callable[[int], Settings] | None = None,
               netem: str | None = None) -> Iterator[Swarm]:
    """Start `count` daemons under `out` (robot 0 first, as bootstrap); stop all on exit.

    `settings(index)` goes into robot `index`'s config.toml before its daemon starts.
    `netem` (a `tc netem` spec, e.g. "delay 50ms loss 2%"): each daemon in its own network
    namespace behind a link shaped so (testing/netem.py; root only), all deleted on exit.
    """
    if count < 1:
        raise SwarmError("a swarm needs at least one robot")
    out.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        network = stack.enter_context(open_netem(netem)) if netem else None
        yield stack.enter_context(_running(count, out, ready_timeout_s, stop_timeout_s,
                                           Swarm(out, settings=settings, netem=network)))


@contextlib.contextmanager
def _running(count: int, out: Path, ready_timeout_s: float, stop_timeout_s: float,
             swarm: Swarm) -> Iterator[Swarm]:
    try:
        swarm.start(0, ready_timeout_s=ready_timeout_s)
        if count > 1:
            swarm.start_many(list(range(1, count)), ready_timeout_s=ready_timeout_s)
        yield swarm
    finally:
        swarm.stop(stop_timeout_s)


def make_image(seed: int, size: int = 64) -> bytes:
    """A small PNG: a drawn digit over a seeded pattern (unique per seed)."""
    import cv2  # deferred: only image-making needs opencv
    import numpy as np

    rng = np.random.default_rng(seed)
    img = (rng.random((size, size, 3)) * 60).astype(np.uint8)
    cv2.putText(img, str(seed % 10), (size // 4, 3 * size // 4), cv2.FONT_HERSHEY_SIMPLEX,
                size / 40, (255, 255, 255), 2)
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise SwarmError("opencv could not encode a PNG")
    return bytes(buf.tobytes())


def write_images(directory: Path, seeds: list[int], size: int = 64) -> list[Path]:
    """Write `make_image(seed, size)` for each seed under `directory`; return the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for seed in seeds:
        path = directory / f"img-{seed}.png"
        path.write_bytes(make_image(seed, size))
        paths.append(path)
    return paths


def share_all(swarm: Swarm, images_per_pair: int, round_no: int = 0,
              timeout_s: float = 60.0) -> int:
    """Every robot offers `images_per_pair` fresh images to every other robot.

    Returns how many images each robot should have received after this round.
    """
    n = len(swarm.robots)
    for src in swarm.robots:
        for dst in swarm.robots:
            if dst.index == src.index:
                continue
            base = ((round_no * n + src.index) * n + dst.index) * images_per_pair
            paths = write_images(swarm.out / "images" / f"robot-{src.index}",
                                 [base + k for k in range(images_per_pair)])
            swarm.call(src.index, "send", {"paths": [str(p) for p in paths],
                                           "to": dst.peer_id, "label": round_no},
                       timeout_s=timeout_s)
    return (n - 1) * images_per_pair


def collect(swarm: Swarm) -> list[RobotReport]:
    """Ask each robot for its counters."""
    reports = []
    for r in swarm.robots:
        s = swarm.call(r.index, "status")
        reports.append(RobotReport(
            index=r.index, peer_id=r.peer_id, peers=int(s["peers_connected"]),
            images_sent=int(s["images_sent"]), images_received=int(s["images_received"]),
            images_verified=int(s["images_verified"]),
            images_rejected=int(s["images_rejected"]), bytes_sent=int(s["bytes_sent"]),
            bytes_received=int(s["bytes_received"]), peak_rss_mib=peak_rss_mib(r.pid),
        ))
    return reports


def run_swarm(robots: int, out: Path, *, rounds: int = 1, images_per_pair: int = 2,
              timeout_s: float = 60.0, netem: str | None = None) -> SwarmReport:
    """Start a swarm, let it mesh through robot 0, share images all-to-all, report, stop.

    Raises:
        SwarmError: a daemon did not start or mesh within `timeout_s`.
    """
    notes: list[str] = []
    with open_swarm(robots, out, ready_timeout_s=timeout_s, netem=netem) as swarm:
        swarm.wait_peers(robots - 1, timeout_s)
        expected = 0
        for round_no in range(rounds):
            expected += share_all(swarm, images_per_pair, round_no, timeout_s)
        ok = True
        for r in swarm.robots:
            try:
                swarm.call(r.index, "wait", {"images_received": expected,
                                             "timeout_s": timeout_s}, timeout_s=timeout_s + 5)
            except ControlError as exc:
                ok = False
                notes.append(f"robot {r.index}: {exc}")
        reports = collect(swarm)
    ok = ok and all(r.images_verified == expected for r in reports)
    return SwarmReport(tuple(reports), rounds, images_per_pair, expected, ok, str(out),
                       tuple(notes))
