"""Derived domains: `BASE:CORRUPTION:SEVERITY` (e.g. `cifar10:fog:3`) is dataset BASE with one
ImageNet-C corruption applied per image by `imagecorruptions-imaug`.

Rule: a derived image is a pure function of (name, split, position in the split, source
pixels): each image gets its own seed from those, the global NumPy RNG that the library draws
from is saved and restored around every call, and nothing is computed until pixels are read
(`LabelledImages.take`), so a scenario pays only for the images it uses.
"""

from __future__ import annotations

import inspect
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np

from peerdata.datasets.images import LabelledImages
from peerdata.datasets.loaders import DatasetSplits
from peerdata.errors import DataError

SEVERITIES = range(1, 6)
MIN_SIDE = 32  # the library refuses smaller images; they are upscaled first, then brought back


def parse_derived(name: str) -> tuple[str, str, int] | None:
    """(base, corruption, severity) of a derived name, or None if `name` has no colon.

    Raises:
        DataError: a colon name that is not BASE:CORRUPTION:SEVERITY with severity 1-5.
    """
    if ":" not in name:
        return None
    parts = name.split(":")
    if len(parts) != 3 or not all(parts) or not parts[2].isdigit():
        raise DataError(f"derived dataset {name!r}: expected BASE:CORRUPTION:SEVERITY, "
                        f"e.g. cifar10:fog:3")
    base, corruption, severity = parts[0], parts[1], int(parts[2])
    if severity not in SEVERITIES:
        raise DataError(f"derived dataset {name!r}: severity must be 1-5")
    if corruption not in corruption_names():
        raise DataError(f"derived dataset {name!r}: unknown corruption {corruption!r}; known: "
                        f"{', '.join(corruption_names())}")
    return base, corruption, severity


def _library() -> Any:
    try:
        import imagecorruptions
    except ImportError:
        raise DataError(
            "derived datasets need imagecorruptions-imaug: pip install --no-deps "
            "imagecorruptions-imaug==1.1.5 scipy numba (bash scripts/setup does this)"
        ) from None
    return imagecorruptions


def corruption_names() -> list[str]:
    """Every corruption the library knows."""
    return list(_library().get_corruption_names("all"))


def corrupter(name: str, split: str, corruption: str, severity: int
              ) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """The `derive` function of one derived split: (pixels, ids) -> corrupted pixels."""
    lib = _library()
    function = lib.corruption_dict[corruption]
    takes_seed = "seed" in inspect.signature(function).parameters
    base_seed = zlib.crc32(f"{name}/{split}".encode())

    def one(image: np.ndarray, seed: int) -> np.ndarray:
        gray = image.ndim == 2
        h, w = image.shape[:2]
        x = np.stack([image] * 3, axis=-1) if gray else image
        if min(h, w) < MIN_SIDE:
            import cv2

            x = cv2.resize(x, (max(w, MIN_SIDE), max(h, MIN_SIDE)),
                           interpolation=cv2.INTER_LINEAR)
        state = np.random.get_state()
        try:
            np.random.seed(seed)
            extra = {"seed": seed} if takes_seed else {}
            out = lib.corrupt(x, severity=severity, corruption_name=corruption, **extra)
        finally:
            np.random.set_state(state)
        out = np.clip(out, 0, 255).astype(np.uint8)
        if out.shape[:2] != (h, w):
            import cv2

            out = cv2.resize(out, (w, h), interpolation=cv2.INTER_AREA)
        return out.mean(axis=2).astype(np.uint8) if gray else out

    def derive(pixels: np.ndarray, ids: np.ndarray) -> np.ndarray:
        seeds = [(base_seed + 1_000_003 * int(i)) % 2**32 for i in ids]
        if not len(pixels):
            return pixels.copy()
        return np.stack([one(p, s) for p, s in zip(pixels, seeds, strict=True)])

    return derive


def derived_splits(name: str, base: DatasetSplits, corruption: str, severity: int
                   ) -> DatasetSplits:
    """`base` with `corruption` at `severity` applied lazily to each of its splits."""

    def wrap(images: LabelledImages | None, split: str) -> LabelledImages | None:
        if images is None:
            return None
        if images.derive is not None:
            raise DataError(f"{name}: a derived dataset cannot be derived again")
        return LabelledImages(images.images, images.labels,
                              corrupter(name, split, corruption, severity))

    test = wrap(base.test, "test")
    assert test is not None
    return DatasetSplits(name, wrap(base.train, "train"), test,
                         f"{base.origin} + {corruption} severity {severity}")
