#!/usr/bin/env python3
"""Swarm scaling: real daemons on 127.0.0.1 running GU rounds at 3, 5 and 10 robots.

The robots are fleet-10's (A = MNIST, B = MNIST+KMNIST, C = MNIST+FashionMNIST), taken in the
order A1 B1 C1 A2 B2 C2 A3 B3 C3 A4, with small models and batches so a run takes minutes on
two cores. Per size: wall time per round, bytes a robot's own offers take per round, all bytes
a robot sent per round (offers, relays, votes, feedback: `status` bytes_sent), vote latency
p50/p99 (offer sent -> feedback back). One extra 3-robot run at twice the budget shows what
the bytes follow. Table, then one JSON line.

    .venv/bin/python scripts/bench_swarm_scaling.py                  # sizes 3,5,10, 5 rounds
    .venv/bin/python scripts/bench_swarm_scaling.py --sizes 3,10 --rounds 3

Needs the datasets in $PEERDATA_DATA_DIR.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from peerdata.datasets import resolve_data_dir
from peerdata.scenario import Scenario, load_scenario
from peerdata.swarmexp import SwarmPlan, run_swarm_experiment

ORDER = ("A1", "B1", "C1", "A2", "B2", "C2", "A3", "B3", "C3", "A4")


def fleet(size: int, rounds: int, budget: float) -> Scenario:
    """fleet-10's first `size` robots (in ORDER), small enough for a laptop."""
    base = load_scenario("fleet-10")
    robots = {r.name: r for r in base.robots}
    return base.with_overrides(
        robots=tuple(robots[n] for n in ORDER[:size]), rounds=rounds, budget=budget,
        policies=("gu",), bootstrap_images=400, calibration_images=100, images_per_round=100,
        eval_per_dataset=200, detector="energy",
        vision=dataclasses.replace(base.vision, width=4, embedding_dim=16, epochs=2,
                                   fine_tune_samples=300),
        ranker=dataclasses.replace(base.ranker, hidden=16, epochs=50),
    )


def measure(size: int, rounds: int, budget: float, work: Path) -> dict[str, Any]:
    """One swarm run; its per-round figures (means over robots and rounds)."""
    s = fleet(size, rounds, budget)
    results = run_swarm_experiment(SwarmPlan(s, resolve_data_dir(None)), work / f"n{size}-{budget}",
                                   lambda msg: print(f"  n={size}: {msg}", file=sys.stderr))
    run = results["swarm"]["gu"][0]
    own = [b for per_robot in run["bytes_sent"].values() for b in per_robot]
    network = [b / rounds for b in run["network_bytes_sent"].values()]
    return {
        "robots": size, "budget": budget, "rounds": run["rounds_completed"],
        "round_s_mean": round(statistics.fmean(run["round_seconds"]), 2),
        "round_s": run["round_seconds"],
        "offer_bytes_per_robot_round": round(statistics.fmean(own)),
        "sent_bytes_per_robot_round": round(statistics.fmean(network)),
        "vote_latency_p50_s": run["vote_latency_p50_s"],
        "vote_latency_p99_s": run["vote_latency_p99_s"],
        "feedback_received": run["feedback_received"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="3,5,10")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--budget", type=float, default=0.10)
    parser.add_argument("--out", type=Path, default=None, help="keep homes and data here")
    args = parser.parse_args()
    work = args.out or Path(tempfile.mkdtemp(prefix="bench-swarm-"))
    sizes = [int(x) for x in args.sizes.split(",")]
    rows = [measure(n, args.rounds, args.budget, work) for n in sizes]
    rows.append(measure(min(sizes), args.rounds, 2 * args.budget, work))
    cols = ["robots", "budget", "rounds", "round_s_mean", "offer_bytes_per_robot_round",
            "sent_bytes_per_robot_round", "vote_latency_p50_s", "vote_latency_p99_s"]
    print("| " + " | ".join(cols) + " |")
    print("|---" * len(cols) + "|")
    for row in rows:
        cells = [f"{row[c]:.3f}" if isinstance(row[c], float) and c.startswith("vote") else
                 str(row[c]) for c in cols]
        print("| " + " | ".join(cells) + " |")
    print(json.dumps({"runs": rows, "work": str(work)}, sort_keys=True))


if __name__ == "__main__":
    main()
