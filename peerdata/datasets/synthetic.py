"""Procedurally drawn 28x28 pattern families: distinct "domains" usable without any real data.

Rule: a family's images are a pure function of (family, split, index range); the same name always
gives the same arrays, on every machine, with no file and no download.

Each family draws 10 classes of one kind of pattern, with random jitter and noise:
`synthetic-bars` (a bar at one of 10 angles), `synthetic-spots` (a disk at one of 10 places on a
circle), `synthetic-rings` (a ring of one of 10 radii), `synthetic-waves` (a sine grating of one of
10 frequency/orientation pairs).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

import numpy as np

from peerdata.datasets.images import IMAGE_SIDE, LabelledImages, checked
from peerdata.datasets.loaders import SYNTHETIC_PREFIX, DatasetSplits
from peerdata.errors import DataError

TRAIN_SIZE = 6000
TEST_SIZE = 2000

_Y, _X = np.mgrid[0:IMAGE_SIDE, 0:IMAGE_SIDE].astype(np.float32)
_C = (IMAGE_SIDE - 1) / 2.0


def _bars(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    angle = labels * (np.pi / 10) + rng.normal(0, 0.04, labels.size)
    dx, dy = rng.normal(0, 2.0, (2, labels.size))
    width = rng.uniform(1.2, 2.5, labels.size)
    c, s = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    dist = np.abs((_X - _C - dx[:, None, None]) * s - (_Y - _C - dy[:, None, None]) * c)
    along = np.abs((_X - _C) * c + (_Y - _C) * s)
    return np.clip(width[:, None, None] - dist + 1, 0, 1) * (along < 11)


def _spots(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    theta = labels * (2 * np.pi / 10) + rng.normal(0, 0.08, labels.size)
    cx = _C + 8 * np.cos(theta) + rng.normal(0, 0.8, labels.size)
    cy = _C + 8 * np.sin(theta) + rng.normal(0, 0.8, labels.size)
    radius = rng.uniform(3.0, 4.5, labels.size)
    dist = np.hypot(_X - cx[:, None, None], _Y - cy[:, None, None])
    return np.clip(radius[:, None, None] - dist, 0, 1)


def _rings(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    radius = 3.0 + labels * 1.0 + rng.normal(0, 0.15, labels.size)
    cx, cy = _C + rng.normal(0, 1.0, (2, labels.size))
    dist = np.hypot(_X - cx[:, None, None], _Y - cy[:, None, None])
    return np.clip(1.2 - np.abs(dist - radius[:, None, None]), 0, 1)


def _waves(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    freq = (0.25 + 0.12 * (labels % 5))[:, None, None]
    angle = np.where(labels < 5, 0.3, 1.3)[:, None, None] + rng.normal(0, 0.05, (labels.size, 1, 1))
    phase = rng.uniform(0, 2 * np.pi, (labels.size, 1, 1))
    wave = np.sin(freq * (_X * np.cos(angle) + _Y * np.sin(angle)) + phase)
    return (wave > 0.2).astype(np.float32)


FAMILIES: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "bars": _bars,
    "spots": _spots,
    "rings": _rings,
    "waves": _waves,
}


def synthetic_names() -> list[str]:
    """Every generated dataset name."""
    return [SYNTHETIC_PREFIX + f for f in FAMILIES]


def generate(family: str, count: int, seed: int) -> LabelledImages:
    """`count` images of `family` with balanced labels, deterministic in (family, seed)."""
    if family not in FAMILIES:
        known = ", ".join(synthetic_names())
        raise DataError(f"unknown synthetic dataset {SYNTHETIC_PREFIX}{family!r}; known: {known}")
    rng = np.random.default_rng([zlib.crc32(family.encode()), seed])
    labels = rng.permutation(np.arange(count) % 10).astype(np.int64)
    ink = FAMILIES[family](labels, rng)
    noisy = ink * rng.uniform(0.7, 1.0, (count, 1, 1)) + rng.normal(0, 0.08, ink.shape)
    images = (np.clip(noisy, 0, 1) * 255).astype(np.uint8)
    return checked(images, labels, f"{SYNTHETIC_PREFIX}{family}")


def generate_splits(name: str) -> DatasetSplits:
    """Train and test splits of the synthetic dataset `name` (e.g. `synthetic-bars`)."""
    family = name.removeprefix(SYNTHETIC_PREFIX)
    train = generate(family, TRAIN_SIZE, seed=0)
    test = generate(family, TEST_SIZE, seed=1)
    return DatasetSplits(name, train, test, origin="generated")
