"""A 2-round mini experiment end to end (library and CLI), and the CLI's bad-input paths."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

from peerdata.cli import data as data_cli
from peerdata.cli import experiment as experiment_cli
from peerdata.experiment import ExperimentPlan, run_experiment
from peerdata.ml.ood import DETECTORS
from peerdata.scenario import load_scenario

torch.set_num_threads(1)

TINY = """
name = "tiny"
description = "2-round synthetic check"
datasets = [{datasets}]
rounds = 2
seeds = [0]
policies = ["gu", "random", "oracle", "all", "none"]

[data]
bootstrap_images = 120
images_per_round = 60
calibration_images = 30
eval_per_dataset = 40

[sharing]
budget = {budget}

[vision]
width = 4
embedding_dim = 16
epochs = 2
fine_tune_epochs = 1

[ranker]
epochs = 30

[[robots]]
name = "A"
mix = {{ {first} = 1.0 }}

[[robots]]
name = "B"
mix = {{ {first} = 0.7, {second} = 0.3 }}

[[robots]]
name = "C"
mix = {{ {first} = 0.7, {third} = 0.3 }}
"""


def tiny_scenario(
    tmp_path: Path,
    names: tuple[str, str, str] = ("synthetic-bars", "synthetic-rings", "synthetic-spots"),
    budget: float = 0.1,
) -> Path:
    path = tmp_path / "tiny.toml"
    first, second, third = (f'"{n}"' if "-" in n else n for n in names)
    path.write_text(
        TINY.format(
            datasets=", ".join(f'"{n}"' for n in names),
            budget=budget,
            first=first,
            second=second,
            third=third,
        )
    )
    return path


def cli() -> typer.Typer:
    app = typer.Typer()
    experiment_cli.register(app)
    data_cli.register(app)
    return app


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict:
    path = tiny_scenario(tmp_path_factory.mktemp("scenario"))
    return run_experiment(ExperimentPlan(load_scenario(str(path))))


def test_invariants_of_a_mini_experiment(results: dict) -> None:
    per_policy = results["per_policy"]
    assert set(per_policy) == {"gu", "random", "oracle", "all", "none"}
    for policy, robots in per_policy.items():
        for robot, rec in robots.items():
            shared = [c["mean"] for c in rec["shared"]]
            expected = {"all": 60, "none": 0}.get(policy, 6)
            if policy == "oracle" and robot == "A":
                expected = 0  # nothing A sees is novel to anyone
            assert shared == [expected, expected], (policy, robot)
            assert len(rec["accuracy"]["all"]) == 3  # round 0 (bootstrap) + 2 rounds
            for c in rec["accuracy"]["all"]:
                assert 0.0 <= c["mean"] <= 1.0
            for c in rec["mean_utility"]:
                assert c["mean"] is None or 0.0 <= c["mean"] <= 1.0
    for robot in ("B", "C"):
        assert all(c["mean"] == 1.0 for c in per_policy["oracle"][robot]["rare_precision"])
        # 60 images a round, 18 of them rare, budget 6: the oracle sends 6 rare ones
        recall = [c["mean"] for c in per_policy["oracle"][robot]["rare_recall"]]
        assert recall == [pytest.approx(6 / 18)] * 2
    # all policies start from the same bootstrapped robots
    starts = {p: per_policy[p]["B"]["accuracy"]["all"][0]["mean"] for p in per_policy}
    assert len(set(starts.values())) == 1
    summary = results["summary"]
    assert summary["oracle_rare_precision"] == 1.0
    for key in ("gu_rare_precision", "random_rare_precision", "gu_accuracy", "oracle_accuracy"):
        assert 0.0 <= summary[key] <= 1.0
    assert summary["gu_oracle_accuracy_gap"] is not None and summary["seconds"] >= 0
    assert summary["random_megabytes_to_random_accuracy"] is not None
    assert set(results["auroc"]) == set(DETECTORS)
    worst = min(
        v["mean"]
        for per in results["auroc"][results["scenario"]["detector"]].values()
        for v in per.values()
    )
    assert summary["ood_auroc_min_bootstrap"] == pytest.approx(worst, abs=1e-4)
    assert set(results["auroc"]["mc_dropout"]["A"]) == {"synthetic-rings", "synthetic-spots"}
    final = results["auroc_final"]["gu"]
    assert set(final) == set(DETECTORS)
    cells = [
        c["mean"]
        for per_ds in final[results["scenario"]["detector"]].values()
        for c in per_ds.values()
    ]
    assert summary["ood_auroc_min"] == pytest.approx(min(cells), abs=1e-4)
    for key in ("gu_vs_random_accuracy_round2", "gu_oracle_accuracy_gap_round5"):
        assert key in summary  # None here: the mini experiment has only 2 rounds
    assert summary["gu_oracle_accuracy_gap_round5"] is None
    assert -1.0 <= summary["gu_vs_random_accuracy_round2"] <= 1.0


def test_histograms_count_what_was_sent_and_received(results: dict) -> None:
    per_policy = results["per_policy"]
    for policy, robots in per_policy.items():
        for robot, rec in robots.items():
            assert len(rec["histograms"]) == 2
            for i, h in enumerate(rec["histograms"]):
                sent = rec["shared"][i]["mean"]
                assert sum(h["shared"]["class"].values()) == pytest.approx(sent)
                assert sum(h["shared"]["domain"].values()) == pytest.approx(sent)
                others = sum(
                    per_policy[policy][o]["shared"][i]["mean"] for o in robots if o != robot
                )
                assert sum(h["received"]["domain"].values()) == pytest.approx(others)
    oracle_b = per_policy["oracle"]["B"]["histograms"][0]
    assert set(oracle_b["shared"]["domain"]) == {"synthetic-rings"}  # B's rare domain only
    assert per_policy["none"]["A"]["histograms"][0]["received"]["class"] == {}


def test_cli_runs_and_writes_outputs(tmp_path: Path) -> None:
    out = tmp_path / "out"
    scenario = tiny_scenario(tmp_path)
    args = [
        "--scenario",
        str(scenario),
        "--policies",
        "gu,oracle",
        "--rounds",
        "1",
        "--out",
        str(out),
        "--no-progress",
    ]
    result = CliRunner().invoke(cli(), ["experiment", *args])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["oracle_rare_precision"] == 1.0 and summary["random_accuracy"] is None
    assert sorted(p.name for p in out.iterdir()) == [
        "accuracy.png",
        "precision.png",
        "results.json",
        "results.md",
    ]
    stored = json.loads((out / "results.json").read_text())
    assert stored["policies"] == ["gu", "oracle"] and stored["rounds"] == 1
    assert "| gu | B |" in (out / "results.md").read_text()
    again = CliRunner().invoke(cli(), ["experiment", *args])
    assert again.exit_code == 3 and "already exists" in again.output
    forced = CliRunner().invoke(cli(), ["experiment", *args, "--force", "--format", "json"])
    assert forced.exit_code == 0
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".out")] == []


def _no_output(tmp_path: Path, out: Path) -> None:
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []


def test_cli_budget_out_of_range(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli(),
        ["experiment", "--scenario", str(tiny_scenario(tmp_path, budget=1.5)), "--out", str(out)],
    )
    assert result.exit_code == 3 and "budget must lie in (0, 1]" in result.output
    assert "tiny.toml" in result.output
    override = CliRunner().invoke(
        cli(), ["experiment", "--scenario", "synthetic-3", "--budget", "0", "--out", str(out)]
    )
    assert override.exit_code == 3 and "budget" in override.output
    _no_output(tmp_path, out)


def test_cli_unknown_dataset_and_missing_data(tmp_path: Path) -> None:
    out = tmp_path / "out"
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    names = ("synthetic-bars", "emnist_letters", "synthetic-spots")
    result = CliRunner().invoke(
        cli(),
        [
            "experiment",
            "--scenario",
            str(tiny_scenario(tmp_path, names)),
            "--out",
            str(out),
            "--data-dir",
            str(data_dir),
            "--no-progress",
        ],
    )
    assert result.exit_code == 4 and "'emnist_letters' not found" in result.output
    _no_output(tmp_path, out)


def test_cli_malformed_dataset_file(tmp_path: Path) -> None:
    out = tmp_path / "out"
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    np.savez(data_dir / "digits.npz", x=np.zeros((50, 28, 28), np.float64), y=np.zeros(50))
    names = ("synthetic-bars", "digits", "synthetic-spots")
    result = CliRunner().invoke(
        cli(),
        [
            "experiment",
            "--scenario",
            str(tiny_scenario(tmp_path, names)),
            "--out",
            str(out),
            "--data-dir",
            str(data_dir),
            "--no-progress",
        ],
    )
    assert result.exit_code == 4
    assert "digits.npz" in result.output and "dtype float64" in result.output
    _no_output(tmp_path, out)
    listing = CliRunner().invoke(
        cli(), ["data", "list", "--data-dir", str(data_dir), "--check", "--format", "json"]
    )
    assert listing.exit_code == 4 and "digits.npz" in listing.output


def test_cli_data_list_and_fetch_refusals(tmp_path: Path) -> None:
    x = np.zeros((20, 28, 28), np.uint8)
    np.savez(tmp_path / "toy.npz", x=x, y=np.arange(20) % 10)
    listing = CliRunner().invoke(cli(), ["data", "list", "--data-dir", str(tmp_path), "-f", "json"])
    assert listing.exit_code == 0
    report = json.loads(listing.stdout.strip().splitlines()[-1])
    assert [d["name"] for d in report["datasets"]] == ["toy"]
    assert "synthetic-bars" in report["generated"]
    unknown = CliRunner().invoke(cli(), ["data", "fetch", "cifar", "--data-dir", str(tmp_path)])
    assert unknown.exit_code == 4 and "no known download" in unknown.output
    (tmp_path / "kmnist").mkdir()
    (tmp_path / "kmnist" / "train-images-idx3-ubyte.gz").write_bytes(b"corrupt")
    corrupt = CliRunner().invoke(cli(), ["data", "fetch", "kmnist", "--data-dir", str(tmp_path)])
    assert corrupt.exit_code == 4 and "checksum mismatch" in corrupt.output
    missing = CliRunner().invoke(cli(), ["data", "list", "--data-dir", str(tmp_path / "nope")])
    assert missing.exit_code == 4 and "does not exist" in missing.output


@pytest.mark.data
def test_tiny_real_data_round(data_dir: Path, tmp_path: Path) -> None:
    names = ("mnist", "kmnist", "fashion_mnist")
    scenario = load_scenario(str(tiny_scenario(tmp_path, names))).with_overrides(
        policies=("gu", "oracle"), rounds=1
    )
    results = run_experiment(ExperimentPlan(scenario, data_dir))
    assert results["summary"]["oracle_rare_precision"] == 1.0
    assert "8000 stream / 2000 evaluation" in results["data_notes"]["kmnist"]
    assert "test split" in results["data_notes"]["mnist"]


@pytest.mark.data
@pytest.mark.parametrize("name", ["paper-3", "fleet-10", "fleet-20"])
def test_real_streams_are_disjoint_and_never_evaluated_on(data_dir: Path, name: str) -> None:
    from peerdata.experiment.data import build_experiment_data, load_domains

    scenario = load_scenario(name)
    data = build_experiment_data(scenario, load_domains(scenario, data_dir), seed=0)
    streamed: list[bytes] = []
    for robot in scenario.robots:
        stream = data.streams[robot.name]
        assert len(stream.rounds) == scenario.rounds
        for batch in (stream.bootstrap, *stream.rounds):
            assert set(batch.domains) <= robot.datasets
            streamed.extend(
                image.tobytes() + bytes([label])
                for image, label in zip(batch.images, batch.labels, strict=True)
            )
    assert len(set(streamed)) == len(streamed)  # no image goes to two robots or twice
    seen = set(streamed)
    for dataset, evaluation in data.evaluation.items():
        assert len(evaluation) == scenario.eval_per_dataset
        held = {
            image.tobytes() + bytes([label])
            for image, label in zip(evaluation.images, evaluation.labels, strict=True)
        }
        assert not held & seen, dataset


def test_megabytes_to_reach_counts_bytes_sent_before_the_round() -> None:
    from peerdata.experiment.runner import megabytes_to_reach

    def cell(v: float) -> dict:
        return {"mean": v, "std": 0.0}

    res = {
        "A": {
            "accuracy": {"all": [cell(0.1), cell(0.5), cell(0.9)]},
            "bytes": [cell(1e6), cell(2e6)],
        },
    }
    assert megabytes_to_reach(res, ["A"], 0.1) == 0.0
    assert megabytes_to_reach(res, ["A"], 0.5) == 1.0
    assert megabytes_to_reach(res, ["A"], 0.8) == 3.0
    assert megabytes_to_reach(res, ["A"], 0.95) is None
