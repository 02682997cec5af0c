"""Labelled image arrays and the checks every loader applies.

Rule: every array that leaves this package is uint8, N x H x W (gray) or N x H x W x 3 (RGB),
with int64 labels 0-9 of equal length; anything else is a DataError naming where it came from.
A derived set (`peerdata.datasets.derived`) holds its source pixels and a `derive` function:
read its pixels through `take`, which applies it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from peerdata.errors import DataError

IMAGE_SIDE = 28


Derive = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""(source pixels, their ids) -> derived pixels; deterministic in the ids."""


@dataclass(frozen=True)
class LabelledImages:
    """uint8 N x H x W [x 3] images with int64 labels (0-9 within their dataset).

    With `derive` set, `images` are the source pixels and `ids` their positions in the source
    split (the per-image seed): `subset` stays lazy, `take` computes the derived pixels.
    """

    images: np.ndarray
    labels: np.ndarray
    derive: Derive | None = None
    ids: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def _ids(self) -> np.ndarray:
        return np.arange(len(self)) if self.ids is None else self.ids

    def take(self, index: np.ndarray) -> LabelledImages:
        """The subset at `index` (a copy), with derived pixels computed."""
        if self.derive is None:
            return LabelledImages(self.images[index].copy(), self.labels[index].copy())
        pixels = self.derive(self.images[index], self._ids()[index])
        return LabelledImages(pixels, self.labels[index].copy())

    def subset(self, index: np.ndarray) -> LabelledImages:
        """The subset at `index`; a derived set stays derived (nothing computed yet)."""
        if self.derive is None:
            return self.take(index)
        return LabelledImages(self.images[index], self.labels[index].copy(), self.derive,
                              self._ids()[index])


def checked(images: object, labels: object, origin: str) -> LabelledImages:
    """Validate raw arrays from `origin` (a file name or generator) and wrap them.

    Raises:
        DataError: wrong dtype, shape, label range, or mismatched lengths.
    """
    if not isinstance(images, np.ndarray) or not isinstance(labels, np.ndarray):
        raise DataError(f"{origin}: images and labels must be numpy arrays")
    if images.dtype != np.uint8:
        raise DataError(f"{origin}: images have dtype {images.dtype}, expected uint8")
    if not (images.ndim == 3 or (images.ndim == 4 and images.shape[3] == 3)) or (
            images.ndim >= 3 and min(images.shape[1:3]) < 1):
        raise DataError(
            f"{origin}: images have shape {images.shape}, expected N x H x W (gray) or "
            f"N x H x W x 3 (RGB)"
        )
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(
            f"{origin}: labels must be a 1-D integer array, got {labels.dtype} "
            f"with shape {labels.shape}"
        )
    if labels.shape[0] != images.shape[0]:
        raise DataError(f"{origin}: {images.shape[0]} images but {labels.shape[0]} labels")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"{origin}: labels must lie in 0..9, found {labels.min()}..{labels.max()}")
    return LabelledImages(np.ascontiguousarray(images), labels.astype(np.int64))
