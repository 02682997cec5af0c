"""Durable rounds with real daemons: a voter stopped with SIGTERM in the middle of a round, and
one killed with SIGKILL, lose no vote: every vote a robot cast is, after the restart, recorded
by its origin (the outbox delivers what the stop or the kill left); no store is damaged."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_round_swarm import each, start, write_feed

from peerdata.control.client import call
from peerdata.testing.faultrounds import round_ledger, wait_delivered
from peerdata.testing.swarm import Robot, kill_robot, start_robot, stop_robot

pytestmark = [pytest.mark.swarm, pytest.mark.slow]
MIXES = [{"bars": 32, "spots": 8}, {"bars": 32, "rings": 8}, {"bars": 32, "spots": 8}]


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
            stop_robot(r)


def test_sigterm_and_sigkill_mid_round_lose_no_vote(fleet: list[Robot], tmp_path: Path) -> None:
    robots = fleet
    each(robots, "wait", {"peers": 2, "timeout_s": 60})
    boot = [write_feed(tmp_path / f"boot-{i}.npz", {"bars": 60}, 100 + i) for i in range(3)]
    each(robots, "observe", lambda i: {"npz": str(boot[i]), "bootstrap": True, "seed": i})
    for rnd, (victim, stop) in enumerate([(1, stop_robot), (2, kill_robot)]):
        feeds = [write_feed(tmp_path / f"r{rnd}-{i}.npz", MIXES[i], 10 * rnd + i)
                 for i in range(3)]
        each(robots, "observe", lambda i, f=feeds: {"npz": str(f[i])})
        starts = each(robots, "round_now", {"policy": "random"})
        stop(robots[victim])  # SIGTERM (drains first) or SIGKILL, while the chains run
        robots[victim] = start_robot(victim, robots[victim].home, ready_timeout_s=120)
        each(robots, "wait", {"peers": 2, "timeout_s": 60})
        for i, r in enumerate(robots):
            w = call(r.home, "wait_round", {"round_id": starts[i]["round_id"],
                                            "timeout_s": 60}, timeout_s=70)
            assert w["complete"] or w["finished_at"] is not None, w
        assert wait_delivered([r.home for r in robots], 60.0)
        left = [call(r.home, "status")["round_counts"] for r in robots]
        assert sum(c["votes_refused"] for c in left) == 0, left
        led = round_ledger([(r.peer_id, r.home) for r in robots])
        assert led.votes_cast > 0 and led.lost_votes == 0, (rnd, led, left)
        assert led.votes_unknown == 0 and led.feedback_duplicates == 0, led
    for r in robots:
        with sqlite3.connect(f"file:{r.home / 'store.sqlite'}?mode=ro", uri=True) as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
