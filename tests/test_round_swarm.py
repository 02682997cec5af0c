"""Three real daemons on 127.0.0.1 share over libp2p: two rounds end to end (driven through the
control socket, checked through the CLI's JSON), then one daemon is killed with SIGKILL in the
middle of a third round: the others finish that round by its deadline, and the killed one,
restarted, has its learner, round counter, samples and votes back, uncorrupted."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from peerdata.control.client import call
from peerdata.node.home import init_home
from peerdata.testing.daemons import cli_json
from peerdata.testing.faultrounds import write_feed
from peerdata.testing.swarm import LOOPBACK, Robot, edit_config, kill_robot, start_robot, stop_robot

DEADLINE_S = 10.0
SETTINGS = {"round": {"interval_s": 0.0, "vote_deadline_s": DEADLINE_S, "budget_fraction": 0.25,
                      "calibration_images": 20, "vision_width": 2, "vision_epochs": 1,
                      "scenario": "synthetic-3"}}
MIXES = [{"bars": 40}, {"bars": 32, "rings": 8}, {"bars": 32, "spots": 8}]


def start(index: int, home: Path, bootstrap: tuple[str, ...]) -> Robot:
    made = init_home(home, name=f"robot-{index}", listen=(LOOPBACK,), bootstrap=bootstrap)
    if made.created_config:
        edit_config(home, SETTINGS)
    return start_robot(index, home, ready_timeout_s=120)


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[list[Robot]]:
    robots: list[Robot] = []
    try:
        robots.append(start(0, tmp_path / "robot-0", ()))
        for i in (1, 2):
            robots.append(start(i, tmp_path / f"robot-{i}", robots[0].listen_addrs[:1]))
        yield robots
    finally:
        for r in robots:
            stop_robot(r)  # by PID: SIGTERM, SIGKILL after 10 s


def each(robots: list[Robot], cmd: str, args: Any = None, timeout_s: float = 300) -> list[dict]:
    return [call(r.home, cmd, args(i) if callable(args) else (args or {}), timeout_s=timeout_s)
            for i, r in enumerate(robots)]


def test_three_daemons_two_rounds_then_sigkill_mid_round(fleet: list[Robot],
                                                         tmp_path: Path) -> None:
    robots = fleet
    each(robots, "wait", {"peers": 2, "timeout_s": 60})
    boot = [write_feed(tmp_path / f"boot-{i}.npz", {"bars": 60}, 100 + i) for i in range(3)]
    got = each(robots, "observe", lambda i: {"npz": str(boot[i]), "bootstrap": True, "seed": i})
    assert [g["added"] for g in got] == [60, 60, 60]
    for rnd in range(2):
        feeds = [write_feed(tmp_path / f"r{rnd}-{i}.npz", MIXES[i], 10 * rnd + i)
                 for i in range(3)]
        got = each(robots, "observe", lambda i, f=feeds: {"npz": str(f[i])})
        assert [g["added"] for g in got] == [40, 40, 40]
        starts = each(robots, "round_now", {"policy": "gu"})
        assert all(s["shared"] == 10 and s["dropped_by_privacy"] == 0 for s in starts)
        waits = each(robots, "wait_round",
                     lambda i, s=starts: {"round_id": s[i]["round_id"], "timeout_s": 120})
        assert all(w["complete"] and w["feedback_received"] == 10 for w in waits), waits
        learned = each(robots, "learn")
        assert all(x["ranker_loss"] is not None for x in learned)
    for r in robots:  # through the CLI's JSON
        rounds = cli_json(r.home, "rounds")["rounds"]
        assert [x["round_id"] for x in rounds] == [1, 2]
        assert all(x["feedback_received"] == 10 and x["complete"] for x in rounds)
        status = cli_json(r.home, "status")
        assert status["ranker_trained"] == 2 and status["feedback_received"] >= 20
        assert status["rounds_completed"] == 2
        assert status["samples"]["received"] == 40
        shared = cli_json(r.home, "shared", "--round", "2")["shared"]
        assert len(shared) == 10 and all(s["utility"] is not None for s in shared)
        assert any(v["cast"] for v in cli_json(r.home, "votes")["votes"])

    # round 3: robot 2 dies (SIGKILL) right after its offers went out
    feeds = [write_feed(tmp_path / f"r3-{i}.npz", MIXES[i], 30 + i) for i in range(3)]
    each(robots, "observe", lambda i: {"npz": str(feeds[i])})
    before = call(robots[2].home, "status")
    votes_before = len(call(robots[2].home, "votes")["votes"])
    starts = each(robots, "round_now", {"policy": "gu"})
    kill_robot(robots[2])
    for i in (0, 1):
        w = call(robots[i].home, "wait_round",
                 {"round_id": starts[i]["round_id"], "timeout_s": DEADLINE_S * 4},
                 timeout_s=DEADLINE_S * 5)
        assert w["complete"] or w["finished_at"] is not None, w  # done by its deadline
    robots[2] = start_robot(2, robots[2].home, ready_timeout_s=120)
    after = call(robots[2].home, "status")
    assert after["rounds"] == 3 and after["ranker_trained"] == before["ranker_trained"]
    assert after["samples"]["local"] >= before["samples"]["local"]
    assert after["learner"]["local_images"] >= before["learner"]["local_images"]
    assert after["learner"]["bootstrapped"]
    assert len(call(robots[2].home, "votes")["votes"]) >= votes_before
    db = robots[2].home / "store.sqlite"
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    # the restarted robot still works: one more round end to end, started from the CLI
    starts = [cli_json(r.home, "round", "now", "--policy", "gu") for r in robots]
    w = call(robots[2].home, "wait_round", {"round_id": starts[2]["round_id"], "timeout_s": 120},
             timeout_s=130)
    assert w["round_id"] == 4 and (w["complete"] or w["finished_at"] is not None)
