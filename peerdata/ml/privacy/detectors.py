"""Region detectors for the privacy filter: OpenCV Haar cascades and YuNet (the default DNN
detectors are in dnn.py), all offline.

Rule: a detector is built once (model files are read and verified here, never per image) and
its `detect` is pure: pixels in, boxes out. A model that fails verification raises PrivacyError
at construction; nothing falls back silently to a weaker detector.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from peerdata.errors import PrivacyError
from peerdata.ml.privacy.models import read_verified
from peerdata.ml.privacy.results import Box, RegionKind

# sha256 of the official opencv_zoo face_detection_yunet_2023mar.onnx (232,589 bytes).
YUNET_2023MAR_SHA256 = "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4"
YUNET_FILE_NAME = "face_detection_yunet_2023mar.onnx"

# Haar parameters chosen on the benchmark photos (docs/privacy.md): a finer scale step and a
# low neighbour count trade false positives for recall, which is the right way round here.
HAAR_SCALE_FACTOR = 1.1
HAAR_MIN_NEIGHBORS = 3


@dataclass(frozen=True, eq=False)
class Frame:
    """One image prepared once for every detector; the grey version only when one asks."""

    bgr: np.ndarray  # uint8 (H, W, 3)

    @classmethod
    def from_pixels(cls, img: np.ndarray) -> Frame:
        """Build from grayscale (H, W) or BGR (H, W, 3) uint8 pixels."""
        return cls(bgr=cv2.cvtColor(img, cv2.COLOR_GRAY2BGR) if img.ndim == 2 else img)

    @cached_property
    def gray(self) -> np.ndarray:
        """uint8 (H, W), histogram-equalised, for the Haar cascades (the DNNs never need it)."""
        return cv2.equalizeHist(cv2.cvtColor(self.bgr, cv2.COLOR_BGR2GRAY))

    @property
    def width(self) -> int:
        return int(self.bgr.shape[1])

    @property
    def height(self) -> int:
        return int(self.bgr.shape[0])


class RegionDetector(Protocol):
    """Anything that finds regions of one kind; `min_size` is the smallest (w, h) it can find."""

    @property
    def name(self) -> str: ...

    @property
    def kind(self) -> RegionKind: ...

    @property
    def min_size(self) -> tuple[int, int]: ...

    @property
    def version(self) -> str:
        """Which model file or cascade, for the per-image log and `peerdata privacy check`."""
        ...

    def detect(self, frame: Frame) -> list[Box]: ...


def boxes_in_image(raw: object, width: int, height: int, mirrored: bool = False) -> list[Box]:
    out = []
    for x, y, w, h in np.asarray(raw, dtype=np.float64).reshape(-1, 4):
        box = Box(int(x), int(y), int(np.ceil(w)), int(np.ceil(h)))
        if mirrored:
            box = Box(width - box.x - box.w, box.y, box.w, box.h)
        clipped = box.enlarged(0.0, width, height)
        if clipped.area > 0:
            out.append(clipped)
    return out


class HaarCascadeDetector:
    """One Haar cascade from the opencv wheel; `mirrored` also scans the flipped image.

    The profile cascade only knows faces turned one way, so it is run on the mirror image too.
    """

    def __init__(self, name: str, kind: RegionKind, cascade_file: str, min_px: int,
                 mirrored: bool = False) -> None:
        path = Path(cv2.data.haarcascades) / cascade_file  # type: ignore[attr-defined]
        cascade = cv2.CascadeClassifier(str(path))
        if cascade.empty():
            raise PrivacyError(f"cannot load Haar cascade {path} (is opencv-python 4.x installed?)")
        win_w, win_h = cascade.getOriginalWindowSize()
        scale = max(1.0, min_px / min(win_w, win_h))
        self.name = name
        self.kind = kind
        self.version = f"opencv-{cv2.__version__} {cascade_file}"
        self.min_size = (int(np.ceil(win_w * scale)), int(np.ceil(win_h * scale)))
        self._cascade = cascade
        self._mirrored = mirrored

    def detect(self, frame: Frame) -> list[Box]:
        found = self._scan(frame.gray)
        boxes = boxes_in_image(found, frame.width, frame.height)
        if self._mirrored:
            flipped = self._scan(cv2.flip(frame.gray, 1))
            boxes += boxes_in_image(flipped, frame.width, frame.height, mirrored=True)
        return boxes

    def _scan(self, gray: np.ndarray) -> object:
        return self._cascade.detectMultiScale(
            gray, scaleFactor=HAAR_SCALE_FACTOR, minNeighbors=HAAR_MIN_NEIGHBORS,
            minSize=self.min_size)


def haar_frontal_faces(min_px: int) -> HaarCascadeDetector:
    return HaarCascadeDetector("haar_frontal", RegionKind.FACE,
                               "haarcascade_frontalface_default.xml", min_px)


def haar_profile_faces(min_px: int) -> HaarCascadeDetector:
    return HaarCascadeDetector("haar_profile", RegionKind.FACE, "haarcascade_profileface.xml",
                               min_px, mirrored=True)


def haar_plates() -> HaarCascadeDetector:
    return HaarCascadeDetector("haar_plate", RegionKind.PLATE,
                               "haarcascade_russian_plate_number.xml", 0)


class YuNetFaceDetector:
    """OpenCV's YuNet CNN face detector, loaded from bytes that were hashed first."""

    kind = RegionKind.FACE

    def __init__(self, model: bytes, sha256: str, score_threshold: float,
                 min_px: int) -> None:
        try:
            self._net = cv2.FaceDetectorYN.create(
                "onnx", np.frombuffer(model, dtype=np.uint8), np.empty(0, dtype=np.uint8),
                (320, 320), score_threshold, 0.3, 5000)
        except cv2.error as exc:
            raise PrivacyError(f"OpenCV cannot load the YuNet model: {exc}") from None
        self.name = "yunet"
        self.version = f"{YUNET_FILE_NAME} sha256:{sha256[:12]}"
        self.min_size = (min_px, min_px)
        self._lock = threading.Lock()  # setInputSize + detect is one stateful step

    def detect(self, frame: Frame) -> list[Box]:
        with self._lock:
            self._net.setInputSize((frame.width, frame.height))
            _, faces = self._net.detect(frame.bgr)
        if faces is None:
            return []
        return boxes_in_image(faces[:, :4], frame.width, frame.height)


def load_yunet(path: Path, expected_sha256: str | None, score_threshold: float,
               min_px: int) -> YuNetFaceDetector:
    """Read, verify and load a YuNet ONNX file; the hashed bytes are the bytes loaded.

    Args:
        expected_sha256: hex digest to require; None means the official 2023mar file.

    Raises:
        PrivacyError: the file is missing or unreadable, its hash differs, or OpenCV rejects it.
    """
    expected = (expected_sha256 or YUNET_2023MAR_SHA256).strip().lower()
    if not path.exists():
        raise PrivacyError(
            f"privacy.yunet_model {path}: no such file (get {YUNET_FILE_NAME} from the OpenCV "
            "model zoo, or remove the setting to use the default detectors)")
    model = read_verified(path, expected, "privacy.yunet_model")
    return YuNetFaceDetector(model, expected, score_threshold, min_px)
