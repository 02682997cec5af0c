"""Three real daemons (`peerdata run`), started one after another, federate on the fleet clock.

Each is a separate process, so each has its own random trio clock origin; before the fleet
clock their round numbers never matched and every update was refused as "wrong round". Each
starts from a different model (its own learner seed): holding one model afterwards means the
updates were accepted and averaged, and the last round included every robot.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from peerdata.testing.swarm import Swarm, open_swarm

INTERVAL_S = 3.0


def settings(index: int) -> dict[str, dict[str, Any]]:
    return {
        "round": {"interval_s": 0.0, "calibration_images": 20, "vision_width": 2,
                  "vision_epochs": 1, "scenario": "synthetic-3", "learner_seed": index},
        "federation": {"enabled": True, "interval_s": INTERVAL_S, "deadline_s": 1.0,
                       "clock_skew_s": 0.5},
    }


def federation(swarm: Swarm) -> list[dict[str, Any]]:
    return [swarm.call(r.index, "status")["federation"] for r in swarm.robots]


def wait_rounds(swarm: Swarm, more: int) -> None:
    """Block (the daemon's `wait`) until each robot played `more` rounds beyond now."""
    for r, fed in zip(swarm.robots, federation(swarm), strict=True):
        swarm.call(r.index, "wait", {"federation_rounds": fed["rounds"] + more,
                                     "timeout_s": 30.0}, timeout_s=35.0)


def test_daemons_started_apart_federate_on_the_fleet_clock(tmp_path: Path) -> None:
    with open_swarm(3, tmp_path, ready_timeout_s=120, settings=settings) as swarm:
        swarm.wait_peers(2, timeout_s=60)
        first = federation(swarm)
        wait_rounds(swarm, 2)  # every robot connected for two whole rounds
        last = federation(swarm)
        if len({f["last_round"] for f in last}) > 1:  # read across a round boundary: again
            wait_rounds(swarm, 1)
            last = federation(swarm)
        now = time.time()
    # one round number for the fleet, from wall time
    assert len({f["last_round"] for f in last}) == 1
    assert abs(last[0]["last_round"] - now / INTERVAL_S) < 3
    # different models before, one model after: averaged, and every update of the last round
    # was accepted (the aggregator included all three, no one was missing)
    fresh = {f["model_digest"] for f in first if f["rounds"] == 0}
    assert len(fresh) == sum(1 for f in first if f["rounds"] == 0)
    assert len({f["model_digest"] for f in last}) == 1
    assert last[0]["model_digest"] not in fresh
    assert len({f["version"] for f in last}) == 1
    assert all(not f["last_missing"] for f in last)
    assert max(len(f["last_included"]) for f in last) == 3
