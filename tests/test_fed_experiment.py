"""Splits, local training with the proximal term, measured traffic, and a tiny experiment."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from peerdata.datasets import load_dataset
from peerdata.errors import ConfigError
from peerdata.federated.experiment import (
    FederatedExperimentConfig,
    build_fleet,
    parse_scenario,
    run_experiment,
    run_strategy,
    summarize,
)
from peerdata.federated.local import LocalTraining, new_state, train_from
from peerdata.federated.partition import SplitSpec, label_histogram, split_indices
from peerdata.ml.aggregate import FedProx, MultiTierConfig
from peerdata.ml.vision import VisionConfig

LABELS = np.repeat(np.arange(10), 100)


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models train far faster on one thread than on contended ones."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
TINY = VisionConfig(num_classes=10, width=2, embedding_dim=8, dropout=0.0)


@pytest.mark.parametrize("kind", ["iid", "quantity", "class"])
def test_splits_are_disjoint_complete_and_seeded(kind: str) -> None:
    spec = SplitSpec(kind, 0.5, robots=7, total=700, min_per_robot=10)
    parts = split_indices(LABELS, spec, seed=3)
    joined = np.concatenate(parts)
    assert len(parts) == 7 and len(joined) == len(set(joined.tolist()))
    assert min(len(p) for p in parts) >= 10
    assert sum(len(p) for p in parts) == (700 if kind != "class" else len(joined))
    again = split_indices(LABELS, spec, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))


def test_skew_grows_as_beta_shrinks() -> None:
    def spread(kind: str, beta: float) -> float:
        parts = split_indices(LABELS, SplitSpec(kind, beta, 7, 700, 5), seed=0)
        if kind == "quantity":
            return float(np.std([len(p) for p in parts]))
        hists = np.array([label_histogram(LABELS[p], 10) for p in parts], dtype=float)
        return float(np.mean((hists / hists.sum(1, keepdims=True)).max(1)))

    assert spread("quantity", 0.1) > spread("quantity", 10.0)
    assert spread("class", 0.1) > spread("class", 10.0)


def test_bad_split_specs_are_refused() -> None:
    with pytest.raises(ConfigError):
        SplitSpec("zipf")
    with pytest.raises(ConfigError):
        SplitSpec("class", beta=0.0)
    with pytest.raises(ConfigError, match="smaller"):
        split_indices(LABELS[:50], SplitSpec("iid", total=100, min_per_robot=1), seed=0)


def test_parse_scenario() -> None:
    assert parse_scenario("mnist-quantity-0.5") == ("mnist", "quantity", 0.5)
    assert parse_scenario("fashion_mnist-class-0.1") == ("fashion_mnist", "class", 0.1)
    assert parse_scenario("synthetic-bars-iid") == ("synthetic-bars", "iid", 1.0)
    with pytest.raises(ConfigError, match="DATASET"):
        parse_scenario("paper-3")


def test_proximal_term_keeps_local_model_near_the_start() -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (64, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 64)
    start = new_state(TINY, 0)
    training = LocalTraining(learning_rate=0.1)

    def drift(prox: FedProx | None) -> float:
        end = train_from(TINY, start, images, labels, epochs=3, training=training, seed=1,
                         prox=prox)
        return float(sum((end[k] - start[k]).pow(2).sum() for k in start))

    plain, damped = drift(None), drift(FedProx(mu=5.0))
    assert damped < plain
    assert drift(None) == plain  # seeded: the same run gives the same weights


def test_tiny_experiment_is_deterministic_and_bytes_are_equal() -> None:
    data = load_dataset("synthetic-bars", None)
    cfg = FederatedExperimentConfig(
        split=SplitSpec("quantity", 0.5, robots=7, total=210, min_per_robot=10), rounds=2,
        test_images=100, vision=TINY, strategies=("fedavg", "median", "multitier"),
        attacked=("fedavg", "median"), multitier=MultiTierConfig(top_tier=3, et=1, er=1),
    )
    results = run_experiment(data.train, data.test, cfg)
    summary = summarize(results)
    assert {"fedavg_worst_accuracy", "multitier_worst_accuracy", "fedavg_bytes_per_round",
            "multitier_bytes_per_round", "fedavg_attacked_accuracy_drop",
            "median_attacked_accuracy_drop"} <= set(summary)
    # both send 2 * (7 - 1) models a round; only the headers differ by a few bytes
    assert abs(summary["fedavg_bytes_per_round"] - summary["multitier_bytes_per_round"]) < 64
    assert all(len(r.robot_accuracies) == 7 and len(r.curve) == 2 for r in results)
    fleet = build_fleet(data.train, data.test, cfg)
    again = run_strategy("fedavg", fleet, cfg)
    assert again.global_accuracy == results[0].global_accuracy
    assert again.robot_accuracies == results[0].robot_accuracies


def test_float16_halves_the_traffic() -> None:
    data = load_dataset("synthetic-bars", None)
    cfg = FederatedExperimentConfig(
        split=SplitSpec("iid", 1.0, robots=3, total=60, min_per_robot=10), rounds=1,
        test_images=20, vision=TINY, strategies=("fedavg",), attacked=())
    fleet = build_fleet(data.train, data.test, cfg)
    full = run_strategy("fedavg", fleet, cfg).bytes_per_round
    half = run_strategy("fedavg", fleet, dataclasses.replace(cfg, update_dtype="float16"))
    assert 0.45 < half.bytes_per_round / full < 0.6


def test_cli_prints_table_then_json() -> None:
    from peerdata.cli.main import _register_all, app

    _register_all()
    result = CliRunner().invoke(app, [
        "federated", "--scenario", "synthetic-bars-quantity-1.0", "--rounds", "1",
        "--images", "140", "--test-images", "50", "--strategy", "fedavg,median",
        "--no-progress"])
    assert result.exit_code == 0, result.output
    last = json.loads(result.output.strip().splitlines()[-1])
    assert last["scenario"] == "synthetic-bars-quantity-1.0"
    assert "median_attacked_accuracy_drop" in last and "fedavg_bytes_per_round" in last
    bad = CliRunner().invoke(app, ["federated", "--scenario", "paper-3"])
    assert bad.exit_code == 3


@pytest.mark.slow
def test_combined_mode_on_the_synthetic_scenario() -> None:
    from peerdata.federated.combined import run_combined
    from peerdata.scenario import load_scenario

    spec = load_scenario("synthetic-3").with_overrides(rounds=1)
    results = run_combined(spec, None, variants=("images", "combined"))
    summary = results["summary"]
    assert set(summary) == {f"{v}_{k}" for v in ("images", "combined")
                            for k in ("accuracy", "worst_accuracy", "megabytes")}
    # after averaging every robot holds the same model, so mean and worst coincide
    combined = results["per_seed"][0]["combined"]["accuracy"]
    assert len({round(a["all"], 6) for a in combined.values()}) == 1
    assert summary["combined_megabytes"] > summary["images_megabytes"]
