"""The swarm driver against in-process robots: same records as `run_experiment`, bit for bit.

No processes here: `InProcessRobots` answers the daemons' learning commands, so this pins the
driver's data files, command order and metric mapping to the in-process runner.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from swarm_standin import InProcessRobots

from peerdata.experiment import ExperimentPlan, run_experiment
from peerdata.experiment.data import build_experiment_data, load_domains
from peerdata.experiment.runner import aggregate
from peerdata.scenario import Scenario, load_scenario
from peerdata.swarmexp.compare import compare
from peerdata.swarmexp.driver import run_policy, sharing_record, vote_latency
from peerdata.swarmexp.files import write_robot_files


def tiny() -> Scenario:
    s = load_scenario("synthetic-3")
    return s.with_overrides(
        rounds=2, bootstrap_images=150, images_per_round=60, calibration_images=40,
        eval_per_dataset=60, policies=("gu",),
        vision=dataclasses.replace(s.vision, epochs=2, fine_tune_samples=200),
        ranker=dataclasses.replace(s.ranker, epochs=50),
    )


def test_sharing_record_counts_an_image_once_per_cid() -> None:
    items = [
        {"cid": "a", "domain": "k", "nbytes": 10},
        {"cid": "a", "domain": "k", "nbytes": 10},  # the same image, offered to a second peer
        {"cid": "b", "domain": "m", "nbytes": 5},
    ]
    rec = sharing_record(items, ["k", "m", "m", "k"], frozenset({"k"}))
    assert rec == {"shared": 2, "rare_shared": 1, "rare_available": 2, "rare_precision": 0.5,
                   "rare_recall": 0.5, "bytes": 15}
    empty = sharing_record([], ["m"], frozenset({"k"}))
    assert np.isnan(empty["rare_precision"]) and np.isnan(empty["rare_recall"])


def test_vote_latency_reads_offer_and_feedback_times() -> None:
    assert vote_latency({"shared_at": 10.0, "feedback_at": 10.25}) == pytest.approx(0.25)
    assert vote_latency({"shared_at": 10.0}) is None


def test_driver_reproduces_the_in_process_runner(tmp_path: Path) -> None:
    s = tiny()
    inprocess = run_experiment(ExperimentPlan(s))
    expected = inprocess["per_policy"]
    runs: dict[str, list[dict[str, Any]]] = {}
    data = build_experiment_data(s, load_domains(s, None), s.seeds[0])
    files = write_robot_files(s, data, tmp_path)
    for policy in s.policies:
        run = run_policy(s, files, policy, InProcessRobots(s, s.seeds[0]))
        assert run.rounds_completed == s.rounds
        runs[policy] = [run.per_robot]
        for name, rec in run.per_robot.items():
            want = expected[policy][name]
            assert [a["all"] for a in rec["accuracy"]] == [c["mean"] for c in
                                                           want["accuracy"]["all"]]
            for key in ("shared", "rare_shared", "bytes"):
                assert [x[key] for x in rec["sharing"]] == [c["mean"] for c in want[key]]
    gaps = compare(inprocess, aggregate(s, runs, []))
    assert gaps["within_2_pts"] and gaps["max_round_accuracy_gap_pts"] == 0.0
    assert gaps["policies"]["gu"]["max_mean_precision_gap_pts"] in (0.0, None)
