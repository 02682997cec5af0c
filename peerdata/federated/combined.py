"""Combined mode: robots share images (GU policy) and average their models, vs each alone.

Rule: the sharing side is the experiment's own in-process fleet (`peerdata.experiment.runner`:
same bootstrap, same round core) on a sharing scenario (e.g. paper-3), untouched; the model
side is FedAvg of the robots' vision models after each round's fine-tune, weighted by the
images each trained on. All four variants start from the same bootstrapped robots (one shared
weight initialisation, as FL assumes), see the same streams, and are evaluated the same way.
No printing; model traffic is measured on real encoded ModelUpdates.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from peerdata.experiment.data import ExperimentData, build_experiment_data, load_domains
from peerdata.experiment.metrics import accuracies, sharing_stats
from peerdata.experiment.runner import bootstrap_checkpoints, restore_fleet
from peerdata.federated.tensors import BlobOptions
from peerdata.federated.traffic import robot_identity, star_transfers, transfer_bytes
from peerdata.ml.aggregate import ClientUpdate, FedAvg
from peerdata.scenario import Scenario
from peerdata.sharing import RobotLearner

VARIANTS = ("none", "images", "models", "combined")
_POLICY = {"none": "none", "images": "gu", "models": "none", "combined": "gu"}


def average_models(learners: Mapping[str, RobotLearner]) -> None:
    """FedAvg the learners' vision models in place (weights: images each trained on), then
    recalibrate every OoD detector on the new model."""
    updates = [
        ClientUpdate(name, lr.weights(), len(lr.local_labels) + len(lr.received_labels))
        for name, lr in learners.items()
    ]
    averaged = FedAvg().aggregate(updates)
    for lr in learners.values():
        lr.load_weights(averaged)


def _model_bytes(learners: Mapping[str, RobotLearner], round_id: int) -> int:
    names = sorted(learners)
    ids = {name: robot_identity(i) for i, name in enumerate(names)}
    peers = [ids[n].peer_id for n in names]
    states = {ids[n].peer_id: learners[n].weights() for n in names}
    base = states[peers[0]]
    transfers = star_transfers(peers[0], peers, states, states, base)
    return transfer_bytes(transfers, {i.peer_id: i for i in ids.values()}, round_id,
                          BlobOptions())


def run_variant(scenario: Scenario, data: ExperimentData, checkpoints: Mapping[str, bytes],
                variant: str, tick: Callable[[str], None], seed: int = 0) -> dict[str, Any]:
    """Play every round of one variant; return final accuracies and bytes moved."""
    fleet = restore_fleet(scenario, checkpoints, seed)
    learners = fleet.learners
    novel = {r.name: scenario.novel_domains(r.name) for r in scenario.robots}
    image_bytes = model_bytes = 0
    for r in range(scenario.rounds):
        batches = {n: data.streams[n].rounds[r] for n in learners}
        outcome = fleet.run_round(batches, policy=_POLICY[variant], budget=scenario.budget,
                                  novel_domains=novel)
        for n, lr in learners.items():
            stats = sharing_stats(lr, batches[n].domains, outcome.shared[n], novel[n])
            image_bytes += int(stats["bytes"])
        if variant in ("models", "combined"):
            model_bytes += _model_bytes(learners, r + 1)
            average_models(learners)
        tick(f"{variant} round {r + 1}/{scenario.rounds}")
    final = {n: accuracies(lr, data.evaluation) for n, lr in learners.items()}
    return {"accuracy": final, "image_bytes": image_bytes, "model_bytes": model_bytes}


def run_combined(scenario: Scenario, data_dir: Path | None, *,
                 variants: tuple[str, ...] = VARIANTS,
                 progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Every variant for every seed of `scenario`; returns per-seed results and a summary of
    `<variant>_accuracy` (robots' mean, all datasets), `<variant>_worst_accuracy` and
    `<variant>_megabytes` (images plus models, whole run), means over seeds."""
    tick = progress or (lambda _m: None)
    domains = load_domains(scenario, data_dir)
    per_seed = []
    for seed in scenario.seeds:
        data = build_experiment_data(scenario, domains, seed)
        checkpoints = bootstrap_checkpoints(scenario, data, seed, shared_init=True)
        tick(f"seed {seed} bootstrap")
        per_seed.append({v: run_variant(scenario, data, checkpoints, v, tick, seed)
                         for v in variants})
    summary: dict[str, float] = {}
    for v in variants:
        robots = [[acc["all"] for acc in run[v]["accuracy"].values()] for run in per_seed]
        summary[f"{v}_accuracy"] = round(float(np.mean([np.mean(r) for r in robots])), 4)
        summary[f"{v}_worst_accuracy"] = round(float(np.mean([min(r) for r in robots])), 4)
        summary[f"{v}_megabytes"] = round(float(np.mean(
            [(run[v]["image_bytes"] + run[v]["model_bytes"]) / 1e6 for run in per_seed])), 3)
    return {"per_seed": per_seed, "summary": summary}
