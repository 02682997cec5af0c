#!/usr/bin/env python3
"""GU rare precision of a fleet-fault run against its fault-free reference (same seed).

Reads the homes of two `peerdata swarm --faults SEED --fault-work gu` runs (`--out` of each;
the reference with `--fault-free`) and prints the rare precision (shared images of a rare
family, not bars, over shared images) of each run overall and over the (robot, robot's own
round) pairs both runs have: a robot that churned out runs fewer rounds, and its ranker's
early rounds select fewer rare images, so the overall figures mix composition with quality.
Then per own round k (every robot's k-th round pooled): each run's precision and shares, and
a diagnostic (not the target): the fault run's per-round precisions weighted by the
reference's shares per round, i.e. the fault run's ranker quality at the reference's mix of
rounds. Ends with one JSON line.

    .venv/bin/python scripts/fault_precision.py /tmp/scale/f10gu /tmp/scale/f10ref
"""

from __future__ import annotations

import argparse
import json
import sqlite3
from pathlib import Path

Counts = dict[tuple[str, int], tuple[int, int]]  # (robot, round) -> (rare, shared)


def per_round(run: Path) -> Counts:
    out: Counts = {}
    for home in sorted(run.glob("robot-*")):
        with sqlite3.connect(f"file:{home / 'store.sqlite'}?mode=ro", uri=True) as db:
            for rid, shared, rare in db.execute(
                    "SELECT s.round_id, count(DISTINCT s.cid), count(DISTINCT CASE WHEN "
                    "m.domain != 'synthetic-bars' THEN s.cid END) FROM shared s JOIN samples m "
                    "ON m.cid = s.cid GROUP BY s.round_id"):
                out[(home.name, int(rid))] = (int(rare), int(shared))
    return out


def precision(counts: Counts, keys: set[tuple[str, int]] | None = None) -> float | None:
    picked = [v for k, v in counts.items() if keys is None or k in keys]
    shared = sum(n for _, n in picked)
    return round(sum(r for r, _ in picked) / shared, 4) if shared else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("faults", type=Path, help="the fault run's --out")
    parser.add_argument("reference", type=Path, help="the --fault-free run's --out")
    args = parser.parse_args()
    faults, ref = per_round(args.faults), per_round(args.reference)
    both = set(faults) & set(ref)
    out = {"faults": precision(faults), "fault_free": precision(ref),
           "matched_pairs": len(both), "faults_matched": precision(faults, both),
           "fault_free_matched": precision(ref, both)}
    print("| run | rare precision (all) | over the matched (robot, round) pairs |")
    print("|---|---|---|")
    print(f"| faults | {out['faults']} | {out['faults_matched']} |")
    print(f"| fault-free | {out['fault_free']} | {out['fault_free_matched']} |")
    pooled = {name: by_round(counts) for name, counts in (("faults", faults), ("ref", ref))}
    print("\n| own round | faults rare/shared | fault-free rare/shared |")
    print("|---|---|---|")
    for k in sorted(set(pooled["faults"]) | set(pooled["ref"])):
        cells = [f"{r}/{n} = {r / n:.2f}" if n else "-"
                 for r, n in (pooled[x].get(k, (0, 0)) for x in ("faults", "ref"))]
        print(f"| {k} | {cells[0]} | {cells[1]} |")
    common = [k for k in pooled["ref"] if pooled["faults"].get(k, (0, 0))[1]]
    weight = sum(pooled["ref"][k][1] for k in common)
    out["own_rounds"] = {x: {str(k): list(v) for k, v in sorted(pooled[x].items())}
                         for x in pooled}
    out["faults_at_reference_round_mix"] = round(sum(
        pooled["ref"][k][1] * pooled["faults"][k][0] / pooled["faults"][k][1]
        for k in common) / weight, 4) if weight else None
    print(f"\nfault run's per-round precision at the reference's round mix (diagnostic): "
          f"{out['faults_at_reference_round_mix']}")
    print(json.dumps(out, sort_keys=True))


def by_round(counts: Counts) -> dict[int, tuple[int, int]]:
    """Own round -> (rare, shared) over all robots."""
    out: dict[int, tuple[int, int]] = {}
    for (_robot, rid), (rare, shared) in counts.items():
        r0, n0 = out.get(rid, (0, 0))
        out[rid] = (r0 + rare, n0 + shared)
    return out


if __name__ == "__main__":
    main()
