"""What sharing was worth: histograms of what moved, vote quality after the run, value per byte.

Rule: pure functions of per-seed run records (`runner._run_policy`) and their seed means; no
learner state, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from peerdata.experiment.metrics import class_entropy, mean_histograms, mean_std
from peerdata.scenario import Scenario


def histogram_series(seed_runs: Sequence[Mapping[str, Any]], robot: str) -> list[dict]:
    """Per round, one robot's shared/received class and domain histograms, mean over seeds."""
    if "histograms" not in seed_runs[0][robot]:  # records of runners that do not collect them
        return []
    rounds = len(seed_runs[0][robot]["histograms"])
    return [
        mean_histograms([run[robot]["histograms"][i] for run in seed_runs]) for i in range(rounds)
    ]


def final_aurocs(runs: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, Any]:
    """policy -> detector -> robot -> foreign dataset -> AUROC (mean/std over seeds), last round."""
    out: dict[str, Any] = {}
    for policy, seed_runs in runs.items():
        first = seed_runs[0]
        robots = list(first)
        if not robots or "auroc" not in first[robots[0]]:
            continue
        out[policy] = {
            det: {
                r: {
                    d: mean_std([run[r]["auroc"][det][d] for run in seed_runs])
                    for d in first[r]["auroc"][det]
                }
                for r in robots
            }
            for det in first[robots[0]]["auroc"]
        }
    return out


def _fleet_accuracy(res: Mapping[str, Any], robots: Sequence[str], index: int) -> float:
    values = [res[r]["accuracy"]["all"][index]["mean"] for r in robots]
    return float("nan") if any(v is None for v in values) else float(np.mean(values))


def value_summary(
    scenario: Scenario,
    per_policy: Mapping[str, Any],
    runs: Mapping[str, Sequence[Mapping[str, Any]]],
) -> dict[str, float | None]:
    """Headline keys of #13: gu vs random at round 2, gu vs oracle at round 5, vote quality.

    `gu_vs_random_accuracy_round2` and `gu_oracle_accuracy_gap_round5` are fleet-mean 3-domain
    accuracy differences (fractions); `gu_worst_robot_vs_random` is the smallest per-robot
    gu - random difference at the last round. `ood_auroc_min` is the smallest (robot, foreign
    dataset) AUROC of the scenario's detector after the last round of gu (or the first policy
    run), `received_class_entropy_*` the mean entropy (bits) of the classes peers received.
    """
    robots = [r.name for r in scenario.robots]
    out: dict[str, float | None] = {}

    def put(key: str, value: float) -> None:
        out[key] = None if value != value else round(value, 4)

    def at(policy: str, index: int) -> float:
        res = per_policy.get(policy)
        if res is None or len(res[robots[0]]["accuracy"]["all"]) <= index:
            return float("nan")
        return _fleet_accuracy(res, robots, index)

    put("gu_vs_random_accuracy_round2", at("gu", 2) - at("random", 2))
    put("gu_oracle_accuracy_gap_round5", at("oracle", 5) - at("gu", 5))
    if "gu" in per_policy and "random" in per_policy:
        put(
            "gu_worst_robot_vs_random",
            min(
                per_policy["gu"][r]["accuracy"]["all"][-1]["mean"]
                - per_policy["random"][r]["accuracy"]["all"][-1]["mean"]
                for r in robots
            ),
        )
    for policy, res in per_policy.items():
        entropies = [
            class_entropy(h["received"]["class"]) for r in robots for h in res[r]["histograms"]
        ]
        finite = [e for e in entropies if e == e]
        put(f"received_class_entropy_{policy}", float(np.mean(finite)) if finite else float("nan"))
    finals = final_aurocs(runs)
    policy = "gu" if "gu" in finals else next(iter(finals), None)
    if policy is not None and scenario.detector in finals[policy]:
        cells = [
            c["mean"]
            for per_ds in finals[policy][scenario.detector].values()
            for c in per_ds.values()
            if c["mean"] is not None
        ]
        put("ood_auroc_min", min(cells) if cells else float("nan"))
    return out
