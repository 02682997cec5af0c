"""Turning new local images into observations: npz feeds, image files, the HOME/inbox/ folder.

Rule: pure functions over bytes, arrays and one folder; every failure is a DataError naming the
file. A stored image is its PNG/JPEG bytes (content ID = their SHA-256); the learner sees it as
the pixels its model's `ImageSpec` asks for (28x28 gray for small-cnn, RGB for a pretrained
backbone), decoded by the one pipeline (`peerdata.ml.frames`) the same way on every robot.
Arrays handed in are RGB (or gray), as datasets hold them.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from peerdata.errors import DataError
from peerdata.ml.frames import GRAY_28, ImageSpec, decode_frame, fit_image, to_bgr
from peerdata.ml.privacy.imageformat import encode_png

INBOX = "inbox"
DONE = "done"
REJECTED = "rejected"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
MAX_SIDECAR_BYTES = 4096


@dataclass(frozen=True)
class Incoming:
    """An image to observe: its encoded bytes, pixels for the learner, label and domain."""

    data: bytes
    image: np.ndarray  # uint8, the learner's ImageSpec
    label: int | None
    domain: str | None


def to_pixels(data: bytes, spec: ImageSpec = GRAY_28) -> np.ndarray:
    """Decode PNG/JPEG bytes to the learner's pixels (header size checked before decoding).

    Raises:
        DataError: not a decodable PNG/JPEG image.
    """
    return decode_frame(data, spec)


def from_array(image: np.ndarray, label: int | None, domain: str | None,
               spec: ImageSpec = GRAY_28) -> Incoming:
    """An observation from pixels (gray or RGB uint8); stored as PNG."""
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (
            image.ndim == 3 and image.shape[2] != 3):
        raise DataError(f"an image is a uint8 HxW or HxWx3 array, got {image.dtype} {image.shape}")
    data = encode_png(to_bgr(image))
    return Incoming(data, fit_image(image, spec), label, domain)


def from_bytes(data: bytes, label: int | None, domain: str | None,
               spec: ImageSpec = GRAY_28) -> Incoming:
    """An observation from PNG/JPEG bytes, stored as they are."""
    return Incoming(bytes(data), to_pixels(data, spec), label, domain)


def load_npz(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """`x` (uint8 N x H x W gray or N x H x W x 3 RGB), `y` (labels) and optional `domain` of a
    scenario feed.

    Raises:
        DataError: missing, unreadable, or not in that shape.
    """
    try:
        with np.load(path, allow_pickle=False) as z:
            x, y = z["x"], z["y"]
            domains = z["domain"].astype(str) if "domain" in z.files else None
    except (OSError, KeyError, ValueError) as exc:
        raise DataError(f"{path}: not a scenario feed npz (x, y, domain): {exc}") from None
    if x.dtype != np.uint8 or not (x.ndim == 3 or (x.ndim == 4 and x.shape[3] == 3)):
        raise DataError(f"{path}: x must be uint8 N x H x W or N x H x W x 3, got "
                        f"{x.dtype} {x.shape}")
    if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{path}: y must hold one integer label per image")
    if domains is not None and domains.shape != (len(x),):
        raise DataError(f"{path}: domain must hold one string per image")
    return x, y.astype(np.int64), domains


def npz_incoming(path: Path, spec: ImageSpec = GRAY_28) -> list[Incoming]:
    """Every image of a scenario feed as an observation (PNG-encoded)."""
    x, y, domains = load_npz(path)
    return [from_array(x[i], int(y[i]), None if domains is None else str(domains[i]), spec)
            for i in range(len(x))]


def read_sidecar(path: Path) -> tuple[int | None, str | None]:
    """(label, domain) from `name.json` beside an image; (None, None) if there is none."""
    side = path.with_suffix(".json")
    if not side.exists():
        return None, None
    try:
        raw = json.loads(side.read_bytes()[:MAX_SIDECAR_BYTES])
    except (OSError, ValueError) as exc:
        raise DataError(f"{side}: unreadable label sidecar: {exc}") from None
    label, domain = (raw.get("label"), raw.get("domain")) if isinstance(raw, dict) else (0, 0)
    if label is not None and (isinstance(label, bool) or not isinstance(label, int)
                              or not 0 <= label < 2**31):
        raise DataError(f"{side}: label must be an int >= 0")
    if domain is not None and not isinstance(domain, str):
        raise DataError(f"{side}: domain must be a string")
    return label, domain


def scan_inbox(folder: Path, max_bytes: int, spec: ImageSpec = GRAY_28
               ) -> list[tuple[Path, Incoming | DataError]]:
    """The images waiting in `folder` (sorted by name), each read or with the reason it can't be.

    A camera's JPEGs need no sidecar: without one an image is observed unlabelled."""
    if not folder.is_dir():
        return []
    out: list[tuple[Path, Incoming | DataError]] = []
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        try:
            if path.stat().st_size > max_bytes:
                raise DataError(f"{path}: larger than limits.max_image_bytes={max_bytes}")
            label, domain = read_sidecar(path)
            out.append((path, from_bytes(path.read_bytes(), label, domain, spec)))
        except DataError as exc:
            out.append((path, DataError(f"{path.name}: {exc}")))
        except OSError as exc:
            out.append((path, DataError(f"{path.name}: {exc.strerror}")))
    return out


def file_away(path: Path, folder: str) -> None:
    """Move an inbox image (and its sidecar) into `inbox/<folder>/` once handled."""
    dest = path.parent / folder
    dest.mkdir(exist_ok=True)
    for p in (path, path.with_suffix(".json")):
        with contextlib.suppress(FileNotFoundError):
            p.replace(dest / p.name)
