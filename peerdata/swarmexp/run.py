"""Runs a scenario's policies as swarms of real daemons and reports them like `peerdata experiment`.

Rule: the streams, evaluation split and seeds are `build_experiment_data`'s, the records go through
the runner's `aggregate`, so `results.json` has the in-process schema (plus a `swarm` section)
and `peerdata.experiment.report` renders both. Every swarm is stopped when its policy ends.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peerdata.experiment.data import build_experiment_data, load_domains
from peerdata.experiment.report import markdown_report, write_plots
from peerdata.experiment.runner import aggregate
from peerdata.scenario import Scenario
from peerdata.sharing.fleet import run_seed
from peerdata.swarmexp.driver import (
    DriverSettings,
    PolicyRun,
    percentile,
    run_policy,
)
from peerdata.swarmexp.files import write_robot_files, write_scenario
from peerdata.swarmexp.reference import compare_to_reference, inprocess_reference
from peerdata.testing.swarm import Settings, open_swarm

Progress = Callable[[str], None]


@dataclass(frozen=True)
class SwarmPlan:
    """What to run: a scenario (its policies, rounds and seeds already overridden) and data."""

    scenario: Scenario
    data_dir: Path | None = None
    driver: DriverSettings = DriverSettings()
    ready_timeout_s: float = 120.0
    netem: str | None = None  # emulated links (testing/netem.py), e.g. "delay 50ms loss 2%"
    gossip_votes: bool = False  # each daemon's round.gossip_votes (votes also on gossip)
    # Each daemon's [trust] reputation. Off by default, like `peerdata experiment` (the
    # in-process reference): with it on, unequal vote weights change utilities and shares.
    reputation: bool = False
    round_settings: tuple[tuple[str, Any], ...] = ()  # more [round] keys, e.g. ("chains", 1)

    @property
    def steps(self) -> int:
        """Units of progress: per seed and policy, one bootstrap plus one per round; per seed,
        the in-process reference."""
        s = self.scenario
        return len(s.seeds) * (len(s.policies) * (1 + s.rounds) + 1)


def node_settings(
    scenario: Scenario, scenario_file: Path, seed: int, vote_timeout_s: float,
    gossip_votes: bool, reputation: bool, index: int, /
) -> Settings:
    """Robot `index`'s config.toml: manual rounds, the scenario's budget, model and seed.

    The privacy filter runs but keeps what it finds: `peerdata experiment` shares the public
    datasets' images unaltered, and the swarm must share the very same pixels (its text
    detector takes some KMNIST glyphs for text and would blur them).
    """
    return {
        "privacy": {"face_action": "keep", "plate_action": "keep"},
        "round": {
            "interval_s": 0.0,
            "budget_fraction": scenario.budget,
            "max_images_per_round": max(scenario.images_per_round, 1),
            "vote_deadline_s": vote_timeout_s,
            "scenario": str(scenario_file),
            "learner_seed": run_seed(seed, index),
            "gossip_votes": gossip_votes,
        },
        "trust": {"reputation": reputation},
    }


def run_swarm_experiment(
    plan: SwarmPlan, work: Path, progress: Progress | None = None
) -> dict[str, Any]:
    """Run every (seed, policy) as a fresh swarm under `work`; returns results as the runner's."""
    tick = progress or (lambda _msg: None)
    s = plan.scenario
    started = time.perf_counter()
    domains = load_domains(s, plan.data_dir)
    runs: dict[str, list[PolicyRun]] = {p: [] for p in s.policies}
    notes: dict[str, str] = {}
    max_diff: float | None = None
    differing: list[list[Any]] = []  # [seed, policy, robot, round] shared other images
    references: list[dict[str, Any]] = []  # per seed: the in-process accuracy series
    for seed in s.seeds:
        data = build_experiment_data(s, domains, seed)
        notes = dict(data.notes)
        files = write_robot_files(s, data, work / "data" / f"seed-{seed}")
        scenario_file = write_scenario(s, work / "data" / "scenario.toml")
        base = functools.partial(node_settings, s, scenario_file.resolve(), seed,
                                 plan.driver.vote_timeout_s, plan.gossip_votes, plan.reputation)

        def settings(index: int, base: Callable[[int], Settings] = base) -> Settings:
            out = base(index)
            return {**out, "round": {**out["round"], **dict(plan.round_settings)}}

        for policy in s.policies:
            home = work / f"{policy}-{seed}"  # short: control socket paths are limited
            with open_swarm(len(s.robots), home, ready_timeout_s=plan.ready_timeout_s,
                            settings=settings, netem=plan.netem) as swarm:
                swarm.wait_peers(len(s.robots) - 1, plan.ready_timeout_s)
                runs[policy].append(run_policy(
                    s, files, policy,
                    lambda i, cmd, args, t: swarm.call(i, cmd, args, timeout_s=t),
                    settings=plan.driver, progress=tick,
                ))
        reference = inprocess_reference(s, data, seed, s.policies)
        diff, differ = compare_to_reference({p: runs[p][-1] for p in s.policies}, reference)
        if diff is not None:
            max_diff = diff if max_diff is None else max(max_diff, diff)
        differing += [[seed, *d] for d in differ]
        references.append({p: {name: [a["all"] for a in rec["accuracy"]]
                               for name, rec in ref["per_robot"].items()}
                           for p, ref in reference.items()})
        tick(f"seed {seed} in-process reference")
    results = aggregate(s, {p: [r.per_robot for r in rs] for p, rs in runs.items()}, [])
    results["data_notes"] = notes
    results["mode"] = "swarm"
    results["swarm"] = {p: [_swarm_record(r) for r in rs] for p, rs in runs.items()}
    results["summary"].update(swarm_summary(runs, [r.name for r in s.robots]))
    # the same seed through the in-process simulator: same images shared, accuracy difference
    results["summary"]["swarm_vs_inprocess_max_accuracy_diff"] = max_diff
    results["summary"]["swarm_vs_inprocess_same_shares"] = not differing
    results["swarm_vs_inprocess_differing_shares"] = differing
    # per seed, policy and robot: the in-process accuracy (all domains) of round 0, 1, ...
    results["inprocess_reference_accuracy"] = references
    results["summary"]["seconds"] = round(time.perf_counter() - started, 1)
    return results


def _swarm_record(run: PolicyRun) -> dict[str, Any]:
    return {
        "rounds_completed": run.rounds_completed,
        "round_seconds": [round(t, 3) for t in run.round_seconds],
        "vote_latency_p50_s": percentile(run.vote_latencies_s, 50),
        "vote_latency_p99_s": percentile(run.vote_latencies_s, 99),
        "vote_latencies": len(run.vote_latencies_s),
        "feedback_received": run.feedback_received,
        "bytes_sent": run.bytes_sent,
        "dropped_by_privacy": run.dropped_by_privacy,
        "network_bytes_sent": run.network_bytes_sent,
        "notes": run.notes,
    }


def swarm_summary(runs: dict[str, list[PolicyRun]], robots: Sequence[str]) -> dict[str, Any]:
    """Headline figures only a swarm has: rounds done, vote latency, feedback per robot."""
    every = [r for rs in runs.values() for r in rs]
    latencies = [v for r in every for v in r.vote_latencies_s]

    def rounded(value: float | None) -> float | None:
        return None if value is None else round(value, 4)

    return {
        "rounds_completed": min((r.rounds_completed for r in every), default=0),
        "vote_latency_p50_s": rounded(percentile(latencies, 50)),
        "vote_latency_p99_s": rounded(percentile(latencies, 99)),
        "feedback_received": {
            name: sum(r.feedback_received[name] for r in every) for name in robots
        },
    }


def swarm_markdown(results: dict[str, Any]) -> str:
    """The swarm-only figures as a markdown section (appended to the runner's report)."""
    lines = [
        "## Swarm (real daemons on 127.0.0.1)",
        "",
        "| policy | seed | rounds | round s (mean) | vote latency p50 / p99 s | "
        "feedback received | bytes sent |",
        "|---|---|---|---|---|---|---|",
    ]
    for policy, per_seed in results["swarm"].items():
        for seed, rec in zip(results["seeds"], per_seed, strict=True):
            secs = rec["round_seconds"]
            mean = sum(secs) / len(secs) if secs else float("nan")
            p50, p99 = rec["vote_latency_p50_s"], rec["vote_latency_p99_s"]
            lat = "n/a" if p50 is None else f"{p50:.3f} / {p99:.3f}"
            fb = ", ".join(f"{k} {v}" for k, v in rec["feedback_received"].items())
            sent = ", ".join(f"{k} {sum(v)}" for k, v in rec["bytes_sent"].items())
            lines.append(
                f"| {policy} | {seed} | {rec['rounds_completed']} | {mean:.1f} | {lat} | "
                f"{fb} | {sent} |"
            )
    return "\n".join(lines) + "\n"


def write_swarm_results(results: dict[str, Any], folder: Path, command: str | None) -> None:
    """results.json, results.md (with a swarm section) and the plots, into `folder`."""
    (folder / "results.json").write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    (folder / "results.md").write_text(
        markdown_report(results, command) + "\n" + swarm_markdown(results)
    )
    write_plots(results, folder)
