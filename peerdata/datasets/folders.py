"""Image-folder datasets: `<data_dir>/<name>/<class>/*.jpg|png`, e.g. `pacs/photo`.

Rule: a folder is a dataset when its subfolders (the classes, in sorted order = labels 0..)
hold image files; nothing else is needed, no code change for a new one. Every image goes
through the one pipeline (`peerdata.ml.frames.decode_frame`, header checked first) and is kept
as RGB at the size of the folder's first image, so a folder of mixed sizes still stacks.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from peerdata.datasets.images import LabelledImages, checked
from peerdata.errors import DataError
from peerdata.ml.frames import decode_native

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
MAX_CLASSES = 10  # labels of a dataset lie in 0..9 (the scenarios' unified label space)
MAX_FILE_BYTES = 16 * 1024 * 1024


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def image_classes(folder: Path) -> list[str] | None:
    """Sorted class subfolders of `folder` that hold images, or None if it is no dataset."""
    if not folder.is_dir():
        return None
    classes = sorted(d.name for d in folder.iterdir() if d.is_dir() and _images_in(d))
    return classes or None


def read_image_folder(folder: Path) -> LabelledImages:
    """Every image under `folder/<class>/`, labelled by its class's sorted position.

    Raises:
        DataError: no classes, more than 10 of them, or an unreadable image (named).
    """
    classes = image_classes(folder)
    if classes is None:
        raise DataError(f"{folder}: no <class>/ subfolders with .jpg/.png images")
    if len(classes) > MAX_CLASSES:
        raise DataError(f"{folder}: {len(classes)} classes; at most {MAX_CLASSES} are supported")
    images: list[np.ndarray] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        for path in _images_in(folder / name):
            try:
                if path.stat().st_size > MAX_FILE_BYTES:
                    raise DataError(f"larger than {MAX_FILE_BYTES} bytes")
                img = decode_native(path.read_bytes())
            except DataError as exc:
                raise DataError(f"{path}: {exc}") from None
            if images and img.shape != images[0].shape:
                h, w = images[0].shape[:2]
                img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
            images.append(img)
            labels.append(label)
    return checked(np.stack(images), np.array(labels, np.int64), str(folder))
