"""Decoding and encoding for the privacy filter: PNG and JPEG in, PNG out.

Rule: the pixel count an image declares in its header is checked against the limit *before* any
decoder sees the bytes, so a small file that declares a huge image (a decompression bomb) is
rejected without allocating it.
"""

from __future__ import annotations

import struct

import cv2
import numpy as np

from peerdata.errors import DataError
from peerdata.ml.privacy.results import DropReason

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SIGNATURE = b"\xff\xd8\xff"
# Start-of-frame markers carry the frame size; C4 (DHT), C8 (JPG) and CC (DAC) do not.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_NO_LENGTH = frozenset(range(0xD0, 0xD8)) | {0x01, 0xD8}


class ImageRejected(DataError):
    """An image the filter will not share; `reason` says which counter it goes to."""

    def __init__(self, reason: DropReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def declared_size(data: bytes) -> tuple[int, int]:
    """Return (width, height) from a PNG IHDR or JPEG SOF header, without decoding pixels.

    Raises:
        ImageRejected: empty input, a format other than PNG/JPEG, or a header that is cut short.
    """
    if not data:
        raise ImageRejected(DropReason.EMPTY, "no bytes")
    if data.startswith(PNG_SIGNATURE):
        return _png_size(data)
    if data.startswith(JPEG_SIGNATURE):
        return _jpeg_size(data)
    raise ImageRejected(DropReason.UNSUPPORTED_FORMAT,
                        f"not PNG or JPEG (starts with {data[:8].hex()})")


def _png_size(data: bytes) -> tuple[int, int]:
    # The first chunk must be IHDR: length 13, then width and height as big-endian uint32.
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise ImageRejected(DropReason.UNDECODABLE, "PNG without an IHDR header")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _jpeg_size(data: bytes) -> tuple[int, int]:
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise ImageRejected(DropReason.UNDECODABLE, f"JPEG marker expected at byte {pos}")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _JPEG_NO_LENGTH:
            pos += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image or start of scan before any frame header
            break
        (length,) = struct.unpack(">H", data[pos + 2:pos + 4])
        if marker in _JPEG_SOF:
            if pos + 9 > len(data) or length < 7:
                break
            height, width = struct.unpack(">HH", data[pos + 5:pos + 9])
            if height == 0:  # height set later by a DNL marker: too unusual to trust
                raise ImageRejected(DropReason.UNSUPPORTED_FORMAT, "JPEG with deferred height")
            return width, height
        if length < 2:
            break
        pos += 2 + length
    raise ImageRejected(DropReason.UNDECODABLE, "JPEG without a frame header")


def check_pixels(width: int, height: int, max_pixels: int) -> None:
    """Raise ImageRejected if the image is empty or has more than `max_pixels` pixels."""
    if width <= 0 or height <= 0:
        raise ImageRejected(DropReason.EMPTY, f"{width}x{height} image has no pixels")
    if width * height > max_pixels:
        raise ImageRejected(
            DropReason.TOO_LARGE,
            f"{width}x{height} = {width * height} pixels > privacy.max_pixels = {max_pixels}")


def decode(data: bytes, max_pixels: int) -> np.ndarray:
    """Decode PNG/JPEG bytes to uint8 grayscale (H, W) or BGR (H, W, 3) after the size check.

    EXIF orientation is applied, alpha is dropped, 16-bit samples are scaled to 8-bit; the
    re-encoded output therefore carries no metadata (no EXIF, no GPS).

    Raises:
        ImageRejected: see `declared_size` and `check_pixels`; also bytes the decoder refuses
            and pixels whose size disagrees with the header.
    """
    width, height = declared_size(data)
    check_pixels(width, height, max_pixels)
    img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_ANYCOLOR)
    if img is None:
        raise ImageRejected(DropReason.UNDECODABLE, "the decoder refused the bytes")
    # EXIF orientation may swap the sides; anything else means the header lied.
    if sorted(img.shape[:2]) != sorted((height, width)):
        raise ImageRejected(
            DropReason.UNDECODABLE,
            f"header says {width}x{height}, pixels are {img.shape[1]}x{img.shape[0]}")
    return normalise(img, max_pixels)


def normalise(img: np.ndarray, max_pixels: int) -> np.ndarray:
    """Return a contiguous uint8 copy as grayscale (H, W) or BGR (H, W, 3).

    Raises:
        ImageRejected: not a uint8 array of 1, 3 or 4 channels, empty, or too large.
    """
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8:
        kind = f"{type(img).__name__} of {getattr(img, 'dtype', '?')}"
        raise ImageRejected(DropReason.UNSUPPORTED_FORMAT, f"expected a uint8 array, got {kind}")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] not in (3, 4)):
        raise ImageRejected(DropReason.UNSUPPORTED_FORMAT,
                            f"expected (H, W), (H, W, 3) or (H, W, 4), got {img.shape}")
    check_pixels(img.shape[1], img.shape[0], max_pixels)
    if img.ndim == 3 and img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    return np.array(img, dtype=np.uint8, order="C", copy=True)


def encode_png(img: np.ndarray) -> bytes:
    """Encode pixels as PNG.

    Raises:
        ImageRejected: the encoder failed.
    """
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise ImageRejected(DropReason.ENCODE_FAILED, "PNG encoder failed")
    return buf.tobytes()
