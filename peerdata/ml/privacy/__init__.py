"""The privacy filter: find faces and licence plates, blur or drop them, fail closed.

Rule: nothing leaves the robot unless it is a `FilteredImage`, and only `PrivacyFilter` makes one.
Model files (CenterFace and the PP-OCR text detector from pinned wheels, sha256-checked; the Haar
cascades in the opencv wheel; an optional YuNet file) are read once when the filter is built; a
departure from the ml/ "no files" rule that keeps the per-image path pure.
"""

from peerdata.ml.privacy.detectors import YUNET_2023MAR_SHA256, YUNET_FILE_NAME, RegionDetector
from peerdata.ml.privacy.filter import (
    PrivacyFilter,
    resolve_face_detectors,
    resolve_plate_detectors,
)
from peerdata.ml.privacy.results import (
    Action,
    Box,
    DroppedImage,
    DropReason,
    FilteredImage,
    PrivacyStats,
    Region,
    RegionKind,
    require_filtered,
)

__all__ = [
    "YUNET_2023MAR_SHA256",
    "YUNET_FILE_NAME",
    "Action",
    "Box",
    "DropReason",
    "DroppedImage",
    "FilteredImage",
    "PrivacyFilter",
    "PrivacyStats",
    "Region",
    "RegionDetector",
    "RegionKind",
    "require_filtered",
    "resolve_face_detectors",
    "resolve_plate_detectors",
]
