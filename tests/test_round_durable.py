"""Durable rounds with real daemons: a voter stopped with SIGTERM in the middle of a round, and
one killed with SIGKILL, lose no vote: every vote a robot cast is, after the restart, recorded
by its origin (the outbox delivers what the stop or the kill left); no store is damaged."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from test_round_swarm import each, fleet  # noqa: F401 (fleet: a fixture)

from peerdata.control.client import call
from peerdata.testing.faultrounds import round_ledger, wait_delivered, write_feed
from peerdata.testing.swarm import Robot, kill_robot, start_robot, stop_robot

pytestmark = [pytest.mark.swarm, pytest.mark.slow]
MIXES = [{"bars": 32, "spots": 8}, {"bars": 32, "rings": 8}, {"bars": 32, "spots": 8}]


def test_sigterm_and_sigkill_mid_round_lose_no_vote(fleet: list[Robot], tmp_path: Path) -> None:  # noqa: F811
    robots = fleet
    each(robots, "wait", {"peers": 2, "timeout_s": 60})
    boot = [write_feed(tmp_path / f"boot-{i}.npz", {"bars": 60}, 100 + i) for i in range(3)]
    each(robots, "observe", lambda i: {"npz": str(boot[i]), "bootstrap": True, "seed": i})
    feeds = [write_feed(tmp_path / f"r-{i}.npz", MIXES[i], 10 + i) for i in range(3)]
    each(robots, "observe", lambda i: {"npz": str(feeds[i])})
    starts = each(robots, "round_now", {"policy": "random"})
    # while the chains run: robot 1 stopped with SIGTERM (it drains), robot 2 killed
    stop_robot(robots[1])
    kill_robot(robots[2])
    for i in (1, 2):
        robots[i] = start_robot(i, robots[i].home, ready_timeout_s=120)
    each(robots, "wait", {"peers": 2, "timeout_s": 60})
    for i, r in enumerate(robots):
        w = call(r.home, "wait_round", {"round_id": starts[i]["round_id"], "timeout_s": 60},
                 timeout_s=70)
        assert w["complete"] or w["finished_at"] is not None, w
    assert wait_delivered([r.home for r in robots], 60.0)
    counts = [call(r.home, "status")["round_counts"] for r in robots]
    assert sum(c["votes_refused"] + c["votes_expired"] for c in counts) == 0, counts
    led = round_ledger([(r.peer_id, r.home) for r in robots])
    assert led.votes_cast > 0 and led.lost_votes == 0, (led, counts)
    assert led.votes_unknown == 0 and led.feedback_duplicates == 0, led
    for r in robots:
        with sqlite3.connect(f"file:{r.home / 'store.sqlite'}?mode=ro", uri=True) as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
