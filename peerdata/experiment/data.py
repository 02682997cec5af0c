"""Experiment data: each robot's bootstrap set and per-round batches, and the evaluation sets.

Rule: streams are drawn without replacement from each dataset's stream pool (seeded by the run
seed), so robots never share a local image, and evaluation images come only from the held-out
part (see `peerdata.datasets.splits`), so no robot is ever evaluated on an image it trained on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from peerdata.datasets import DomainData, LabelledImages, load_dataset, prepare_domain
from peerdata.datasets.splits import allocate_disjoint
from peerdata.ml.frames import fit_batch
from peerdata.scenario import Scenario
from peerdata.sharing import Batch


@dataclass(frozen=True)
class RobotStream:
    """One robot's local data: a bootstrap batch, then one batch per round."""

    bootstrap: Batch
    rounds: tuple[Batch, ...]


@dataclass(frozen=True)
class ExperimentData:
    """Streams per robot and unified-label evaluation sets per dataset."""

    streams: Mapping[str, RobotStream]
    evaluation: Mapping[str, LabelledImages]
    notes: Mapping[str, str]


def load_domains(scenario: Scenario, data_dir: Path | None) -> dict[str, DomainData]:
    """Load and split every dataset of the scenario (independent of the run seed)."""
    return {
        name: prepare_domain(
            load_dataset(name, data_dir),
            scenario.eval_fraction,
            scenario.eval_per_dataset,
            scenario.split_seed,
        )
        for name in scenario.datasets
    }


def split_counts(total: int, mix: tuple[tuple[str, float], ...]) -> dict[str, int]:
    """Whole image counts per dataset for a mix (largest remainder, sums to `total`)."""
    exact = {d: share * total for d, share in mix if share > 0}
    counts = {d: int(np.floor(v)) for d, v in exact.items()}
    by_remainder = sorted(exact, key=lambda d: (counts[d] - exact[d], d))
    for d in by_remainder[: total - sum(counts.values())]:
        counts[d] += 1
    return counts


def _batch(
    scenario: Scenario,
    domains: Mapping[str, DomainData],
    picks: Mapping[str, np.ndarray],
    rng: np.random.Generator,
) -> Batch:
    images, labels, names = [], [], []
    spec = scenario.vision.image_spec
    for d, idx in sorted(picks.items()):
        images.append(fit_batch(domains[d].stream.take(idx).images, spec))
        labels.append(domains[d].stream.labels[idx] + scenario.label_offset(d))
        names.append(np.full(len(idx), d, dtype=object))
    order = rng.permutation(sum(len(i) for i in picks.values()))
    return Batch(
        np.concatenate(images)[order] if images else spec.empty(),
        np.concatenate(labels)[order], np.concatenate(names)[order]
    )


def build_experiment_data(
    scenario: Scenario, domains: Mapping[str, DomainData], seed: int
) -> ExperimentData:
    """Draw every robot's disjoint streams for one run seed."""
    sizes = [scenario.bootstrap_images] + [scenario.images_per_round] * scenario.rounds
    requests = [split_counts(n, robot.mix) for robot in scenario.robots for n in sizes]
    pool = {name: len(d.stream) for name, d in domains.items()}
    picks = allocate_disjoint(pool, requests, seed)
    rng = np.random.default_rng([seed, 17])
    streams = {}
    for i, robot in enumerate(scenario.robots):
        mine = picks[i * len(sizes) : (i + 1) * len(sizes)]
        batches = [_batch(scenario, domains, p, rng) for p in mine]
        streams[robot.name] = RobotStream(batches[0], tuple(batches[1:]))
    spec = scenario.vision.image_spec
    evaluation = {
        name: LabelledImages(fit_batch(d.evaluation.images, spec),
                             d.evaluation.labels + scenario.label_offset(name))
        for name, d in domains.items()
    }
    return ExperimentData(streams, evaluation, {n: d.note for n, d in domains.items()})
