#!/usr/bin/env python
"""Benchmark the OoD votes: AUROC per (robot, foreign domain) for every detector, on paper-3.

Bootstraps the scenario's robots, optionally runs some `oracle` sharing rounds (so the models
are as they are mid-experiment, having learned their peers' domains), then scores each robot's
own held-out images against each foreign dataset of the scenario AND against held-back domains
that no scenario uses and that no setting was tuned on (CIFAR-10 and PACS sketches, grey and
28x28). Prints a table; the last stdout line is one JSON object.

Usage:
    python scripts/bench_ood.py [--rounds 5] [--seed 0] [--detectors combined,knn,...]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from peerdata.datasets import resolve_data_dir
from peerdata.datasets.synthetic import generate
from peerdata.experiment.data import build_experiment_data, load_domains
from peerdata.ml.ood import DETECTORS, CombinedDetector, _CalibratedDetector, auroc, build_detector
from peerdata.scenario import load_scenario
from peerdata.sharing import InProcessFleet, LearnerConfig, RobotLearner

PER_SET = 500


def _grey28(images: list[np.ndarray]) -> np.ndarray:
    out = []
    for im in images:
        if im.ndim == 3:
            im = cv2.cvtColor(im, cv2.COLOR_RGB2GRAY)
        out.append(cv2.resize(im, (28, 28), interpolation=cv2.INTER_AREA))
    return np.stack(out).astype(np.uint8)


def held_back(data_dir: Path) -> dict[str, np.ndarray]:
    """Domains no scenario streams: CIFAR-10 test photos and PACS sketches, grey 28x28."""
    out = {}
    cifar = data_dir / "cifar10.npz"
    if cifar.exists():
        x = np.load(cifar)["x"][:PER_SET]
        out["cifar10_grey"] = _grey28(list(x))
    for domain in ("sketch", "art_painting"):
        files = sorted((data_dir / "pacs" / domain).glob("*/*.jpg"))
        if files:
            pick = np.random.default_rng(0).permutation(len(files))[:PER_SET]
            out[f"pacs_{domain}_grey"] = _grey28(
                [cv2.imread(str(files[i]), cv2.IMREAD_GRAYSCALE) for i in pick]
            )
    out["synthetic_waves"] = generate("waves", PER_SET, seed=0).images
    return out


def _detector(name: str, tpr: float, seed: int) -> _CalibratedDetector:
    """`build_detector`, plus "max:a+b" for the max (instead of mean) of standardized parts."""
    if name.startswith("max:"):
        parts = [build_detector(p, tpr, seed) for p in name[4:].split("+")]
        return CombinedDetector(parts, tpr, rule="max")
    return build_detector(name, tpr, seed)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenario", default="paper-3")
    parser.add_argument("--rounds", type=int, default=5, help="oracle rounds before scoring")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--detectors", default=",".join(DETECTORS))
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--cache", type=Path, default=None, help="folder to keep the models in")
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    data_dir = resolve_data_dir(args.data_dir)
    scenario = load_scenario(args.scenario).with_overrides(rounds=max(args.rounds, 1))
    data = build_experiment_data(scenario, load_domains(scenario, data_dir), args.seed)
    config = LearnerConfig.of_scenario(scenario)
    cache = args.cache / f"{scenario.name}-s{args.seed}-r{args.rounds}.pt" if args.cache else None
    if cache is not None and cache.exists():
        saved = torch.load(cache, weights_only=True)
        learners = {n: RobotLearner.restore(cp, config) for n, cp in saved.items()}
    else:
        learners = {}
        for i, robot in enumerate(scenario.robots):
            learner = RobotLearner(robot.name, config, seed=args.seed * 1000 + i)
            b = data.streams[robot.name].bootstrap
            learner.bootstrap(b.images, b.labels, b.domains)
            learners[robot.name] = learner
        novel = {r.name: scenario.novel_domains(r.name) for r in scenario.robots}
        fleet = InProcessFleet(learners, seed=args.seed)
        for r in range(args.rounds):
            batches = {n: data.streams[n].rounds[r] for n in learners}
            fleet.run_round(
                batches, policy="oracle", budget=scenario.budget, novel_domains=novel
            )
        if cache is not None:
            torch.save({n: lr.checkpoint() for n, lr in learners.items()}, cache)
    extra = held_back(data_dir) if data_dir else {}
    table: dict[str, dict[str, float]] = {}
    for name in args.detectors.split(","):
        table[name] = {}
        for robot in scenario.robots:
            learner = learners[robot.name]
            own = sorted(robot.datasets)
            own_images = np.concatenate(
                [data.evaluation[d].images[: PER_SET // len(own)] for d in own]
            )
            detector = _detector(name, config.ood_tpr, learner.seed)
            detector.fit(learner.model, learner.calibration_images, learner.detector_reference())
            base = detector.score(learner.model, own_images)
            foreign = {d: v.images[:PER_SET] for d, v in data.evaluation.items() if d not in own}
            for d, images in {**foreign, **{f"*{k}": v for k, v in extra.items()}}.items():
                novel_scores = detector.score(learner.model, images)
                table[name][f"{robot.name}:{d}"] = auroc(base, novel_scores)
    pairs = list(next(iter(table.values())))
    print("AUROC (%) after", args.rounds, "oracle rounds; * = held-back domain (never tuned on)")
    print(f"{'detector':34s}" + "".join(f"{p:>22s}" for p in pairs))
    for name, row in table.items():
        print(f"{name:34s}" + "".join(f"{100 * row[p]:22.1f}" for p in pairs))
    summary = {
        name: {
            "min_scenario": round(min(v for p, v in row.items() if "*" not in p), 4),
            "min_held_back": round(min((v for p, v in row.items() if "*" in p), default=1.0), 4),
        }
        for name, row in table.items()
    }
    print(
        json.dumps(
            {
                "rounds": args.rounds,
                "seed": args.seed,
                "summary": summary,
                "seconds": round(time.perf_counter() - started, 1),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
