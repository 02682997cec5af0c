"""Combining detections and redacting them.

Rule: combining never shrinks what is covered. Overlapping boxes of one kind are replaced by
their enclosing box (a union, not classic NMS, which would discard the pixels only the weaker box
covered), and redaction keeps at most `REDACT_CELLS` values along a box side, whatever its size.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from peerdata.ml.privacy.results import Box

# Two boxes describe the same object when they overlap this much (IoU), or when this fraction
# of the smaller one lies inside the larger (a tight box inside a loose one).
MERGE_IOU = 0.3
MERGE_CONTAINED = 0.6

# A redacted box keeps REDACT_CELLS x REDACT_CELLS averages of its pixels, smoothly interpolated:
# with the default margin a face spans about 5 cells, too few for eyes, mouth or identity.
REDACT_CELLS = 8


def _same_object(a: Box, b: Box) -> bool:
    inter = a.intersection(b)
    if inter == 0:
        return False
    smaller = min(a.area, b.area)
    return a.iou(b) >= MERGE_IOU or (smaller > 0 and inter / smaller >= MERGE_CONTAINED)


def overlapping(a: Box, b: Box) -> bool:
    """Any shared pixel: the rule for the pieces of one plate (see dnn.TextPlateDetector)."""
    return a.intersection(b) > 0


def merge_boxes(found: list[tuple[Box, str]],
                same: Callable[[Box, Box], bool] = _same_object,
                ) -> list[tuple[Box, tuple[str, ...]]]:
    """Merge (box, detector) pairs that `same` pairs up into enclosing boxes, naming every
    detector; by default, boxes that overlap enough to show the same object.

    Returns:
        (box, detector names sorted) pairs, ordered top-to-bottom then left-to-right.
    """
    groups: list[tuple[Box, set[str]]] = [(box, {name}) for box, name in found]
    merged = True
    while merged:  # repeat: an enclosing box may now overlap a third one
        merged = False
        for i in range(len(groups)):
            for j in range(i + 1, len(groups)):
                (a, names_a), (b, names_b) = groups[i], groups[j]
                if same(a, b):
                    groups[i] = (a.enclosing(b), names_a | names_b)
                    del groups[j]
                    merged = True
                    break
            if merged:
                break
    return sorted(((box, tuple(sorted(names))) for box, names in groups),
                  key=lambda g: (g[0].y, g[0].x, g[0].w, g[0].h))


def redact(img: np.ndarray, box: Box) -> None:
    """Replace the pixels under `box` in place by a heavy low-pass version of themselves.

    The region is averaged down to at most REDACT_CELLS cells a side (area interpolation) and
    scaled back up bilinearly, so no detail finer than a cell survives and no block edges remain.
    """
    if box.area == 0:
        return
    roi = img[box.y:box.y + box.h, box.x:box.x + box.w]
    cells_w = max(1, min(REDACT_CELLS, box.w // 2))
    cells_h = max(1, min(REDACT_CELLS, box.h // 2))
    small = cv2.resize(roi, (cells_w, cells_h), interpolation=cv2.INTER_AREA)
    roi[...] = cv2.resize(small, (box.w, box.h), interpolation=cv2.INTER_LINEAR).reshape(roi.shape)
