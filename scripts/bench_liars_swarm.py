#!/usr/bin/env python3
"""Lying members in real daemons: paper-3 `gu` as a swarm (one `peerdata run` per robot on
127.0.0.1, votes also on gossip, `[trust] reputation` on as by default), once without liars and
once per lie mode with one liar; the honest rare robots' precision at the last round, and the
weights each honest daemon's reputation (read back from its store) gives every peer. Prints a
table, then ONE JSON line.

The liar is `peerdata.testing.liar` (test-only): the daemon's own entry with its learner's
verdicts falsified, so its lies are signed and sent by the real vote path.

    PEERDATA_DATA_DIR=../shared/data OMP_NUM_THREADS=1 nice -n 10 \\
        .venv/bin/python scripts/bench_liars_swarm.py --rounds 5 --liar B --lie invert
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from peerdata.datasets import resolve_data_dir
from peerdata.node.feedback import REPUTATION_KEY
from peerdata.round.reputation import Reputation
from peerdata.scenario import load_scenario
from peerdata.store import SqliteStore
from peerdata.swarmexp import SwarmPlan, run_swarm_experiment
from peerdata.swarmexp.driver import DriverSettings
from peerdata.testing import daemons, swarm
from peerdata.testing.liar import LIAR_ENTRY, LIARS_ENV

TARGET_DROP_POINTS = 5.0


def _start_through(entry: str) -> None:
    """Make the swarm start every daemon with `entry` as its `-c` code (`spawn_robot`'s
    `entry` default is bound when it is defined, so the swarm's own reference is wrapped)."""
    spawn = daemons.spawn_robot

    def spawn_with_entry(*args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("entry", entry)
        return spawn(*args, **kwargs)

    swarm.spawn_robot = spawn_with_entry  # type: ignore[assignment]


def weights_in(work: Path) -> dict[str, dict[str, float]]:
    """Per robot home under `work`: the weights its stored reputation gives each peer."""
    out = {}
    for db in sorted(work.rglob("store.sqlite")):
        store = SqliteStore.open(db.parent)
        try:
            raw = store.get_meta(REPUTATION_KEY)
        finally:
            store.close()
        if raw is None:
            continue
        rep = Reputation()
        rep.load(json.loads(raw)["peers"])
        out[db.parent.name] = {p[-8:]: round(w, 3) for p, w in rep.weights().items()}
    return out


def run(plan: SwarmPlan, work: Path, liars: dict[str, str]) -> dict[str, Any]:
    os.environ[LIARS_ENV] = ",".join(f"{k}={v}" for k, v in liars.items())
    results = run_swarm_experiment(plan, work)
    per_robot = results["per_policy"]["gu"]
    return {"precision": {r: per_robot[r]["rare_precision"][-1]["mean"] for r in per_robot},
            "weights": weights_in(work), "seconds": results["summary"].get("seconds")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", default="paper-3")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--liar", default="B", help="the scenario robot that lies")
    ap.add_argument("--lie", default="invert", help="comma list of lie modes")
    ap.add_argument("--vote-deadline", type=float, default=30.0)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    spec = load_scenario(args.scenario).with_overrides(
        policies=("gu",), seeds=(args.seed,), rounds=args.rounds)
    names = [r.name for r in spec.robots]
    rare = [n for n in names if spec.novel_domains(n) and n != args.liar]
    home_name = f"robot-{names.index(args.liar)}"
    plan = SwarmPlan(spec, resolve_data_dir(None), DriverSettings(600.0, args.vote_deadline),
                     gossip_votes=True, reputation=True)
    _start_through(LIAR_ENTRY)  # every robot starts through the liar entry; only one lies
    out = args.out or Path(tempfile.mkdtemp(prefix="peerdata-liars-swarm-"))
    started = time.perf_counter()
    clean = run(plan, out / "clean", {})
    rows = []
    for mode in [m.strip() for m in args.lie.split(",") if m.strip()]:
        lied = run(plan, out / mode, {home_name: mode})
        base = sum(clean["precision"][r] for r in rare) / len(rare)
        got = sum(lied["precision"][r] for r in rare) / len(rare)
        rows.append({"liar": args.liar, "lie": mode, "honest_rare_robots": rare,
                     "gu_rare_precision_no_liars": round(base, 4),
                     "gu_rare_precision": round(got, 4),
                     "drop_points": round(100 * (base - got), 2),
                     "weights": lied["weights"], "seconds": lied["seconds"]})
    print(f"{'liar':<5} {'lie':<13} {'no_liars':>8} {'liar':>8} {'drop':>6}  weights by home")
    for r in rows:
        print(f"{r['liar']:<5} {r['lie']:<13} {r['gu_rare_precision_no_liars']:>8.3f} "
              f"{r['gu_rare_precision']:>8.3f} {r['drop_points']:>6.2f}  {r['weights']}")
    worst = max((r["drop_points"] for r in rows), default=None)
    print(json.dumps({"scenario": spec.name, "rounds": spec.rounds, "seed": args.seed,
                      "mode": "swarm", "gossip_votes": True, "liar_home": home_name,
                      "clean_weights": clean["weights"], "runs": rows,
                      "max_drop_points": worst, "target_drop_points": TARGET_DROP_POINTS,
                      "target_met": worst is not None and worst <= TARGET_DROP_POINTS,
                      "out": str(out), "wall_s": round(time.perf_counter() - started, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
