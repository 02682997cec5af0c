"""Runs a scenario: every policy side by side on identical streams and seeds, measured per round.

Rule: no printing and no files; progress goes to an injected callback and results come back as
plain JSON-ready dicts (`peerdata.experiment.report` writes them). Every policy of a seed starts
from the same bootstrapped robots (restored from one checkpoint), so policies differ only in
what they share.
"""

from __future__ import annotations

import operator
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from peerdata.experiment.data import ExperimentData, build_experiment_data, load_domains
from peerdata.experiment.metrics import (
    accuracies,
    detector_aurocs,
    mean_std,
    round_histograms,
    sharing_stats,
)
from peerdata.experiment.value import final_aurocs, histogram_series, value_summary
from peerdata.ml.vision import VisionModel
from peerdata.scenario import Scenario
from peerdata.sharing import InProcessFleet, LearnerConfig, RobotLearner, RoundOutcome, run_seed
from peerdata.sharing.liars import pick_liars

Progress = Callable[[str], None]
AUROC_IMAGES = 500  # per side, per (robot, foreign dataset) pair


@dataclass(frozen=True)
class ExperimentPlan:
    """What to run: a scenario (its policies, rounds and seeds may be overridden) and data."""

    scenario: Scenario
    data_dir: Path | None = None
    # lying members (issue #10): this share of robots (seeded choice per run seed) lies in
    # `lie` mode; `reputation`: origins weight votes by the voters' reputation
    liars: float = 0.0
    lie: str = "invert"
    reputation: bool = False

    def fleet_options(self, seed: int) -> dict[str, Any]:
        """`InProcessFleet` keywords for run seed `seed` (liars and reputation)."""
        names = [r.name for r in self.scenario.robots]
        return {"liars": dict.fromkeys(pick_liars(names, self.liars, seed), self.lie),
                "reputation": self.reputation}

    @property
    def steps(self) -> int:
        """Units of progress: per seed, one bootstrap plus one per (policy, round)."""
        s = self.scenario
        return len(s.seeds) * (1 + len(s.policies) * s.rounds)


def bootstrap_checkpoints(
    scenario: Scenario, data: ExperimentData, seed: int, *, shared_init: bool = False
) -> dict[str, bytes]:
    """Every robot bootstrapped on its first images (seeded by `run_seed`), as checkpoints.

    `shared_init`: every vision model starts from one initialisation (what federated averaging
    assumes; networks from different random weights cannot be averaged).
    """
    config = LearnerConfig.of_scenario(scenario)
    out = {}
    for i, robot in enumerate(scenario.robots):
        learner = RobotLearner(robot.name, config, seed=run_seed(seed, i))
        if shared_init:
            learner.model = VisionModel(config.vision, run_seed(seed, 0))
        b = data.streams[robot.name].bootstrap
        learner.bootstrap(b.images, b.labels, b.domains)
        out[robot.name] = learner.checkpoint()
    return out


def restore_fleet(
    scenario: Scenario, checkpoints: Mapping[str, bytes], seed: int, **fleet_options: Any
) -> InProcessFleet:
    """The robots of `checkpoints` as one in-process fleet (simulator seeded by `seed`;
    `fleet_options`: `InProcessFleet`'s liars and reputation)."""
    config = LearnerConfig.of_scenario(scenario)
    learners = {name: RobotLearner.restore(cp, config) for name, cp in checkpoints.items()}
    return InProcessFleet(learners, seed=seed, **fleet_options)


def run_policy_rounds(
    scenario: Scenario,
    data: ExperimentData,
    checkpoints: Mapping[str, bytes],
    policy: str,
    tick: Progress,
    seed: int,
    on_round: Callable[[int, RoundOutcome], None] | None = None,
    fleet_options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One policy's rounds from the bootstrapped `checkpoints`; the runner's per-robot records.

    `on_round(r, outcome)` sees each round's outcome (what was shared, the feedback)."""
    fleet = restore_fleet(scenario, checkpoints, seed, **(fleet_options or {}))
    learners = fleet.learners
    novel = {r.name: scenario.novel_domains(r.name) for r in scenario.robots}
    per_robot: dict[str, dict[str, list[Any]]] = {
        name: {
            "accuracy": [accuracies(lr, data.evaluation)],
            "sharing": [],
            "utility": [],
            "histograms": [],
        }
        for name, lr in learners.items()
    }
    for r in range(scenario.rounds):
        batches = {name: data.streams[name].rounds[r] for name in learners}
        outcome = fleet.run_round(
            batches, policy=policy, budget=scenario.budget, novel_domains=novel
        )
        if on_round is not None:
            on_round(r, outcome)
        histograms = round_histograms(learners, outcome.shared)
        for name, learner in learners.items():
            rec = per_robot[name]
            rec["histograms"].append(histograms[name])
            rec["sharing"].append(
                sharing_stats(learner, batches[name].domains, outcome.shared[name], novel[name])
            )
            utilities = [f.utility for f in outcome.feedback[name]]
            rec["utility"].append(float(np.mean(utilities)) if utilities else float("nan"))
            rec["accuracy"].append(accuracies(learner, data.evaluation))
        tick(f"{policy} round {r + 1}")
    own = {r.name: sorted(r.datasets) for r in scenario.robots}
    for name, learner in learners.items():  # the votes' quality after the last round
        per_robot[name]["auroc"] = detector_aurocs(
            learner, own[name], data.evaluation, AUROC_IMAGES
        )
    return per_robot


def run_experiment(plan: ExperimentPlan, progress: Progress | None = None) -> dict[str, Any]:
    """Run every (seed, policy) of the plan; returns the full results and a summary."""
    tick = progress or (lambda _msg: None)
    s = plan.scenario
    started = time.perf_counter()
    domains = load_domains(s, plan.data_dir)
    runs: dict[str, list[dict[str, Any]]] = {p: [] for p in s.policies}
    aurocs: list[dict[str, Any]] = []
    liars: dict[int, list[str]] = {}
    notes: Mapping[str, str] = {}
    for seed in s.seeds:
        data = build_experiment_data(s, domains, seed)
        notes = data.notes
        checkpoints = bootstrap_checkpoints(s, data, seed)
        config = LearnerConfig.of_scenario(s)
        aurocs.append(
            {
                r.name: detector_aurocs(
                    RobotLearner.restore(checkpoints[r.name], config),
                    sorted(r.datasets),
                    data.evaluation,
                    AUROC_IMAGES,
                )
                for r in s.robots
            }
        )
        tick(f"seed {seed} bootstrap")
        for policy in s.policies:
            runs[policy].append(run_policy_rounds(s, data, checkpoints, policy, tick, seed,
                                                  fleet_options=plan.fleet_options(seed)))
        if plan.liars:
            liars[seed] = sorted(plan.fleet_options(seed)["liars"])
    results = aggregate(s, runs, aurocs)
    if plan.liars:
        results["liars"] = {"share": plan.liars, "lie": plan.lie, "by_seed": liars,
                            "reputation": plan.reputation}
    results["data_notes"] = dict(notes)
    results["summary"]["seconds"] = round(time.perf_counter() - started, 1)
    return results


def _series(
    runs: Sequence[dict[str, Any]], robot: str, get: Callable[[Any], float], key: str
) -> list[dict[str, float | None]]:
    length = len(runs[0][robot][key])
    return [mean_std([get(run[robot][key][i]) for run in runs]) for i in range(length)]


def aggregate(
    scenario: Scenario, runs: Mapping[str, list[dict[str, Any]]], aurocs: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """Mean and std over seeds of every per-round figure, plus the headline summary."""
    robots = [r.name for r in scenario.robots]
    rare_robots = [r for r in robots if scenario.novel_domains(r)]
    domains = [*scenario.datasets, "all"]
    per_policy: dict[str, Any] = {}
    for policy, seed_runs in runs.items():
        per_policy[policy] = {
            robot: {
                "accuracy": {
                    d: _series(seed_runs, robot, operator.itemgetter(d), "accuracy")
                    for d in domains
                },
                **{
                    k: _series(seed_runs, robot, operator.itemgetter(k), "sharing")
                    for k in ("shared", "rare_shared", "rare_precision", "rare_recall", "bytes")
                },
                "mean_utility": _series(seed_runs, robot, float, "utility"),
                "histograms": histogram_series(seed_runs, robot),
            }
            for robot in robots
        }
    auroc_table = {
        det: {
            r.name: {
                d: mean_std([a[r.name][det][d] for a in aurocs])
                for d in scenario.datasets
                if d not in r.datasets
            }
            for r in scenario.robots
        }
        for det in (aurocs[0][robots[0]] if aurocs else {})
    }
    summary = summarize(per_policy, robots, rare_robots)
    # after bootstrap; `ood_auroc_min` itself (#13) is the vote's quality after the last round
    summary["ood_auroc_min_bootstrap"] = ood_auroc_min(auroc_table.get(scenario.detector, {}))
    summary.update(value_summary(scenario, per_policy, runs))
    return {
        "scenario": {
            "name": scenario.name,
            "source": scenario.source,
            "description": scenario.description,
            "datasets": list(scenario.datasets),
            "budget": scenario.budget,
            "robots": {r.name: dict(r.mix) for r in scenario.robots},
            "rare_robots": rare_robots,
            "detector": scenario.detector,
            "min_utility": scenario.min_utility,
            "bootstrap_images": scenario.bootstrap_images,
            "images_per_round": scenario.images_per_round,
        },
        "policies": list(runs),
        "seeds": list(scenario.seeds),
        "rounds": scenario.rounds,
        "per_policy": per_policy,
        "auroc": auroc_table,
        "auroc_final": final_aurocs(runs),
        "summary": summary,
    }


def ood_auroc_min(table: Mapping[str, Mapping[str, dict[str, float | None]]]) -> float | None:
    """The worst mean AUROC over every (robot, foreign domain) pair of one detector's table."""
    means = [v["mean"] for per in table.values() for v in per.values() if v["mean"] is not None]
    return round(min(means), 4) if means else None


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if v == v]
    return float(np.mean(finite)) if finite else float("nan")


def _final(series: list[dict[str, float | None]]) -> float:
    value = series[-1]["mean"]
    return float("nan") if value is None else value


def summarize(
    per_policy: Mapping[str, Any], robots: Sequence[str], rare_robots: Sequence[str]
) -> dict[str, float | None]:
    """Final-round headline figures (fractions in [0, 1], means over seeds)."""
    out: dict[str, float | None] = {}

    def put(key: str, value: float) -> None:
        out[key] = None if value != value else round(value, 4)

    for policy in ("gu", "random", "oracle", "all", "none"):
        res = per_policy.get(policy)
        if res is None:
            for k in (
                "rare_precision",
                "rare_recall",
                "accuracy",
                "megabytes",
                "accuracy_gain_per_mb",
            ):
                out[f"{policy}_{k}"] = None
            continue
        for k in ("rare_precision", "rare_recall"):
            put(f"{policy}_{k}", _nanmean([_final(res[r][k]) for r in rare_robots]))
        final = np.mean([_final(res[r]["accuracy"]["all"]) for r in robots])
        start = np.mean([res[r]["accuracy"]["all"][0]["mean"] for r in robots])
        megabytes = sum(sum(p["mean"] or 0.0 for p in res[r]["bytes"]) for r in robots) / 1e6
        put(f"{policy}_accuracy", float(final))
        put(f"{policy}_megabytes", megabytes)
        put(
            f"{policy}_accuracy_gain_per_mb",
            float((final - start) / megabytes) if megabytes else float("nan"),
        )
    if "gu" in per_policy and "oracle" in per_policy:
        put(
            "gu_oracle_accuracy_gap",
            max(
                _final(per_policy["oracle"][r]["accuracy"]["all"])
                - _final(per_policy["gu"][r]["accuracy"]["all"])
                for r in robots
            ),
        )
    else:
        out["gu_oracle_accuracy_gap"] = None
    if "random" in per_policy:
        finals = [_final(per_policy["random"][r]["accuracy"]["all"]) for r in robots]
        target = float(np.mean(finals))
        for policy, res in per_policy.items():
            mb = megabytes_to_reach(res, robots, target)
            out[f"{policy}_megabytes_to_random_accuracy"] = None if mb is None else round(mb, 4)
    return out


def megabytes_to_reach(
    res: Mapping[str, Any], robots: Sequence[str], accuracy: float
) -> float | None:
    """MB all robots had sent when their mean 3-domain accuracy first reached `accuracy`.

    Accuracy per byte at equal accuracy: how much bandwidth a policy needs to match what
    `random` reaches by the final round (None if it never does).
    """
    rounds = len(res[robots[0]]["accuracy"]["all"])
    sent = 0.0
    for i in range(rounds):
        if i > 0:
            sent += sum(res[r]["bytes"][i - 1]["mean"] or 0.0 for r in robots) / 1e6
        mean = float(np.mean([res[r]["accuracy"]["all"][i]["mean"] for r in robots]))
        if mean >= accuracy - 1e-9:
            return sent
    return None
