#!/usr/bin/env python3
"""Robust aggregation vs clean FedAvg, every split and seed, with the honest-only bound.

For each scenario and seed, on one fleet (`peerdata.federated.experiment`, the same runs as
`peerdata federated`): clean FedAvg; the robust rule clean; the robust rule with one attacker
(the robot holding the most data, `-10x` its update, claiming the most samples); and FedAvg over
the honest robots only (the attacker's data left out). The last is the bound for any rule that
gives the attacker's update no weight: when it is itself more than 2 points under clean FedAvg,
the target (robust rule within 2 points of clean FedAvg under attack) cannot be met by refusing
the attacker, only by using what it sent. Prints a table; the last stdout line is one JSON object.

    PEERDATA_DATA_DIR=../shared/data .venv/bin/python scripts/bench_fed_robust.py \\
        --scenarios mnist-iid,mnist-quantity-0.5 --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from peerdata.datasets import load_dataset, resolve_data_dir
from peerdata.federated.experiment import (
    FederatedExperimentConfig,
    attacker_of,
    build_fleet,
    parse_scenario,
    run_strategy,
    without_robot,
)
from peerdata.federated.partition import SplitSpec

TOLERANCE = 0.02  # the target: within 2 points of clean FedAvg


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", default="mnist-iid,mnist-quantity-0.5")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--rule", default="agree")
    parser.add_argument("--attack", default="scaled", choices=("scaled", "random"))
    parser.add_argument("--images", type=int, default=4200)
    parser.add_argument("--test-images", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for scenario in args.scenarios.split(","):
        dataset, kind, beta = parse_scenario(scenario)
        splits = load_dataset(dataset, resolve_data_dir(None))
        assert splits.train is not None
        for seed in (int(s) for s in args.seeds.split(",")):
            cfg = FederatedExperimentConfig(
                dataset=dataset, split=SplitSpec(kind, beta, 7, args.images), rounds=args.rounds,
                test_images=args.test_images, strategies=("fedavg", args.rule), attacked=(),
                attack=args.attack, seed=seed)
            started = time.monotonic()
            fleet = build_fleet(splits.train, splits.test, cfg)
            attacker = attacker_of(fleet)
            fedavg = run_strategy("fedavg", fleet, cfg).global_accuracy
            clean = run_strategy(args.rule, fleet, cfg).global_accuracy
            attacked = run_strategy(args.rule, fleet, cfg, attacked=True)
            bound = run_strategy("fedavg", without_robot(fleet, attacker), cfg).global_accuracy
            row = {"scenario": scenario, "seed": seed,
                   "attacker_share": round(len(fleet.robots[attacker])
                                           / sum(len(r) for r in fleet.robots), 3),
                   "fedavg_clean": round(fedavg, 4), "rule_clean": round(clean, 4),
                   "rule_attacked": round(attacked.global_accuracy, 4),
                   "honest_only_fedavg": round(bound, 4),
                   "clean_met": clean >= fedavg - TOLERANCE,
                   "attacked_met": attacked.global_accuracy >= fedavg - TOLERANCE,
                   "bound_allows": bound >= fedavg - TOLERANCE,
                   "wall_s": round(time.monotonic() - started, 1)}
            rows.append(row)
            print(" ".join(f"{k}={v}" for k, v in row.items()), file=sys.stderr, flush=True)
    header = ("scenario", "seed", "attacker_share", "fedavg_clean", "rule_clean",
              "rule_attacked", "honest_only_fedavg", "clean_met", "attacked_met", "bound_allows")
    print(" | ".join(header))
    for row in rows:
        print(" | ".join(str(row[h]) for h in header))
    print(json.dumps({"rule": args.rule, "attack": args.attack, "rounds": args.rounds,
                      "all_clean_met": all(r["clean_met"] for r in rows),
                      "all_attacked_met": all(r["attacked_met"] for r in rows),
                      "rows": rows}))


if __name__ == "__main__":
    main()
