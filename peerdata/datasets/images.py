"""Labelled 28x28 image arrays and the checks every loader applies.

Rule: every array that leaves this package is uint8 N x 28 x 28 with int64 labels of equal length;
anything else is a DataError naming where it came from.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from peerdata.errors import DataError

IMAGE_SIDE = 28


@dataclass(frozen=True)
class LabelledImages:
    """A set of uint8 N x 28 x 28 images with int64 labels (0-9 within their dataset)."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def take(self, index: np.ndarray) -> LabelledImages:
        """The subset at `index` (a copy)."""
        return LabelledImages(self.images[index].copy(), self.labels[index].copy())


def checked(images: object, labels: object, origin: str) -> LabelledImages:
    """Validate raw arrays from `origin` (a file name or generator) and wrap them.

    Raises:
        DataError: wrong dtype, shape, label range, or mismatched lengths.
    """
    if not isinstance(images, np.ndarray) or not isinstance(labels, np.ndarray):
        raise DataError(f"{origin}: images and labels must be numpy arrays")
    if images.dtype != np.uint8:
        raise DataError(f"{origin}: images have dtype {images.dtype}, expected uint8")
    if images.ndim != 3 or images.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
        raise DataError(
            f"{origin}: images have shape {images.shape}, expected N x {IMAGE_SIDE} x {IMAGE_SIDE}"
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
