"""What the privacy filter hands back: boxes, regions, a filtered image or a dropped one.

Rule: a `FilteredImage` is made only by `PrivacyFilter`; calling its constructor raises, so the
sending code can demand one (`require_filtered`) and no path can send bytes that skipped the filter.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NoReturn

import cv2
import numpy as np

from peerdata.errors import PrivacyError


class RegionKind(StrEnum):
    """What a detector looks for; the config sets one action per kind."""

    FACE = "face"
    PLATE = "plate"


class Action(StrEnum):
    """What the filter does to an image where a region was found."""

    BLUR = "blur"  # redact the region (enlarged by the margin) and share the rest
    DROP = "drop"  # share nothing of this image
    KEEP = "keep"  # report the region, change nothing


class DropReason(StrEnum):
    """Why an image was not shared; the keys of `PrivacyStats.dropped_by_reason`."""

    TOO_LARGE = "too_large"  # declared or actual pixel count above privacy.max_pixels
    UNSUPPORTED_FORMAT = "unsupported_format"  # not PNG or JPEG, or an unusual pixel layout
    UNDECODABLE = "undecodable"  # corrupt, truncated, or its header disagrees with its pixels
    EMPTY = "empty"  # zero bytes or zero pixels
    DETECTION_FAILED = "detection_failed"
    REDACTION_FAILED = "redaction_failed"
    ENCODE_FAILED = "encode_failed"
    POLICY = "policy"  # a region whose action is `drop` was found


@dataclass(frozen=True)
class Box:
    """An axis-aligned pixel rectangle, origin top-left."""

    x: int
    y: int
    w: int
    h: int

    @property
    def area(self) -> int:
        return max(self.w, 0) * max(self.h, 0)

    def intersection(self, other: Box) -> int:
        """Number of pixels both boxes cover."""
        iw = min(self.x + self.w, other.x + other.w) - max(self.x, other.x)
        ih = min(self.y + self.h, other.y + other.h) - max(self.y, other.y)
        return max(iw, 0) * max(ih, 0)

    def iou(self, other: Box) -> float:
        """Intersection over union, 0 for disjoint boxes."""
        inter = self.intersection(other)
        union = self.area + other.area - inter
        return inter / union if union else 0.0

    def enclosing(self, other: Box) -> Box:
        """The smallest box holding both."""
        x0, y0 = min(self.x, other.x), min(self.y, other.y)
        x1 = max(self.x + self.w, other.x + other.w)
        y1 = max(self.y + self.h, other.y + other.h)
        return Box(x0, y0, x1 - x0, y1 - y0)

    def enlarged(self, margin: float, width: int, height: int) -> Box:
        """Grow by `margin` x the box size on every side, then clip to a width x height image."""
        dx, dy = self.w * margin, self.h * margin
        # floor the start and ceil the end, so rounding never shrinks what is covered
        x0, y0 = max(0, math.floor(self.x - dx)), max(0, math.floor(self.y - dy))
        x1 = min(width, math.ceil(self.x + self.w + dx))
        y1 = min(height, math.ceil(self.y + self.h + dy))
        return Box(x0, y0, max(x1 - x0, 0), max(y1 - y0, 0))

    def as_list(self) -> list[int]:
        return [self.x, self.y, self.w, self.h]


@dataclass(frozen=True)
class Region:
    """One thing found in an image and what was done about it."""

    kind: RegionKind
    box: Box  # as detected (merged across detectors)
    covered: Box  # the pixels actually redacted (box + margin, clipped); equals box for keep/drop
    detectors: tuple[str, ...]
    action: Action

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": str(self.kind),
            "box": self.box.as_list(),
            "covered": self.covered.as_list(),
            "detectors": list(self.detectors),
            "action": str(self.action),
        }


_FILTER_TOKEN = object()  # only code in this package holds it


class FilteredImage:
    """An image that passed the privacy filter: PNG bytes, what was found, and their sha256.

    Not a dataclass on purpose: `dataclasses.replace` would let anyone re-make one with other
    bytes. The constructor always raises; `PrivacyFilter` builds instances through `_create`.
    """

    __slots__ = ("png", "regions", "sha256", "width", "height")

    png: bytes
    regions: tuple[Region, ...]
    sha256: str
    width: int
    height: int

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise PrivacyError("a FilteredImage is made only by PrivacyFilter.filter_image/_array")

    def __init_subclass__(cls, **kwargs: object) -> NoReturn:
        raise TypeError("FilteredImage cannot be subclassed")

    @classmethod
    def _create(cls, token: object, png: bytes, regions: tuple[Region, ...],
                width: int, height: int) -> FilteredImage:
        if token is not _FILTER_TOKEN:
            raise PrivacyError("a FilteredImage is made only by PrivacyFilter")
        obj = object.__new__(cls)
        for name, value in (("png", bytes(png)), ("regions", regions),
                            ("sha256", hashlib.sha256(png).hexdigest()),
                            ("width", width), ("height", height)):
            object.__setattr__(obj, name, value)
        return obj

    def pixels(self) -> np.ndarray:
        """The filtered pixels, decoded from `png`: uint8 (H, W) or BGR (H, W, 3)."""
        img = cv2.imdecode(np.frombuffer(self.png, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
        if img is None:  # cannot happen for bytes the filter encoded itself
            raise PrivacyError("FilteredImage holds PNG bytes that do not decode")
        return img

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError("FilteredImage is immutable")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError("FilteredImage is immutable")

    def __reduce__(self) -> NoReturn:
        # Unpickling would rebuild one from arbitrary bytes; ship `png` and re-filter instead.
        raise TypeError("FilteredImage cannot be pickled")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FilteredImage) and (self.sha256, self.regions) == (
            other.sha256, other.regions)

    def __hash__(self) -> int:
        return hash(self.sha256)

    def __repr__(self) -> str:
        return (f"FilteredImage({self.width}x{self.height}, {len(self.png)} bytes, "
                f"{len(self.regions)} regions, sha256={self.sha256[:12]}...)")


def require_filtered(image: object) -> FilteredImage:
    """Return `image` if the privacy filter made it; the sending code calls this first.

    Raises:
        PrivacyError: anything else (raw bytes, arrays, look-alike objects).
    """
    if type(image) is not FilteredImage:
        raise PrivacyError(
            f"refusing to send {type(image).__name__}: only a FilteredImage may leave the robot")
    return image


@dataclass(frozen=True)
class DroppedImage:
    """An image the filter refused to share, and why."""

    reason: DropReason
    detail: str
    regions: tuple[Region, ...] = ()


@dataclass(frozen=True)
class PrivacyStats:
    """Counters since the filter was built, as `PrivacyFilter.statistics()` returns them."""

    images_seen: int
    images_filtered: int  # returned as FilteredImage
    images_dropped: int
    images_too_small_to_scan: int  # took the no-op fast path (see docs/privacy.md)
    regions_found: int
    regions_blurred: int
    regions_kept: int
    dropped_by_reason: tuple[tuple[str, int], ...]  # sorted (reason, count) pairs

    def as_dict(self) -> dict[str, Any]:
        return {
            "images_seen": self.images_seen,
            "images_filtered": self.images_filtered,
            "images_dropped": self.images_dropped,
            "images_too_small_to_scan": self.images_too_small_to_scan,
            "regions_found": self.regions_found,
            "regions_blurred": self.regions_blurred,
            "regions_kept": self.regions_kept,
            "dropped_by_reason": dict(self.dropped_by_reason),
        }
