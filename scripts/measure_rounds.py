"""Measure the daemon's sharing round: 3 real daemons on loopback (synthetic-3 model settings),
bootstrap 500 images each, then 3 rounds of 200 new images, gu policy, budget 0.10.

Prints per round: seconds for round_now / wait_round / learn (the three calls go to the three
daemons one after another), images and bytes shared, feedback, mean utility, feedback latency
(feedback_at - shared_at) median and max, ranker loss.
Usage: .venv/bin/python scripts/measure_rounds.py
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import test_round_swarm as swarm_test  # noqa: E402

from peerdata.control.client import call  # noqa: E402
from peerdata.testing.swarm import Robot, stop_robot  # noqa: E402

swarm_test.SETTINGS = {"round": {"interval_s": 0.0, "vote_deadline_s": 60.0,
                                 "budget_fraction": 0.10, "scenario": "synthetic-3"}}
MIXES = [{"bars": 200}, {"bars": 160, "rings": 40}, {"bars": 160, "spots": 40}]


def main() -> None:
    tmp = Path(tempfile.mkdtemp())
    each, feed = swarm_test.each, swarm_test.write_feed
    robots: list[Robot] = []
    try:
        robots.append(swarm_test.start(0, tmp / "robot-0", ()))
        for i in (1, 2):
            robots.append(swarm_test.start(i, tmp / f"robot-{i}", robots[0].listen_addrs[:1]))
        each(robots, "wait", {"peers": 2, "timeout_s": 60})
        boot = [feed(tmp / f"boot-{i}.npz", {"bars": 500}, 100 + i) for i in range(3)]
        t0 = time.perf_counter()
        each(robots, "observe", lambda i: {"npz": str(boot[i]), "bootstrap": True, "seed": i},
             600)
        print("bootstrap s (3 daemons, one after another)", round(time.perf_counter() - t0, 1))
        for rnd in range(3):
            feeds = [feed(tmp / f"r{rnd}-{i}.npz", MIXES[i], 10 * rnd + i) for i in range(3)]
            each(robots, "observe", lambda i, f=feeds: {"npz": str(f[i])}, 600)
            t0 = time.perf_counter()
            starts = each(robots, "round_now", {"policy": "gu"}, 600)
            t1 = time.perf_counter()
            waits = each(robots, "wait_round",
                         lambda i, s=starts: {"round_id": s[i]["round_id"], "timeout_s": 300}, 310)
            t2 = time.perf_counter()
            learned = each(robots, "learn", {}, 600)
            t3 = time.perf_counter()
            lat = [s["feedback_at"] - s["shared_at"] for r in robots
                   for s in call(r.home, "shared", {"round_id": rnd + 1})["shared"]
                   if s["feedback_at"]]
            print(json.dumps({
                "round": rnd + 1, "round_now_s": round(t1 - t0, 2),
                "wait_round_s": round(t2 - t1, 2), "learn_s": round(t3 - t2, 2),
                "shared": [s["shared"] for s in starts], "bytes": [s["bytes_sent"] for s in starts],
                "feedback": [w["feedback_received"] for w in waits],
                "complete": [w["complete"] for w in waits],
                "mean_utility": [round(w["mean_utility"], 3) for w in waits],
                "feedback_latency_s_median_max": [round(float(np.median(lat)), 2),
                                                  round(max(lat), 2)],
                "ranker_loss": [round(x["ranker_loss"], 4) for x in learned]}))
        st = call(robots[1].home, "status")
        print("status robot-1:", {k: st[k] for k in ("rounds_completed", "feedback_received",
                                                     "ranker_trained", "samples")})
    finally:
        for r in robots:
            stop_robot(r)


if __name__ == "__main__":
    main()
