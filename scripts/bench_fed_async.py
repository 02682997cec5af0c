#!/usr/bin/env python3
"""Asynchronous federation vs synchronous FedAvg: one robot 5x slower; one robot away and back.

For each case, in one run on one fleet: sync FedAvg plays --rounds rounds (its wall time is the
sum of its rounds, each as long as its slowest present robot); FedBuff (buffered asynchronous
aggregation, staleness-weighted) and serverless gossip averaging then run until they reach sync
FedAvg's final accuracy or its wall time. Reported: each one's time to that accuracy as a
fraction of sync's wall time (target <= 0.6). Time is modelled (`peerdata.federated.asyncsim`);
training and rules are real. The slow robot, and the robot that leaves, is the one with the most
data (the worst case for sync, which waits for it). Prints a table; the last line is JSON.

    PEERDATA_DATA_DIR=../shared/data .venv/bin/python scripts/bench_fed_async.py
"""

from __future__ import annotations

import argparse
import dataclasses
import json

import torch

from peerdata.datasets import load_dataset, resolve_data_dir
from peerdata.federated.asyncsim import AsyncScenario, run_fedbuff, run_gossip, run_sync, time_to
from peerdata.federated.experiment import FederatedExperimentConfig, build_fleet, parse_scenario
from peerdata.federated.partition import SplitSpec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="mnist-quantity-0.5")
    parser.add_argument("--robots", type=int, default=7)
    parser.add_argument("--images", type=int, default=4200)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--test-images", type=int, default=2000)
    parser.add_argument("--cases", default="straggler,leave")
    parser.add_argument("--no-gossip", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    dataset, kind, beta = parse_scenario(args.scenario)
    cfg = FederatedExperimentConfig(dataset=dataset, rounds=args.rounds, seed=args.seed,
                                    split=SplitSpec(kind, beta, args.robots, args.images),
                                    test_images=args.test_images)
    splits = load_dataset(dataset, resolve_data_dir(None))
    assert splits.train is not None
    fleet = build_fleet(splits.train, splits.test, cfg)
    biggest = max(range(args.robots), key=lambda i: len(fleet.robots[i]))
    out: dict[str, object] = {"scenario": args.scenario, "robots": args.robots,
                              "rounds": args.rounds, "changing_robot": biggest}
    rows = []
    for case in args.cases.split(","):
        scen = AsyncScenario(slow_robot=biggest) if case == "straggler" else AsyncScenario()
        sync = run_sync(fleet, cfg, scen)
        wall, final = sync[-1]
        if case == "leave":  # away from 20% to 60% of what sync needs with everyone
            scen = dataclasses.replace(scen, leave=(biggest, 0.2 * wall, 0.6 * wall))
            sync = run_sync(fleet, cfg, scen)
            wall, final = sync[-1]
        out[f"{case}_sync_wall"] = round(wall, 2)
        out[f"{case}_sync_accuracy"] = round(final, 4)
        rows.append((case, "sync fedavg", f"{wall:.1f}", f"{final:.4f}", "1.00"))
        runs = {"fedbuff": run_fedbuff(fleet, cfg, scen, wall, final)}
        if not args.no_gossip:
            runs["gossip"] = run_gossip(fleet, cfg, scen, wall, final)
        for name, curve in runs.items():
            reach = time_to(curve, final)
            best = max((a for _, a in curve), default=0.0)
            ratio = None if reach is None else round(reach / wall, 3)
            out[f"{case}_{name}_time_ratio"] = ratio
            out[f"{case}_{name}_best_accuracy"] = round(best, 4)
            rows.append((case, name, "-" if reach is None else f"{reach:.1f}", f"{best:.4f}",
                         "not reached" if ratio is None else f"{ratio:.2f}"))
    print(f"{'case':<10} {'mode':<12} {'time to sync acc':>16} {'best acc':>9} {'of sync':>12}")
    for row in rows:
        print(f"{row[0]:<10} {row[1]:<12} {row[2]:>16} {row[3]:>9} {row[4]:>12}")
    print(json.dumps(out, sort_keys=True))


if __name__ == "__main__":
    main()
