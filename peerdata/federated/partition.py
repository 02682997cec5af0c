"""Split a labelled pool over robots: IID, quantity-skewed, or class-skewed (Dirichlet beta).

Rule: pure numpy, seeded. Quantity skew draws each robot's share of the images from Dir(beta)
with labels IID; class skew draws, for every class, the robots' shares of it from Dir(beta)
(Hsu et al., 2019; Li et al., NIID-Bench 2022). Smaller beta = more skew. Every robot gets at
least `min_per_robot` images, so no robot is empty.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from peerdata.errors import ConfigError

SPLITS = ("iid", "quantity", "class")
_MAX_DRAWS = 200


@dataclass(frozen=True)
class SplitSpec:
    """How to split: kind, Dirichlet beta, number of robots, total images, floor per robot."""

    kind: str = "quantity"
    beta: float = 0.5
    robots: int = 7
    total: int = 10_500
    min_per_robot: int = 20

    def __post_init__(self) -> None:
        if self.kind not in SPLITS:
            raise ConfigError(f"split must be one of {SPLITS}, got {self.kind!r}")
        if self.beta <= 0:
            raise ConfigError("Dirichlet beta must be > 0")
        if self.robots < 2 or self.min_per_robot < 1:
            raise ConfigError("need >= 2 robots and min_per_robot >= 1")
        if self.total < self.robots * self.min_per_robot:
            raise ConfigError("total images must cover min_per_robot for every robot")


def _quantity_sizes(spec: SplitSpec, rng: np.random.Generator) -> np.ndarray:
    share = rng.dirichlet(np.full(spec.robots, spec.beta))
    spare = spec.total - spec.robots * spec.min_per_robot
    sizes = spec.min_per_robot + np.floor(share * spare).astype(np.int64)
    sizes[np.argmax(share)] += spec.total - int(sizes.sum())
    return sizes


def split_indices(labels: np.ndarray, spec: SplitSpec, seed: int) -> list[np.ndarray]:
    """Indices into `labels`, one sorted array per robot, disjoint, `spec.total` in all.

    Raises:
        ConfigError: the pool is smaller than `spec.total`, or no class-skewed draw gave every
            robot `min_per_robot` images.
    """
    if len(labels) < spec.total:
        raise ConfigError(f"pool of {len(labels)} images is smaller than total {spec.total}")
    rng = np.random.default_rng(seed)
    pool = rng.permutation(len(labels))[: spec.total]
    if spec.kind == "iid":
        return [np.sort(part) for part in np.array_split(pool, spec.robots)]
    if spec.kind == "quantity":
        bounds = np.cumsum(_quantity_sizes(spec, rng))[:-1]
        return [np.sort(part) for part in np.split(pool, bounds)]
    classes = np.unique(labels[pool])
    for _ in range(_MAX_DRAWS):
        parts: list[list[np.ndarray]] = [[] for _ in range(spec.robots)]
        for c in classes:
            members = pool[labels[pool] == c]
            share = rng.dirichlet(np.full(spec.robots, spec.beta))
            cuts = (np.cumsum(share)[:-1] * len(members)).astype(np.int64)
            for robot, chunk in enumerate(np.split(members, cuts)):
                parts[robot].append(chunk)
        result = [np.sort(np.concatenate(p)) for p in parts]
        if min(len(r) for r in result) >= spec.min_per_robot:
            return result
    raise ConfigError(
        f"class-skewed split with beta={spec.beta} left a robot under {spec.min_per_robot} "
        f"images in {_MAX_DRAWS} draws; raise total or beta"
    )


def label_histogram(labels: np.ndarray, num_classes: int) -> tuple[int, ...]:
    """Count of each class 0..num_classes-1."""
    return tuple(int(c) for c in np.bincount(labels, minlength=num_classes)[:num_classes])
