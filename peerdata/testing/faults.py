"""A seeded fleet-fault run: real daemons sharing images round after round while a plan of
faults hits them (kill -9 and restart with the same home, SIGSTOP past a round, partitions
that heal, robots leaving and rejoining), then every home checked and a ledger of what was
offered and what arrived.

Rule: the plan is a pure function of (seed, robots, rounds, timing), so a run can be repeated;
each fault runs on its own thread, holding its robot's lock (a robot is never killed while
frozen, or restarted twice); a fault whose robot is down or busy is redrawn (seeded) onto a
free present robot, so every planned fault is applied unless none is free until the run's end;
everything is healed and restarted before the check.
Partitions need emulated links (`netem`); without them each is recorded as skipped.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from peerdata.errors import PeerdataError
from peerdata.testing import faultrounds
from peerdata.testing.storecheck import HomeCheck, check_home
from peerdata.testing.swarm import Swarm, kill_robot, open_swarm, stop_robot, write_images

RELINK_TIMEOUT_S = 30.0
REDRAW_POLL_S = 0.2  # a fault whose robot is down or busy looks for a free one this often


@dataclass(frozen=True)
class Fault:
    """One fault: at `at_s` seconds into the run, `kind` hits `robot` for `hold_s` seconds."""

    at_s: float
    kind: str  # kill9 | freeze | partition
    robot: int
    hold_s: float


@dataclass(frozen=True)
class FaultPlan:
    """The faults, and per round the robots that leave for it (churn)."""

    seed: int
    faults: tuple[Fault, ...]
    churn: tuple[tuple[int, ...], ...]


def plan_faults(seed: int, robots: int, rounds: int, round_s: float, *, kills: int = 10,
                freezes: int = 2, partitions: int = 2, churn: float = 0.3) -> FaultPlan:
    """A seeded plan over `rounds` rounds of about `round_s` seconds each."""
    rng = random.Random(seed)
    span = rounds * round_s
    faults = [Fault(round(rng.uniform(0.05, 0.9) * span, 2), "kill9", rng.randrange(robots),
                    round(rng.uniform(0.2, 3.0), 2)) for _ in range(kills)]
    faults += [Fault(round(rng.uniform(0.1, 0.7) * span, 2), "freeze", rng.randrange(robots),
                     round(1.5 * round_s, 2)) for _ in range(freezes)]
    faults += [Fault(round(rng.uniform(0.1, 0.8) * span, 2), "partition",
                     rng.randrange(robots), round(rng.uniform(0.5, 1.0) * round_s, 2))
               for _ in range(partitions)]
    leave = max(0, round(churn * robots))
    per_round = tuple(tuple(sorted(rng.sample(range(1, robots), min(leave, robots - 1))))
                      for _ in range(rounds))  # robot 0 stays: someone has to be there
    return FaultPlan(seed, tuple(sorted(faults, key=lambda f: f.at_s)), per_round)


@dataclass
class FaultReport:
    """What a fault run did and found (`to_json` is the `--format json` line)."""

    plan: FaultPlan
    applied: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    redrawn: dict[str, int] = field(default_factory=dict)  # applied to another robot
    relink_s: list[float] = field(default_factory=list)  # restart ready -> linked to all live
    relink_timeouts: int = 0
    offered: int = 0  # images a live sender offered and its live receiver wanted
    arrived: int = 0
    send_failures: int = 0  # offers refused because one end was down
    command_failures: dict[str, int] = field(default_factory=dict)  # gu: a robot was hit
    rounds: faultrounds.RoundLedger | None = None  # gu: votes and utilities
    homes: list[HomeCheck] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def corrupt_records(self) -> int:
        return sum((h.integrity != "ok") + h.blob_mismatches + h.missing_blobs + h.temp_files
                   + (h.checkpoint not in ("none", "ok")) for h in self.homes)

    @property
    def lost_records(self) -> int:
        return self.offered - self.arrived

    def to_json(self) -> dict[str, Any]:
        relink = sorted(self.relink_s)
        return {
            "seed": self.plan.seed, "applied": self.applied, "skipped": self.skipped,
            "redrawn": self.redrawn,
            "churn_leaves": sum(len(c) for c in self.plan.churn),
            "relink_s_max": relink[-1] if relink else None,
            "relink_s_p50": relink[len(relink) // 2] if relink else None,
            "relink_timeouts": self.relink_timeouts, "offered": self.offered,
            "arrived": self.arrived, "lost_records": self.lost_records,
            "send_failures": self.send_failures, "corrupt_records": self.corrupt_records,
            "homes": [h.to_json() for h in self.homes], "notes": self.notes,
            "command_failures": self.command_failures,
            "rounds": None if self.rounds is None else self.rounds.to_json(),
            "lost_votes": None if self.rounds is None else self.rounds.lost_votes,
            "ok": self.corrupt_records == 0 and self.lost_records == 0
            and (self.rounds is None or self.rounds.lost_votes == 0),
            "plan": [asdict(f) for f in self.plan.faults],
        }


class _Fleet:
    """The swarm plus who is present, with one lock per robot."""

    def __init__(self, swarm: Swarm, report: FaultReport) -> None:
        self.swarm = swarm
        self.report = report
        self.locks = [threading.Lock() for _ in swarm.robots]
        self.absent: set[int] = set()  # down, frozen, cut off or churned out
        self.state = threading.Lock()

    def count(self, table: dict[str, int], kind: str) -> None:
        with self.state:
            table[kind] = table.get(kind, 0) + 1

    def present(self) -> set[int]:
        with self.state:
            return {r.index for r in self.swarm.robots} - self.absent

    def mark(self, index: int, absent: bool) -> None:
        with self.state:
            (self.absent.add if absent else self.absent.discard)(index)

    def restart(self, index: int) -> None:
        """Start robot `index` again from its home; time until it links to every live peer."""
        self.swarm.start(index, ready_timeout_s=60.0)
        started = time.monotonic()
        self.mark(index, False)
        peers = len(self.present() - {index})
        try:
            self.swarm.call(index, "wait", {"peers": peers, "timeout_s": RELINK_TIMEOUT_S},
                            timeout_s=RELINK_TIMEOUT_S + 5)
            with self.state:
                self.report.relink_s.append(round(time.monotonic() - started, 2))
        except PeerdataError:
            with self.state:
                self.report.relink_timeouts += 1


def _take(fleet: _Fleet, fault: Fault, rng: random.Random, until: float) -> int | None:
    """The fault's robot, locked; if it is down or busy with another fault, another present
    robot drawn with `rng` (waiting for one to be free until `until`); None if none was."""
    if fault.robot in fleet.present() and fleet.locks[fault.robot].acquire(blocking=False):
        return fault.robot
    while time.monotonic() < until:
        candidates = sorted(fleet.present())
        rng.shuffle(candidates)
        for i in candidates:
            if fleet.locks[i].acquire(blocking=False):
                if i in fleet.present():
                    return i
                fleet.locks[i].release()
        time.sleep(REDRAW_POLL_S)
    return None


def _apply(fleet: _Fleet, fault: Fault, t0: float, rng: random.Random, until: float) -> None:
    time.sleep(max(0.0, t0 + fault.at_s - time.monotonic()))
    index = _take(fleet, fault, rng, until)
    if index is None:
        fleet.count(fleet.report.skipped, fault.kind)  # nobody free until the run's end
        return
    if index != fault.robot:
        fleet.count(fleet.report.redrawn, fault.kind)
    fault = replace(fault, robot=index)
    lock = fleet.locks[index]
    try:
        robot = fleet.swarm.robots[fault.robot]
        netem = fleet.swarm.netem
        if fault.kind == "partition" and netem is None:
            fleet.count(fleet.report.skipped, fault.kind)
            return
        fleet.mark(fault.robot, True)
        if fault.kind == "kill9":
            kill_robot(robot)
            time.sleep(fault.hold_s)
            fleet.restart(fault.robot)
        elif fault.kind == "freeze":
            os.kill(robot.pid, signal.SIGSTOP)
            time.sleep(fault.hold_s)
            os.kill(robot.pid, signal.SIGCONT)
            fleet.mark(fault.robot, False)
        else:
            assert netem is not None
            netem.partition(fault.robot, True)
            time.sleep(fault.hold_s)
            netem.partition(fault.robot, False)
            fleet.mark(fault.robot, False)
        fleet.count(fleet.report.applied, fault.kind)
    except (PeerdataError, OSError) as exc:
        with fleet.state:
            fleet.report.notes.append(f"{fault.kind} robot {fault.robot}: {exc}")
    finally:
        lock.release()


def _share_round(fleet: _Fleet, round_no: int, images: int,
                 ledger: dict[int, set[str]]) -> None:
    swarm, n = fleet.swarm, len(fleet.swarm.robots)
    for src in range(n):
        for dst in range(n):
            if src == dst:
                continue
            base = ((round_no * n + src) * n + dst) * images
            paths = write_images(swarm.out / "images" / f"robot-{src}",
                                 [base + k for k in range(images)])
            try:
                got = swarm.call(src, "send", {"paths": [str(p) for p in paths],
                                               "to": swarm.robots[dst].peer_id,
                                               "label": round_no}, timeout_s=30.0)
            except PeerdataError:
                fleet.report.send_failures += 1
                continue
            if got.get("wanted"):
                ledger[dst].update(got["cids"])


def run_faults(robots: int, out: Path, seed: int, *, rounds: int = 3, images: int = 1,
               round_s: float = 20.0, netem: str | None = None, work: str = "send",
               progress: Callable[[str], None] = lambda _m: None,
               **counts: Any) -> FaultReport:
    """Run the seeded plan over a fleet of `robots` daemons under `out`; check every home.

    `work`: what the robots do meanwhile: `send` (all-to-all offers of `images` images per
    pair) or `gu` (GU sharing rounds, `faultrounds.py`; then the vote/utility ledger).
    `counts` go to `plan_faults` (kills, freezes, partitions, churn): all 0 is the fault-free
    reference run of the same seed.
    """
    if work not in ("send", "gu"):
        raise PeerdataError(f"unknown fault-run work {work!r} (send or gu)")
    plan = plan_faults(seed, robots, rounds, round_s, **counts)
    report = FaultReport(plan)
    ledger: dict[int, set[str]] = {i: set() for i in range(robots)}
    settings = faultrounds.round_settings() if work == "gu" else None
    with open_swarm(robots, out, netem=netem, settings=settings) as swarm:
        swarm.wait_peers(robots - 1, 60.0)
        if work == "gu":
            faultrounds.bootstrap(swarm, out)
        fleet = _Fleet(swarm, report)
        t0 = time.monotonic()
        until = t0 + rounds * round_s
        threads = [threading.Thread(target=_apply, daemon=True, args=(
            fleet, f, t0, random.Random(f"{seed}/{k}"), until))
            for k, f in enumerate(plan.faults)]
        for t in threads:
            t.start()
        for r in range(rounds):
            left = [i for i in plan.churn[r] if fleet.locks[i].acquire(blocking=False)]
            for i in left:
                fleet.mark(i, True)
                stop_robot(swarm.robots[i])
                fleet.count(report.applied, "churn_leave")
            if work == "gu":
                faultrounds.gu_round(swarm, sorted(fleet.present()), r, out,
                                     lambda cmd: fleet.count(report.command_failures, cmd))
            else:
                _share_round(fleet, r, images, ledger)
            progress(f"round {r + 1}: {len(left)} robots away, {report.send_failures} "
                     f"offers refused so far")
            time.sleep(max(0.0, t0 + (r + 1) * round_s - time.monotonic()))
            for i in left:
                try:
                    fleet.restart(i)
                finally:
                    fleet.locks[i].release()
        for t in threads:
            t.join()
        for robot in swarm.robots:  # anything a failed restart left down comes back now
            if robot.process.poll() is not None:
                fleet.restart(robot.index)
        swarm.wait_peers(robots - 1, 60.0)
        for i in range(robots):  # what was wanted before a crash is fetched after it
            with contextlib.suppress(PeerdataError):
                swarm.call(i, "wait", {"images_received": len(ledger[i]), "timeout_s": 30.0},
                           timeout_s=35.0)
        if work == "gu":  # the last rounds end at their deadline; votes left are delivered
            time.sleep(faultrounds.DEADLINE_S + 2.0)
            faultrounds.wait_delivered([swarm.home(i) for i in range(robots)], 60.0)
        ids = [(r.peer_id, swarm.home(r.index)) for r in swarm.robots]
    if work == "gu":
        report.rounds = faultrounds.round_ledger(ids)
    for i in range(robots):
        home = swarm.home(i)
        report.homes.append(check_home(home))
        held = _sample_cids(home)
        report.offered += len(ledger[i])
        report.arrived += len(ledger[i] & held)
    return report


def _sample_cids(home: Path) -> set[str]:
    import sqlite3

    with sqlite3.connect(f"file:{home / 'store.sqlite'}?mode=ro", uri=True) as db:
        return {bytes(r[0]).hex() for r in db.execute("SELECT cid FROM samples")}
