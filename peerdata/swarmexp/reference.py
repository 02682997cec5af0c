"""The swarm against the in-process simulator on the same data and seed: did the daemons share
exactly the images `peerdata experiment` shares, and how far apart are the accuracies?

Rule: the reference is the experiment runner's own policy loop (same bootstrap, same round
core); images are compared by content ID (the local image before the privacy filter), accuracy
per robot and round on all domains, as a fraction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from peerdata.experiment.data import ExperimentData
from peerdata.experiment.runner import bootstrap_checkpoints, run_policy_rounds
from peerdata.scenario import Scenario
from peerdata.sharing import RoundOutcome, image_cid
from peerdata.swarmexp.driver import PolicyRun


def inprocess_reference(scenario: Scenario, data: ExperimentData, seed: int,
                        policies: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per policy: the runner's per-robot records, plus `shared_cids` per robot and round."""
    checkpoints = bootstrap_checkpoints(scenario, data, seed)
    out: dict[str, dict[str, Any]] = {}
    for policy in policies:
        cids: dict[str, list[list[str]]] = {r.name: [] for r in scenario.robots}

        def on_round(_r: int, outcome: RoundOutcome, cids: dict = cids) -> None:
            for name, shared in outcome.shared.items():
                cids[name].append(sorted({image_cid(c.image).hex() for c in shared}))

        records = run_policy_rounds(scenario, data, checkpoints, policy, lambda _m: None, seed,
                                    on_round)
        out[policy] = {"per_robot": records, "shared_cids": cids}
    return out


def compare_to_reference(runs: Mapping[str, PolicyRun], reference: Mapping[str, Any]
                         ) -> tuple[float | None, list[list[Any]]]:
    """(largest accuracy difference over robots, rounds and policies, as a fraction; every
    [policy, robot, round (1-based)] where the robot shared other images than in-process)."""
    largest: float | None = None
    differ: list[list[Any]] = []
    for policy, run in runs.items():
        ref = reference[policy]
        for name, rec in run.per_robot.items():
            want = ref["per_robot"][name]["accuracy"]
            for got, exp in zip(rec["accuracy"], want, strict=False):
                diff = abs(float(got["all"]) - float(exp["all"]))
                largest = diff if largest is None else max(largest, diff)
            got_cids, want_cids = run.shared_cids.get(name, []), ref["shared_cids"][name]
            differ += [[policy, name, r + 1] for r, want in enumerate(want_cids)
                       if r >= len(got_cids) or got_cids[r] != want]
    return (None if largest is None else round(largest, 4)), differ
