#!/usr/bin/env python
"""Replay votes dumped by `scripts/bench_liars.py --dump-votes DIR` through the vote
reputation (round/reputation.py) and show why a voter is or is not found out: per pair of
voters, how often they agree and their Cohen's kappa on the images both voted on; each
voter's honest accuracy against the truth ("the image's domain is not in my data"); the
weights an observer ends with after each round; and how far the weighted utilities of the
honest origins' images are from the honest voters' own share, and from the share of every
voter's honest verdict (the liar's too: what a liar-free fleet would have measured).

The observer sees every vote (gossip votes on), rounds settle in lockstep as in the
simulator. Votes are replayed as cast, so this answers "what would this reputation rule make
of these votes", not what a whole run with it would do (the votes depend on what was shared).

Usage:
    python scripts/replay_votes.py DIR/seed2-A-invert-rep1.jsonl [--liar A]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from collections.abc import Sequence
from itertools import combinations
from pathlib import Path
from typing import Any

from peerdata.round.reputation import Reputation


def _kappa(pairs: list[tuple[bool, bool]]) -> float:
    n = len(pairs)
    if not n:
        return float("nan")
    agree = sum(a == b for a, b in pairs) / n
    pa = sum(a for a, _ in pairs) / n
    pb = sum(b for _, b in pairs) / n
    expected = pa * pb + (1 - pa) * (1 - pb)
    return 0.0 if expected >= 1 - 1e-9 else (agree - expected) / (1 - expected)


def replay(votes: list[dict[str, Any]], liars: set[str]) -> dict[str, Any]:
    """Weights per round and the utility error on the honest origins' images."""
    rep = Reputation()
    by_round: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for v in votes:
        by_round[v["round"]].append(v)
    weights, errors, full = [], [], []
    for rid in sorted(by_round):
        for v in by_round[rid]:
            rep.observe(bytes.fromhex(v["cid"]), rid, v["voter"], v["novel"])
        rep.settle(rid)
        weights.append({p: round(w, 3) for p, w in rep.weights().items()})
        images: dict[tuple[str, str], dict[str, bool]] = defaultdict(dict)
        for v in by_round[rid]:
            images[(v["origin"], v["cid"])][v["voter"]] = v["novel"]
        verdicts: dict[tuple[str, str], list[bool]] = defaultdict(list)
        for v in by_round[rid]:
            if v["honest"] is not None:
                verdicts[(v["origin"], v["cid"])].append(v["honest"])
        err, err_full = [], []
        for key, vs in images.items():
            honest = [n for p, n in vs.items() if p not in liars]
            if key[0] in liars or not honest:
                continue
            u = rep.utility(vs)
            assert u is not None
            err.append(abs(u - sum(honest) / len(honest)))
            if len(verdicts[key]) == len(vs):  # every voter's own verdict, the liar's too
                err_full.append(abs(u - sum(verdicts[key]) / len(vs)))
        errors.append(round(sum(err) / len(err), 3) if err else None)
        full.append(round(sum(err_full) / len(err_full), 3) if err_full else None)
    return {"weights": weights, "utility_error": errors, "error_vs_all_honest": full}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dump", type=Path)
    ap.add_argument("--liar", default="", help="comma list of the liars (for the error)")
    args = ap.parse_args(argv)
    votes = [json.loads(line) for line in args.dump.read_text().splitlines() if line]
    liars = {x for x in args.liar.split(",") if x}
    per_image: dict[tuple[int, str], dict[str, bool]] = defaultdict(dict)
    for v in votes:
        per_image[(v["round"], v["cid"])][v["voter"]] = v["novel"]
    voters = sorted({v["voter"] for v in votes})
    print(f"{'pair':8} {'images':>6} {'agree':>6} {'kappa':>6}  (on the images both voted on)")
    pairs = {}
    for a, b in combinations(voters, 2):
        both = [(vs[a], vs[b]) for vs in per_image.values() if a in vs and b in vs]
        agree = sum(x == y for x, y in both) / len(both) if both else float("nan")
        pairs[f"{a}-{b}"] = {"images": len(both), "agree": round(agree, 3),
                             "kappa": round(_kappa(both), 3)}
        print(f"{a + '-' + b:8} {len(both):6d} {agree:6.3f} {_kappa(both):6.3f}")
    print(f"{'voter':6} {'votes':>6} {'novel':>6} {'truth_novel':>11} {'acc_cast':>8} "
          f"{'acc_honest':>10}")
    accuracy = {}
    for p in voters:
        mine = [v for v in votes if v["voter"] == p]
        cast = sum(v["novel"] == v["novel_truth"] for v in mine) / len(mine)
        hon = [v for v in mine if v["honest"] is not None]
        acc_h = sum(v["honest"] == v["novel_truth"] for v in hon) / len(hon) if hon else 0.0
        accuracy[p] = {"votes": len(mine), "cast_accuracy": round(cast, 3),
                       "honest_accuracy": round(acc_h, 3)}
        print(f"{p:6} {len(mine):6d} {sum(v['novel'] for v in mine) / len(mine):6.3f} "
              f"{sum(v['novel_truth'] for v in mine) / len(mine):11.3f} {cast:8.3f} "
              f"{acc_h:10.3f}")
    out = replay(votes, liars)
    for rid, (w, e, f) in enumerate(zip(out["weights"], out["utility_error"],
                                        out["error_vs_all_honest"], strict=True), 1):
        print(f"round {rid}: weights {w}  honest-origin utility error {e} "
              f"(vs every voter's honest verdict: {f})")
    print(json.dumps({"dump": str(args.dump), "pairs": pairs, "voters": accuracy, **out}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
