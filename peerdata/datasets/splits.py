"""Seeded, stratified splitting of datasets into disjoint robot streams and held-out parts.

Rule: an image index is handed out at most once per dataset, so no robot ever trains on an image
another robot streams, and nothing in a held-out evaluation split is ever streamed.

When a dataset has its own train and test files, robots stream from the train split and are
evaluated on the test split. When it has a single file (KMNIST here: only its 10k test split),
`eval_fraction` of it (stratified by label, seeded) is held out for evaluation and the rest is
streamed: with the default 0.2 that is 8,000 stream / 2,000 evaluation images.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from peerdata.datasets.images import LabelledImages
from peerdata.datasets.loaders import DatasetSplits
from peerdata.errors import DataError


@dataclass(frozen=True)
class DomainData:
    """One dataset ready for an experiment: its stream pool and its held-out evaluation part."""

    name: str
    stream: LabelledImages
    evaluation: LabelledImages
    note: str


def stratified_split(
    labels: np.ndarray, held_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (rest, held) with `held_fraction` of every label held out.

    Both returned index arrays are shuffled (seeded) and disjoint.
    """
    if not 0.0 < held_fraction < 1.0:
        raise DataError(f"held-out fraction must lie in (0, 1), got {held_fraction}")
    rng = np.random.default_rng(seed)
    rest: list[np.ndarray] = []
    held: list[np.ndarray] = []
    for label in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == label))
        n_held = int(round(len(idx) * held_fraction))
        held.append(idx[:n_held])
        rest.append(idx[n_held:])
    return rng.permutation(np.concatenate(rest)), rng.permutation(np.concatenate(held))


def balanced_subset(labels: np.ndarray, count: int, seed: int) -> np.ndarray:
    """Up to `count` indices with labels as balanced as the data allows (seeded)."""
    rng = np.random.default_rng(seed)
    per_label = [rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    order = [
        idx[i]
        for i in range(max(map(len, per_label), default=0))
        for idx in per_label
        if i < len(idx)
    ]
    return np.asarray(order[:count], dtype=np.int64)


def prepare_domain(
    splits: DatasetSplits, eval_fraction: float, eval_size: int, seed: int
) -> DomainData:
    """Stream pool and evaluation set (at most `eval_size` images, label-balanced) of a dataset."""
    if splits.train is not None:
        stream, held = splits.train, splits.test
        note = f"stream: train split ({len(stream)}), evaluation: test split ({len(held)})"
    else:
        rest, held_idx = stratified_split(splits.test.labels, eval_fraction, seed)
        stream, held = splits.test.subset(rest), splits.test.subset(held_idx)
        note = (
            f"single split of {len(splits.test)}: {len(stream)} stream / {len(held)} "
            f"evaluation (stratified, seed {seed})"
        )
    evaluation = held.take(balanced_subset(held.labels, eval_size, seed))
    return DomainData(splits.name, stream, evaluation, note)


def allocate_disjoint(
    pool_sizes: Mapping[str, int], requests: Sequence[Mapping[str, int]], seed: int
) -> list[dict[str, np.ndarray]]:
    """Give each request (dataset -> count) its own indices, disjoint across requests.

    Raises:
        DataError: a dataset has fewer images than all requests together need.
    """
    rng = np.random.default_rng(seed)
    order = {name: rng.permutation(size) for name, size in sorted(pool_sizes.items())}
    cursor = dict.fromkeys(order, 0)
    out: list[dict[str, np.ndarray]] = []
    for request in requests:
        given: dict[str, np.ndarray] = {}
        for name, count in request.items():
            start = cursor[name]
            if start + count > len(order[name]):
                need = sum(r.get(name, 0) for r in requests)
                raise DataError(
                    f"dataset {name!r} has {len(order[name])} stream images but the scenario "
                    f"needs {need}: lower images_per_round, rounds or bootstrap_images"
                )
            given[name] = order[name][start : start + count]
            cursor[name] = start + count
        out.append(given)
    return out
