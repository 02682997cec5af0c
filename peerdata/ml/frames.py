"""The one image pipeline: encoded bytes or arrays of any size, gray or colour, to the exact
pixels a model takes (`ImageSpec`: square side, 1 or 3 channels).

Rule: every path that feeds a model (inbox ingest, images received from peers, datasets) goes
through `decode_frame` / `fit_image`, so a picture gives the same pixels wherever it came from.
Encoded bytes have their declared size checked against a pixel limit *before* any decoder sees
them (the header check of `peerdata.ml.privacy.imageformat`). Arrays are RGB (never BGR) once
they leave this module. A frame that is not square is resized whole (aspect not kept): nothing
at its edges is cropped away.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from peerdata.errors import DataError
from peerdata.ml.privacy.imageformat import check_pixels, declared_size

DEFAULT_MAX_PIXELS = 40_000_000  # = privacy.max_pixels default


@dataclass(frozen=True)
class ImageSpec:
    """The pixels a model takes: `side` x `side`, gray (1 channel) or RGB (3)."""

    side: int
    channels: int

    def __post_init__(self) -> None:
        if self.side < 1 or self.channels not in (1, 3):
            raise ValueError(f"an image spec needs side >= 1 and 1 or 3 channels, got {self}")

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of one image."""
        return (self.side, self.side) if self.channels == 1 else (self.side, self.side, 3)

    def empty(self) -> np.ndarray:
        """A batch of no images of this spec."""
        return np.zeros((0, *self.shape), np.uint8)

    def holds(self, images: np.ndarray) -> bool:
        """Whether `images` is a uint8 batch of exactly this spec."""
        return images.dtype == np.uint8 and images.shape[1:] == self.shape


GRAY_28 = ImageSpec(28, 1)


def fit_image(image: np.ndarray, spec: ImageSpec) -> np.ndarray:
    """Bring one uint8 image (H x W gray, H x W x 1, RGB or RGBA) to `spec`.

    Raises:
        DataError: not a uint8 image of a known layout.
    """
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or min(image.shape[:2]) < 1 or (
            image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
        raise DataError(f"an image is a uint8 H x W [x 1|3|4] array, got {image.dtype} "
                        f"{image.shape}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 3 and image.shape[2] == 4:
        image = image[:, :, :3]
    if spec.channels == 1 and image.ndim == 3:
        image = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    elif spec.channels == 3 and image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    h, w = image.shape[:2]
    if (h, w) != (spec.side, spec.side):
        shrink = h * w > spec.side * spec.side
        image = cv2.resize(np.ascontiguousarray(image), (spec.side, spec.side),
                           interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return np.ascontiguousarray(image, np.uint8)


def fit_batch(images: np.ndarray, spec: ImageSpec) -> np.ndarray:
    """`fit_image` over a batch (N x H x W [x C]); returned as is when it already fits."""
    if spec.holds(images):
        return images
    if len(images) == 0:
        return spec.empty()
    return np.stack([fit_image(im, spec) for im in images])


def decode_native(data: bytes, channels: int = 3, max_pixels: int = DEFAULT_MAX_PIXELS
                  ) -> np.ndarray:
    """PNG/JPEG bytes to uint8 gray (H x W) or RGB (H x W x 3) at their own size; the header's
    declared size is checked against `max_pixels` before decoding.

    Raises:
        DataError: not PNG/JPEG, a declared size over `max_pixels`, or undecodable bytes.
    """
    width, height = declared_size(data)  # raises (a DataError) on anything but PNG/JPEG
    check_pixels(width, height, max_pixels)
    flag = cv2.IMREAD_GRAYSCALE if channels == 1 else cv2.IMREAD_COLOR
    img = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
    if img is None:
        raise DataError("undecodable image")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB) if img.ndim == 3 else img


def decode_frame(data: bytes, spec: ImageSpec, max_pixels: int = DEFAULT_MAX_PIXELS
                 ) -> np.ndarray:
    """PNG/JPEG bytes to the pixels `spec` asks for (header checked first, as above)."""
    return fit_image(decode_native(data, spec.channels, max_pixels), spec)


def to_bgr(image: np.ndarray) -> np.ndarray:
    """An RGB (or gray) pipeline image as OpenCV wants it for encoding."""
    return cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
