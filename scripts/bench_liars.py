#!/usr/bin/env python
"""Benchmark lying fleet members: GU rare precision of the honest robots, with and without
liars, with and without vote reputation (issue #10's target: a drop of at most 5 points at
round 5 on paper-3 with 20% liars, in each lie mode).

Every configuration starts from the same bootstrapped robots and streams (one checkpoint per
seed) and runs the `gu` policy through the in-process round core. Liars are a seeded choice of
robots (`peerdata.sharing.liars.pick_liars`: 20% of three robots is one); the figure is the mean
over the honest robots that hold rare data, compared with the same robots in the liar-free run
with the same reputation setting. Prints a table; the last stdout line is one JSON object.

Usage:
    python scripts/bench_liars.py [--scenario paper-3] [--rounds 5] [--liars 0.2]
        [--lie invert,always-novel,never-novel] [--liar-seeds 0] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from peerdata.datasets import resolve_data_dir
from peerdata.experiment.data import build_experiment_data, load_domains
from peerdata.experiment.metrics import sharing_stats
from peerdata.experiment.runner import bootstrap_checkpoints
from peerdata.scenario import Scenario, load_scenario
from peerdata.sharing import InProcessFleet, LearnerConfig, RobotLearner
from peerdata.sharing.fleet import image_cid
from peerdata.sharing.liars import LIE_MODES, pick_liars

TARGET_DROP_POINTS = 5.0


def run_config(scenario: Scenario, data: Any, checkpoints: dict[str, bytes], seed: int,
               liars: dict[str, str], reputation: bool, dump: Path | None = None
               ) -> dict[str, Any]:
    """`gu` rounds with these liars; per robot, rare precision per round; final weights.
    `dump`: write every vote cast (JSON lines) there, for `scripts/replay_votes.py`."""
    config = LearnerConfig.of_scenario(scenario)
    learners = {n: RobotLearner.restore(cp, config) for n, cp in checkpoints.items()}
    fleet = InProcessFleet(learners, seed=seed, liars=liars, reputation=reputation)
    votes: list[dict[str, Any]] = []
    if dump is not None:
        _record_votes(fleet, scenario, votes)
    novel = {r.name: scenario.novel_domains(r.name) for r in scenario.robots}
    precision: dict[str, list[float]] = {n: [] for n in learners}
    for r in range(scenario.rounds):
        batches = {n: data.streams[n].rounds[r] for n in learners}
        outcome = fleet.run_round(batches, policy="gu", budget=scenario.budget,
                                  novel_domains=novel)
        for n, learner in learners.items():
            stats = sharing_stats(learner, batches[n].domains, outcome.shared[n], novel[n])
            precision[n].append(stats["rare_precision"])
    if dump is not None:
        dump.write_text("".join(json.dumps(v) + "\n" for v in votes))
    weights = {}
    for n, core in fleet.simulator.origins.items():
        if core.reputation is not None and n not in liars:
            weights = {p: round(w, 3) for p, w in core.reputation.weights().items()}
            break
    return {"precision": precision, "weights": weights}


def _record_votes(fleet: InProcessFleet, scenario: Scenario, out: list[dict[str, Any]]
                  ) -> None:
    """Wrap the fleet's simulator so that every vote cast lands in `out`: round, origin,
    voter, the image's domain, whether the domain is outside the voter's data (the truth of
    "novel to me"), the honest verdict and the vote cast."""
    sim = fleet.simulator
    own = {r.name: set(r.datasets) for r in scenario.robots}
    honest: dict[tuple[str, bytes], bool] = {}
    for name, learner in fleet.learners.items():
        def vote(images: np.ndarray, _name: str = name, _orig: Any = learner.vote) -> Any:
            verdict = _orig(images)
            for img, n in zip(images, verdict.novel, strict=True):
                honest[(_name, image_cid(img))] = bool(n)
            return verdict
        learner.vote = vote  # type: ignore[method-assign]
    run_round = sim.run_round

    def wrapped(offers: Any, vote_fn: Any) -> Any:
        result = run_round(offers, vote_fn)
        where = {(o, image_cid(c.image)): c for o, cs in fleet._last_selected.items()
                 for c in cs}
        for e in result.trace:
            if e.kind != "vote":
                continue
            c = where.get((e.peer, e.cid))
            domain = (str(fleet.learners[e.peer].local_domains[c.image_id])
                      if c is not None else "?")
            out.append({"round": sim.round_id, "origin": e.peer, "voter": e.robot,
                        "cid": e.cid.hex()[:16], "domain": domain,
                        "novel_truth": domain not in own[e.robot],
                        "honest": honest.get((e.robot, c and image_cid(c.image))),
                        "novel": bool(e.novel)})
        return result

    sim.run_round = wrapped  # type: ignore[method-assign]
    deliver = fleet.deliver

    def keep_selected(selected: Any) -> Any:
        fleet._last_selected = selected  # type: ignore[attr-defined]
        return deliver(selected)

    fleet.deliver = keep_selected  # type: ignore[method-assign]


def honest_final(run: dict[str, Any], robots: Sequence[str]) -> float:
    """Mean final-round rare precision over `robots` (NaN-free; NaN if none shared)."""
    values = [run["precision"][r][-1] for r in robots if run["precision"][r][-1] == run[
        "precision"][r][-1]]
    return float(np.mean(values)) if values else float("nan")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", default="paper-3")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--liars", type=float, default=0.2, help="share of lying robots")
    ap.add_argument("--lie", default=",".join(LIE_MODES), help="comma list of lie modes")
    ap.add_argument("--liar-seeds", default="0", help="comma list: seeds choosing the liars")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dump-votes", type=Path, default=None, metavar="DIR",
                    help="write every run's votes (JSON lines) into DIR")
    ap.add_argument("--reputation", choices=("both", "on", "off"), default="both",
                    help="run with vote reputation, without, or both (default)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    modes = [m.strip() for m in args.lie.split(",") if m.strip()]
    bad = [m for m in modes if m not in LIE_MODES]
    if bad:
        ap.error(f"unknown lie mode {bad[0]!r}; known: {', '.join(LIE_MODES)}")
    started = time.perf_counter()
    s = load_scenario(args.scenario).with_overrides(rounds=args.rounds, policies=("gu",))
    names = [r.name for r in s.robots]
    rare = [n for n in names if s.novel_domains(n)]
    data = build_experiment_data(s, load_domains(s, resolve_data_dir(None)), args.seed)
    checkpoints = bootstrap_checkpoints(s, data, args.seed)
    print(f"bootstrapped {len(names)} robots in {time.perf_counter() - started:.0f} s",
          file=sys.stderr)
    settings = {"both": (False, True), "on": (True,), "off": (False,)}[args.reputation]
    if args.dump_votes is not None:
        args.dump_votes.mkdir(parents=True, exist_ok=True)

    def dump(tag: str) -> Path | None:
        return None if args.dump_votes is None else args.dump_votes / f"seed{args.seed}-{tag}.jsonl"

    clean = {rep: run_config(s, data, checkpoints, args.seed, {}, rep,
                             dump(f"clean-rep{int(rep)}")) for rep in settings}
    rows: list[dict[str, Any]] = []
    for liar_seed in [int(x) for x in args.liar_seeds.split(",")]:
        chosen = pick_liars(names, args.liars, liar_seed)
        if not chosen:  # --liars 0: the liar-free runs are all there is
            continue
        honest = [n for n in rare if n not in chosen]
        for mode in modes:
            for rep in settings:
                run = run_config(s, data, checkpoints, args.seed,
                                 dict.fromkeys(chosen, mode), rep,
                                 dump(f"{'+'.join(chosen)}-{mode}-rep{int(rep)}"))
                base = honest_final(clean[rep], honest)
                got = honest_final(run, honest)
                rows.append({"liars": list(chosen), "lie": mode, "reputation": rep,
                             "honest_rare_robots": honest,
                             "gu_rare_precision_no_liars": round(base, 4),
                             "gu_rare_precision": round(got, 4),
                             "drop_points": round(100 * (base - got), 2),
                             "weights": run["weights"]})
                print(f"liars {chosen} {mode} reputation={rep}: {got:.3f} vs {base:.3f}",
                      file=sys.stderr)
    print(f"{'liars':8} {'lie':13} {'reputation':10} {'no_liars':>9} {'liars':>7} "
          f"{'drop_pts':>8}  weights (an honest robot's view)")
    for r in rows:
        print(f"{','.join(r['liars']):8} {r['lie']:13} {r['reputation']!s:10} "
              f"{r['gu_rare_precision_no_liars']:9.3f} {r['gu_rare_precision']:7.3f} "
              f"{r['drop_points']:8.2f}  {r['weights']}")
    with_rep = [r for r in rows if r["reputation"]]
    without = [r for r in rows if not r["reputation"]]
    summary = {
        "scenario": s.name, "rounds": s.rounds, "seed": args.seed, "liar_share": args.liars,
        "fleet": len(names),
        "gu_rare_precision_no_liars": {
            ("reputation" if rep else "no_reputation"): round(honest_final(run, rare), 4)
            for rep, run in clean.items()},
        "runs": [{k: v for k, v in r.items() if k != "weights"} for r in rows],
        "max_drop_points_with_reputation": max(
            (r["drop_points"] for r in with_rep), default=None),
        "max_drop_points_without_reputation": max(
            (r["drop_points"] for r in without), default=None),
        "target_drop_points": TARGET_DROP_POINTS,
        "target_met": bool(with_rep) and all(
            r["drop_points"] <= TARGET_DROP_POINTS for r in with_rep),
        "wall_s": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
