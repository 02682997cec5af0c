#!/usr/bin/env python3
"""How far a chain's sample of voters is from the whole fleet's verdict (bounded chains).

A round's image reaches at most `round.max_hops` voters; its utility is the fraction of them
that found it novel. This script takes the homes of a finished swarm run (e.g. the 20-robot
`bench_swarm_scaling.py --out DIR` run), loads every robot's learner as it ended, and for the
last round's shared images compares, with the same models:
- `sample`: the utility over the voters the image's Feedback lists (the chain's sample),
- `full`: the utility over every other robot of the fleet;
and, to choose the sample size (`round.sample_voters`), the same error for random samples of
k voters (`--sizes`, `--draws` seeded draws per image and k). It prints the error tables and
ends with one JSON line (mean / p90 / max absolute error, overall and per k).

    PEERDATA_DATA_DIR=../shared/data .venv/bin/python scripts/vote_sample_error.py \\
        /tmp/scale/b20/n20-0.1/gu-0
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import statistics
from pathlib import Path

import numpy as np


def main() -> None:
    from peerdata.config import load_config
    from peerdata.identity import load_identity
    from peerdata.node.ingest import to_pixels
    from peerdata.node.learning import CHECKPOINT, LearnerHost, learner_config_for
    from peerdata.store import SqliteStore

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="folder holding robot-*/ homes")
    parser.add_argument("--sizes", default="1,2,3,4,6,8,10,12,16",
                        help="sample sizes k for the random-sample table (comma separated)")
    parser.add_argument("--draws", type=int, default=200, help="random samples per image and k")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    homes = sorted(args.run.glob("robot-*"), key=lambda p: int(p.name.split("-")[1]))
    ids: dict[Path, str] = {}
    images: dict[str, list[tuple[bytes, bytes]]] = {}  # origin -> [(cid, png)]
    sampled: dict[tuple[str, bytes], tuple[str, ...]] = {}  # (origin, cid) -> listed voters
    for home in homes:
        with sqlite3.connect(f"file:{home / 'store.sqlite'}?mode=ro", uri=True) as db:
            last = db.execute("SELECT max(round_id) FROM shared").fetchone()[0]
            cids = [bytes(r[0]) for r in db.execute(
                "SELECT DISTINCT cid FROM shared WHERE round_id = ?", (last,))]
            fbs = db.execute("SELECT cid, voters FROM feedback WHERE round_id = ? ORDER BY seq",
                             (last,)).fetchall()
        origin = load_identity(home).peer_id
        ids[home] = origin
        with SqliteStore.open(home) as store:
            images[origin] = [(c, store.get_blob(c)) for c in cids]
        for cid, voters in fbs:
            sampled.setdefault((origin, bytes(cid)), tuple(json.loads(voters)))
    verdicts: dict[tuple[str, str, bytes], bool] = {}  # (voter, origin, cid) -> novel
    for home in homes:
        cfg = load_config(home / "config.toml")
        host = LearnerHost.load(cfg.name, learner_config_for(cfg.round, cfg.model),
                                cfg.round.learner_seed, home / CHECKPOINT)
        for origin, items in images.items():
            if origin == ids[home] or not items:
                continue
            px = np.stack([to_pixels(png, host.spec) for _, png in items])
            novel, _ = host.vote(px)
            for (cid, _), v in zip(items, novel, strict=True):
                verdicts[(ids[home], origin, cid)] = bool(v)
    errors, sizes = [], []
    for (origin, cid), voters in sampled.items():
        everyone = [ids[h] for h in homes if ids[h] != origin]
        known = [v for v in voters if (v, origin, cid) in verdicts]
        if not known:
            continue  # the reporter was the origin itself (recovered): no chain sample
        full = statistics.fmean(verdicts[(v, origin, cid)] for v in everyone)
        sample = statistics.fmean(verdicts[(v, origin, cid)] for v in known)
        errors.append(abs(sample - full))
        sizes.append(len(known))
    errors.sort()
    out = {"robots": len(homes), "images": len(errors), **_summary(errors),
           "sample_voters_mean": round(statistics.fmean(sizes), 2) if sizes else None}
    print("| robots | images | voters per sample | |error| mean | p90 | max |")
    print("|---|---|---|---|---|---|")
    print(f"| {out['robots']} | {out['images']} | {out['sample_voters_mean']} | "
          f"{out['abs_error_mean']} | {out['abs_error_p90']} | {out['abs_error_max']} |")
    rng = random.Random(args.seed)
    by_k: dict[int, dict[str, float | None]] = {}
    for k in (int(x) for x in args.sizes.split(",")):
        errs = []
        for (origin, cid) in sampled:
            everyone = [ids[h] for h in homes if ids[h] != origin
                        and (ids[h], origin, cid) in verdicts]
            if k > len(everyone):
                continue
            full = statistics.fmean(verdicts[(v, origin, cid)] for v in everyone)
            for _ in range(args.draws):
                pick = rng.sample(everyone, k)
                errs.append(abs(statistics.fmean(verdicts[(v, origin, cid)] for v in pick)
                                - full))
        by_k[k] = _summary(sorted(errs))
    print("\n| random sample k | |error| mean | p90 | max |")
    print("|---|---|---|---|")
    for k, row in by_k.items():
        print(f"| {k} | {row['abs_error_mean']} | {row['abs_error_p90']} | "
              f"{row['abs_error_max']} |")
    out["random_samples"] = {str(k): row for k, row in by_k.items()}
    print(json.dumps(out, sort_keys=True))


def _summary(errors: list[float]) -> dict[str, float | None]:
    """Mean, p90 and max of sorted absolute errors (None when there are none)."""
    if not errors:
        return {"abs_error_mean": None, "abs_error_p90": None, "abs_error_max": None}
    return {"abs_error_mean": round(statistics.fmean(errors), 4),
            "abs_error_p90": round(errors[int(0.9 * (len(errors) - 1))], 4),
            "abs_error_max": round(errors[-1], 4)}


if __name__ == "__main__":
    main()
