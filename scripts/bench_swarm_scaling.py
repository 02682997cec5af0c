#!/usr/bin/env python3
"""Swarm scaling: real daemons running GU rounds at several fleet sizes, on loopback or on
emulated links (`--netem`, each daemon in its own network namespace; root only).

The robots are fleet-20's first N (A = MNIST, B = +KMNIST, C = +FashionMNIST, D = +both, rare
robots spread over the order), with small models and batches so a run takes minutes on two
cores. Per size: wall time per round; `feedback_ratio` (shared images, counted once per origin,
for which every chain the image went out on (round.chains) brought a peer's Feedback back to
the origin, over all shared images; `feedback_any_ratio`: at least one chain did; the rest got
their utility from deadline recovery or none); vote latency p50/p99 (first offer recorded ->
the last chain's Feedback stored, over the images whose every chain reported;
`driver_latency_*` is the swarm driver's figure, which also counts utilities recovered at the
deadline);
`offer_bytes_per_round_per_robot` (a robot's own offers); `bytes_sent_per_round_per_robot`
(image bytes a robot served: its own and relayed images, `status` bytes_sent; small control
messages and gossip are not counted); each daemon's
peak memory (VmHWM). The last line is one JSON object with every row and
`bytes_ratio_largest_vs_smallest` (target: <= 2 for 20 vs 5 robots).

    .venv/bin/python scripts/bench_swarm_scaling.py --sizes 5,20
    sudo .venv/bin/python scripts/bench_swarm_scaling.py --sizes 5,20 --netem "delay 50ms loss 2%"
    .venv/bin/python scripts/bench_swarm_scaling.py --sizes 20 --round chains=1 --round max_hops=8

Needs the datasets in $PEERDATA_DATA_DIR.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sqlite3
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from peerdata.datasets import resolve_data_dir
from peerdata.identity import load_identity
from peerdata.scenario import Scenario, load_scenario
from peerdata.swarmexp import SwarmPlan, run_swarm_experiment
from peerdata.swarmexp.driver import DriverSettings, percentile


def fleet(size: int, rounds: int, budget: float) -> Scenario:
    """fleet-20's first `size` robots, small enough for a laptop."""
    base = load_scenario("fleet-20")
    return base.with_overrides(
        robots=base.robots[:size], rounds=rounds, budget=budget,
        policies=("gu",), bootstrap_images=400, calibration_images=100, images_per_round=100,
        eval_per_dataset=200, detector="energy",
        vision=dataclasses.replace(base.vision, width=4, embedding_dim=16, epochs=2,
                                   fine_tune_samples=300),
        ranker=dataclasses.replace(base.ranker, hidden=16, epochs=50),
    )


def feedback_counts(home: Path) -> tuple[int, int, int, list[float]]:
    """(shared images, those with a peer's Feedback from every chain they went out on (one
    `shared` row per chain), those with at least one, each complete one's latency: first offer
    recorded -> its last chain's Feedback stored) in one robot's store. A utility the origin
    recovered from votes at the deadline (a feedback row with the origin as reporter) is not
    feedback."""
    me = load_identity(home).peer_id
    with sqlite3.connect(f"file:{home / 'store.sqlite'}?mode=ro", uri=True) as db:
        (shared,) = db.execute("SELECT count(DISTINCT cid) FROM shared").fetchone()
        rows = db.execute(
            "SELECT (SELECT count(*) FROM shared c WHERE c.cid = s.cid "
            "AND c.round_id = s.round_id), count(DISTINCT f.reporter), "
            "max(f.received_at) - min(s.shared_at) "
            "FROM shared s JOIN feedback f ON f.cid = s.cid AND f.round_id = s.round_id "
            "AND f.reporter != ? GROUP BY s.cid, s.round_id", (me,)).fetchall()
    complete = [float(lat) for chains, fed, lat in rows if fed >= chains]
    return int(shared), len(complete), len(rows), complete


def measure(size: int, rounds: int, budget: float, work: Path, netem: str | None,
            vote_deadline_s: float, gossip_votes: bool = False,
            round_settings: tuple[tuple[str, Any], ...] = ()) -> dict[str, Any]:
    """One swarm run; its per-round figures (means over robots and rounds)."""
    load_before = os.getloadavg()[0]
    s = fleet(size, rounds, budget)
    folder = work / f"n{size}-{budget}"
    plan = SwarmPlan(s, resolve_data_dir(None), DriverSettings(vote_timeout_s=vote_deadline_s),
                     netem=netem, gossip_votes=gossip_votes, round_settings=round_settings)
    results = run_swarm_experiment(plan, folder,
                                   lambda msg: print(f"  n={size}: {msg}", file=sys.stderr))
    run = results["swarm"]["gu"][0]
    own = [b for per_robot in run["bytes_sent"].values() for b in per_robot]
    network = [b / rounds for b in run["network_bytes_sent"].values()]
    homes = sorted((folder / "gu-0").glob("robot-*"))
    counts = [feedback_counts(h) for h in homes]
    shared, fed = sum(c[0] for c in counts), sum(c[1] for c in counts)
    latency = sorted(x for c in counts for x in c[3])
    memory = json.loads((folder / "gu-0" / "memory.json").read_text())["peak_rss_mib"]
    return {
        "robots": size, "budget": budget, "netem": netem or "", "rounds": run["rounds_completed"],
        "round_settings": dict(round_settings),
        "round_s_mean": round(statistics.fmean(run["round_seconds"]), 2),
        "round_s": run["round_seconds"],
        "images_shared": shared, "images_with_feedback": fed,
        "feedback_ratio": round(fed / shared, 4) if shared else None,
        "feedback_any_ratio": round(sum(c[2] for c in counts) / shared, 4) if shared else None,
        "offer_bytes_per_round_per_robot": round(statistics.fmean(own)),
        "bytes_sent_per_round_per_robot": round(statistics.fmean(network)),
        # first offer -> the last chain's Feedback, over images whose every chain reported
        "vote_latency_p50_s": percentile(latency, 50),
        "vote_latency_p99_s": percentile(latency, 99),
        # the swarm driver's figure: offer -> any utility row, deadline recoveries included
        "driver_latency_p50_s": run["vote_latency_p50_s"],
        "driver_latency_p99_s": run["vote_latency_p99_s"],
        "load_1m": [round(load_before, 1), round(os.getloadavg()[0], 1)],  # before, after
        "peak_rss_mib_mean": round(statistics.fmean(memory.values()), 1),
        "peak_rss_mib_max": max(memory.values()),
        "notes": run["notes"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="5,20")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--budget", type=float, default=0.10)
    parser.add_argument("--vote-deadline", type=float, default=60.0)
    parser.add_argument("--netem", default=None, help='e.g. "delay 50ms loss 2%%" (root only)')
    parser.add_argument("--out", type=Path, default=None, help="keep homes and data here")
    parser.add_argument("--gossip-votes", action="store_true",
                        help="daemons also publish every vote on gossip (round.gossip_votes)")
    parser.add_argument("--round", action="append", default=[], metavar="KEY=VALUE",
                        help="a [round] setting for every daemon, e.g. --round chains=1 "
                             "--round max_hops=8 (the single chain of earlier versions)")
    args = parser.parse_args()
    round_settings = tuple((k, json.loads(v)) for k, v in (kv.split("=", 1) for kv in args.round))
    work = args.out or Path(tempfile.mkdtemp(prefix="bench-swarm-"))
    sizes = [int(x) for x in args.sizes.split(",")]
    rows = [measure(n, args.rounds, args.budget, work, args.netem, args.vote_deadline,
                    args.gossip_votes, round_settings) for n in sizes]
    cols = ["robots", "rounds", "round_s_mean", "feedback_ratio", "offer_bytes_per_round_per_robot",
            "bytes_sent_per_round_per_robot", "vote_latency_p50_s", "vote_latency_p99_s",
            "peak_rss_mib_mean", "load_1m"]
    print(f"netem: {args.netem or 'none (loopback)'}")
    print("| " + " | ".join(cols) + " |")
    print("|---" * len(cols) + "|")
    for row in rows:
        cells = [f"{row[c]:.3f}" if isinstance(row[c], float) and c.startswith("vote") else
                 str(row[c]) for c in cols]
        print("| " + " | ".join(cells) + " |")
    small, large = rows[0], rows[-1]
    ratio = (round(large["bytes_sent_per_round_per_robot"]
                   / small["bytes_sent_per_round_per_robot"], 2)
             if small["bytes_sent_per_round_per_robot"] else None)
    print(json.dumps({"runs": rows, "bytes_ratio_largest_vs_smallest": ratio,
                      "netem": args.netem or "", "work": str(work)}, sort_keys=True))


if __name__ == "__main__":
    main()
