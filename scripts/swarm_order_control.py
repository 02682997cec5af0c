#!/usr/bin/env python3
"""Control for the swarm-vs-in-process gap: the in-process experiment with only the order of
received images changed (robots deliver last-first), through the swarm driver and its results.

Same images, same votes, same seeds as `peerdata experiment`; a gap between this and the
in-process run is what arrival order alone does to the fine-tunes. Writes OUT/results.json;
compare with `python -m peerdata.swarmexp.compare INPROCESS_DIR OUT`.

    PEERDATA_DATA_DIR=... .venv/bin/python scripts/swarm_order_control.py \\
        --scenario paper-3 --rounds 5 --seed 0 --out /tmp/order-control
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from peerdata.datasets import resolve_data_dir
from peerdata.experiment.data import build_experiment_data, load_domains
from peerdata.experiment.runner import aggregate
from peerdata.scenario import load_scenario
from peerdata.swarmexp import run_policy, write_robot_files
from peerdata.swarmexp.inprocess import InProcessRobots


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", default="paper-3")
    parser.add_argument("--policies", default="gu,random,oracle")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    s = load_scenario(args.scenario).with_overrides(
        policies=tuple(args.policies.split(",")), seeds=(args.seed,),
        **({} if args.rounds is None else {"rounds": args.rounds}))
    data = build_experiment_data(s, load_domains(s, resolve_data_dir(None)), args.seed)
    files = write_robot_files(s, data, args.out / "data")
    runs = {
        p: [run_policy(s, files, p, InProcessRobots(s, args.seed, reverse_delivery=True),
                       bootstrap_args=lambda _i: {}).per_robot]
        for p in s.policies
    }
    results = aggregate(s, runs, [])
    (args.out / "results.json").write_text(json.dumps(results, indent=1, sort_keys=True))
    print(json.dumps(results["summary"], sort_keys=True))


if __name__ == "__main__":
    main()
