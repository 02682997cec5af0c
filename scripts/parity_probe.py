"""Where do real daemons and the in-process simulator part ways? A step-by-step diff.

Runs one policy of a scenario twice with the same seed: as real daemons (`open_swarm`, one
process per robot, driven like `peerdata swarm --scenario`) and in process (the runner's
`restore_fleet`), and after every step compares each robot's learner state by digest: model
and ranker weights, local / received images (in training order), feedback, detector threshold;
per round also the shared source cids and every vote (verdict and score). Prints one line per
difference, a table of the steps, and ends with ONE JSON line.

  PEERDATA_DATA_DIR=../shared/data OMP_NUM_THREADS=1 nice -n 10 \
      .venv/bin/python scripts/parity_probe.py --policy random --rounds 1 --out /tmp/probe
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from peerdata.datasets.loaders import resolve_data_dir
from peerdata.experiment.data import build_experiment_data, load_domains
from peerdata.experiment.runner import bootstrap_checkpoints, restore_fleet
from peerdata.node.learning import CHECKPOINT, LearnerHost
from peerdata.scenario import load_scenario
from peerdata.sharing import LearnerConfig, RobotLearner, image_cid
from peerdata.swarmexp.files import write_robot_files, write_scenario
from peerdata.swarmexp.run import SwarmPlan, node_settings
from peerdata.testing.swarm import open_swarm

_ARRAYS = ("local_images", "local_labels", "received_images", "received_labels",
           "feedback_ids", "feedback_utilities")


def _h(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:12]


def digest(lr: RobotLearner) -> dict[str, Any]:
    """Short digests of everything a learner's results depend on."""
    out: dict[str, Any] = {k: _h(np.ascontiguousarray(getattr(lr, k)).tobytes()) for k in _ARRAYS}
    out["model"] = _h(b"".join(v.numpy().tobytes() for v in lr.model.net.state_dict().values()))
    out["ranker"] = _h(lr.ranker.state_bytes())
    out["threshold"] = lr.detector.threshold
    out["n_received"] = len(lr.received_labels)
    out["fine_tunes"] = lr.fine_tunes
    return out


def daemon_digest(home: Path, config: Any) -> dict[str, Any]:
    return digest(LearnerHost.load("x", config, 0, home / CHECKPOINT).learner)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", default="paper-3")
    ap.add_argument("--policy", default="random")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)  # as `peerdata experiment` and the daemons
    s = load_scenario(args.scenario).with_overrides(
        rounds=args.rounds, policies=(args.policy,), seeds=(args.seed,))
    if args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)
    data = build_experiment_data(s, load_domains(s, resolve_data_dir(None)), args.seed)
    files = write_robot_files(s, data, args.out / "data")
    scenario_file = write_scenario(s, args.out / "data" / "scenario.toml").resolve()
    names = [r.name for r in s.robots]
    config = LearnerConfig.of_scenario(s)
    novel = {n: s.novel_domains(n) for n in names}
    diffs: list[tuple[str, str]] = []
    steps: list[tuple[str, int]] = []

    def check(step: str, ours: dict[str, dict[str, Any]], theirs: dict[str, dict[str, Any]]
              ) -> None:
        n = 0
        for name in names:
            for key, want in ours[name].items():
                got = theirs[name].get(key)
                if got != want:
                    n += 1
                    diffs.append((step, f"{name} {key}: in-process {want} daemon {got}"))
        steps.append((step, n))

    # in process: the runner's own loop, votes captured per (voter, source cid)
    checkpoints = bootstrap_checkpoints(s, data, args.seed)
    fleet = restore_fleet(s, checkpoints, args.seed)
    inproc: list[dict[str, Any]] = [{n: digest(RobotLearner.restore(checkpoints[n], config))
                                     for n in names}]
    votes_in: list[dict[tuple[str, str], tuple[bool, float]]] = []
    shared_in: list[dict[str, list[str]]] = []
    for r in range(s.rounds):
        cast: dict[tuple[str, str], tuple[bool, float]] = {}
        for name, learner in fleet.learners.items():
            def vote(images: np.ndarray, _lr: RobotLearner = learner, _me: str = name,
                     cast: dict = cast) -> Any:
                v = type(_lr).vote(_lr, images)
                for img, nov, sc in zip(images, v.novel, v.score, strict=True):
                    cast[(_me, image_cid(img).hex())] = (bool(nov), round(float(sc), 6))
                return v
            learner.vote = vote  # type: ignore[method-assign]
        batches = {n: data.streams[n].rounds[r] for n in names}
        outcome = fleet.run_round(batches, policy=args.policy, budget=s.budget,
                                  novel_domains=novel)
        votes_in.append(cast)
        shared_in.append({n: sorted(image_cid(c.image).hex() for c in outcome.shared[n])
                          for n in names})
        inproc.append({n: digest(lr) for n, lr in fleet.learners.items()})

    # real daemons
    settings = lambda i: node_settings(s, scenario_file, args.seed, 120.0,  # noqa: E731
                                       SwarmPlan(s).gossip_votes, SwarmPlan(s).reputation, i)
    pool = ThreadPoolExecutor(len(names))
    with open_swarm(len(names), args.out / "swarm", ready_timeout_s=300,
                    settings=settings) as swarm:
        swarm.wait_peers(len(names) - 1, 120)

        def each(cmd: str, arg: Any, timeout: float = 900) -> list[dict[str, Any]]:
            return list(pool.map(lambda i: swarm.call(i, cmd, arg(i), timeout_s=timeout),
                                 range(len(names))))

        def homes() -> dict[str, dict[str, Any]]:
            return {n: daemon_digest(swarm.home(i), config) for i, n in enumerate(names)}

        each("observe", lambda i: {"npz": str(files[names[i]].bootstrap), "bootstrap": True})
        check("bootstrap", inproc[0], homes())
        for r in range(s.rounds):
            each("observe", lambda i, r=r: {"npz": str(files[names[i]].rounds[r]),
                                            "bootstrap": False})
            offers = each("round_now", lambda i: {
                "policy": args.policy,
                **({"novel_domains": sorted(novel[names[i]])} if args.policy == "oracle"
                   else {})})
            ids = [o["round_id"] for o in offers]
            each("wait_round", lambda i, ids=ids: {"round_id": ids[i], "timeout_s": 150.0}, 200)
            lists = each("shared", lambda i, ids=ids: {"round_id": ids[i]})
            source = {it["cid"]: it["source_cid"] for lst in lists for it in lst["shared"]}
            shared_d = {n: sorted({it["source_cid"] for it in lists[i]["shared"]})
                        for i, n in enumerate(names)}
            check(f"round {r + 1} shared", {n: {"cids": shared_in[r][n]} for n in names},
                  {n: {"cids": shared_d[n]} for n in names})
            cast_d: dict[tuple[str, str], tuple[bool, float]] = {}
            for i, n in enumerate(names):
                for v in swarm.call(i, "votes", {})["votes"]:
                    if v["cast"] and v["cid"] in source:
                        cast_d[(n, source[v["cid"]])] = (bool(v["novel"]),
                                                          round(float(v["score"]), 6))
            want = {n: {} for n in names}
            got = {n: {} for n in names}
            for (voter, cid), verdict in votes_in[r].items():
                want[voter][cid[:12]] = verdict
                got[voter][cid[:12]] = cast_d.get((voter, cid))
            check(f"round {r + 1} votes", want, got)
            each("learn", lambda _i: {})
            check(f"round {r + 1} learn", inproc[r + 1], homes())
    pool.shutdown()
    shown: dict[str, int] = {}
    for step, line in diffs:  # at most 12 lines per step
        shown[step] = shown.get(step, 0) + 1
        if shown[step] <= 12:
            print(step, line)
    print("| step | differences |\n|---|---|")
    for step, n in steps:
        print(f"| {step} | {n} |")
    print(json.dumps({"policy": args.policy, "rounds": args.rounds,
                      "differences": len(diffs), "steps": dict(steps)}))
    sys.exit(0)


if __name__ == "__main__":
    main()
