"""The privacy filter: the only gate between a robot's images and the network.

Rule: fail closed. `filter_image` and `filter_array` never raise; whatever goes wrong (bad bytes,
a huge image, a detector or encoder error) the image comes back as a `DroppedImage` with a reason,
is counted and logged, and nothing of it can be sent.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from peerdata.config import NodeConfig, PrivacyConfig
from peerdata.errors import PrivacyError
from peerdata.ml.privacy.detectors import (
    Frame,
    RegionDetector,
    haar_frontal_faces,
    haar_plates,
    haar_profile_faces,
    load_yunet,
)
from peerdata.ml.privacy.dnn import CenterFaceDetector, TextPlateDetector
from peerdata.ml.privacy.imageformat import ImageRejected, decode, encode_png, normalise
from peerdata.ml.privacy.redact import merge_boxes, redact
from peerdata.ml.privacy.results import (
    _FILTER_TOKEN,
    Action,
    Box,
    DroppedImage,
    DropReason,
    FilteredImage,
    PrivacyStats,
    Region,
    RegionKind,
)

log = logging.getLogger(__name__)

# Chosen on the street photos (docs/privacy.md): CenterFace alone reaches the recall targets
# with no blur on face-free photos; YuNet and Haar miss more small faces and fire on dog faces
# and textures. A configured YuNet file is added to, never substituted for, CenterFace.
DEFAULT_FACES = ("centerface",)
DEFAULT_PLATES = ("text_plate",)


def resolve_face_detectors(cfg: PrivacyConfig) -> tuple[str, ...]:
    """The face detectors a config asks for, with `()` meaning the measured default."""
    if cfg.face_detectors:
        return cfg.face_detectors
    return DEFAULT_FACES + (("yunet",) if cfg.yunet_model is not None else ())


def resolve_plate_detectors(cfg: PrivacyConfig) -> tuple[str, ...]:
    """The plate detectors a config asks for, with `()` meaning the measured default."""
    return cfg.plate_detectors or DEFAULT_PLATES


class PrivacyFilter:
    """Finds faces and licence plates and blurs, drops or keeps them, one policy per kind.

    Thread-safe: the node may call it from worker threads; detection runs one image at a time
    because OpenCV detectors carry per-call state.
    """

    def __init__(self, detectors: Sequence[RegionDetector], actions: dict[RegionKind, Action],
                 *, margin: float = 0.25, max_pixels: int = 40_000_000) -> None:
        """Build from detectors and one action per region kind (every kind must have one).

        Raises:
            PrivacyError: no detectors, or a detector whose kind has no action.
        """
        if not detectors:
            raise PrivacyError("a privacy filter needs at least one detector")
        missing = {d.kind for d in detectors} - set(actions)
        if missing:
            raise PrivacyError(f"no action configured for {sorted(map(str, missing))}")
        self.detectors = tuple(detectors)
        self.actions = dict(actions)
        self.margin = margin
        self.max_pixels = max_pixels
        self._detect_lock = threading.Lock()
        self._stats_lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._drops: Counter[str] = Counter()

    @classmethod
    def from_config(cls, cfg: PrivacyConfig, models_dir: Path | None = None) -> PrivacyFilter:
        """Build the filter a node's `[privacy]` section describes.

        A relative `yunet_model` is looked up in `models_dir` (if given).

        Raises:
            ConfigError: an invalid setting.
            PrivacyError: a model file or its package is missing, unreadable, does not match
                its sha256 or does not load.
        """
        NodeConfig(privacy=cfg)  # validates every privacy setting once more
        detectors: list[RegionDetector] = []
        for name in resolve_face_detectors(cfg):
            if name == "centerface":
                detectors.append(CenterFaceDetector(score=cfg.centerface_score,
                                                    min_px=cfg.min_face_px))
            elif name == "haar_frontal":
                detectors.append(haar_frontal_faces(cfg.min_face_px))
            elif name == "haar_profile":
                detectors.append(haar_profile_faces(cfg.min_face_px))
            elif name == "yunet":
                assert cfg.yunet_model is not None  # config validation guarantees it
                path = Path(cfg.yunet_model).expanduser()
                if not path.is_absolute() and models_dir is not None:
                    path = models_dir / path
                detectors.append(load_yunet(path, cfg.yunet_sha256, cfg.yunet_score,
                                            cfg.min_face_px))
        for name in resolve_plate_detectors(cfg):
            detectors.append(TextPlateDetector() if name == "text_plate" else haar_plates())
        actions = {RegionKind.FACE: Action(cfg.face_action),
                   RegionKind.PLATE: Action(cfg.plate_action)}
        return cls(detectors, actions, margin=cfg.margin, max_pixels=cfg.max_pixels)

    def filter_image(self, data: bytes) -> FilteredImage | DroppedImage:
        """Filter encoded PNG/JPEG bytes; never raises."""
        if not isinstance(data, bytes | bytearray | memoryview):  # bytes(huge int) would allocate
            return self._dropped(DropReason.UNSUPPORTED_FORMAT,
                                 f"expected encoded image bytes, got {type(data).__name__}")
        try:
            img = decode(bytes(data), self.max_pixels)
        except ImageRejected as exc:
            return self._dropped(exc.reason, exc.detail)
        except Exception as exc:  # fail closed on anything unforeseen
            return self._dropped(DropReason.UNDECODABLE, f"{type(exc).__name__}: {exc}")
        return self._filter_pixels(img)

    def filter_array(self, img: np.ndarray) -> FilteredImage | DroppedImage:
        """Filter an in-memory uint8 frame, grayscale (H, W) or BGR (H, W, 3|4); never raises."""
        try:
            pixels = normalise(img, self.max_pixels)
        except ImageRejected as exc:
            return self._dropped(exc.reason, exc.detail)
        except Exception as exc:
            return self._dropped(DropReason.UNSUPPORTED_FORMAT, f"{type(exc).__name__}: {exc}")
        return self._filter_pixels(pixels)

    def detect(self, img: np.ndarray) -> list[Region]:
        """Find regions in grayscale or BGR uint8 pixels, with the action each would get.

        Raises:
            Exception: whatever a detector raises (the filter turns that into a drop).
        """
        height, width = img.shape[:2]
        fitting = [d for d in self.detectors if self._fits(d, width, height)]
        if not fitting:
            return []
        frame = Frame.from_pixels(img)
        by_kind: dict[RegionKind, list[tuple[Box, str]]] = {}
        with self._detect_lock:
            for detector in fitting:
                for box in detector.detect(frame):
                    by_kind.setdefault(detector.kind, []).append((box, detector.name))
        regions = []
        for kind, found in by_kind.items():
            action = self.actions[kind]
            for box, names in merge_boxes(found):
                covered = box.enlarged(self.margin, width, height) if action is Action.BLUR else box
                regions.append(Region(kind, box, covered, names, action))
        return regions

    def detector_versions(self) -> dict[str, str]:
        """Detector name -> model file or cascade (package pin and sha256 prefix)."""
        return {d.name: d.version for d in self.detectors}

    @staticmethod
    def redaction_counts(regions: Sequence[Region]) -> dict[str, int]:
        """Regions by kind, e.g. {"face": 2, "plate": 0}, for logs and `privacy check`."""
        counts = dict.fromkeys(map(str, RegionKind), 0)
        for r in regions:
            counts[str(r.kind)] += 1
        return counts

    def too_small_to_scan(self, width: int, height: int) -> bool:
        """True when no detector could find anything in a width x height image (the fast path)."""
        return not any(self._fits(d, width, height) for d in self.detectors)

    @staticmethod
    def _fits(detector: RegionDetector, width: int, height: int) -> bool:
        return width >= detector.min_size[0] and height >= detector.min_size[1]

    def statistics(self) -> PrivacyStats:
        """Counters since construction, as a frozen record."""
        with self._stats_lock:
            c = self._counts
            return PrivacyStats(
                images_seen=c["seen"], images_filtered=c["filtered"],
                images_dropped=c["dropped"], images_too_small_to_scan=c["small"],
                regions_found=c["found"], regions_blurred=c["blurred"], regions_kept=c["kept"],
                dropped_by_reason=tuple(sorted(self._drops.items())))

    def _filter_pixels(self, img: np.ndarray) -> FilteredImage | DroppedImage:
        height, width = img.shape[:2]
        small = self.too_small_to_scan(width, height)
        try:
            regions = tuple(self.detect(img))
        except Exception as exc:
            return self._dropped(DropReason.DETECTION_FAILED, f"{type(exc).__name__}: {exc}")
        drops = [r for r in regions if r.action is Action.DROP]
        if drops:
            kinds = ", ".join(sorted({f"{r.kind} ({'+'.join(r.detectors)})" for r in drops}))
            return self._dropped(DropReason.POLICY, f"found {kinds}; policy is drop", regions)
        try:
            for region in regions:
                if region.action is Action.BLUR:
                    redact(img, region.covered)
        except Exception as exc:
            return self._dropped(DropReason.REDACTION_FAILED, f"{type(exc).__name__}: {exc}",
                                 regions)
        try:
            png = encode_png(img)
        except ImageRejected as exc:
            return self._dropped(exc.reason, exc.detail, regions)
        except Exception as exc:
            return self._dropped(DropReason.ENCODE_FAILED, f"{type(exc).__name__}: {exc}", regions)
        with self._stats_lock:
            self._counts.update(
                seen=1, filtered=1, small=int(small), found=len(regions),
                blurred=sum(r.action is Action.BLUR for r in regions),
                kept=sum(r.action is Action.KEEP for r in regions))
        self._log_redacted(width, height, regions)
        return FilteredImage._create(_FILTER_TOKEN, png, regions, width, height)

    def _log_redacted(self, width: int, height: int, regions: tuple[Region, ...]) -> None:
        if not log.isEnabledFor(logging.INFO):
            return
        counts = self.redaction_counts(regions)
        actions = ", ".join(f"{kind} {self.actions[RegionKind(kind)]}: {n}"
                            for kind, n in counts.items() if RegionKind(kind) in self.actions)
        versions = "; ".join(f"{n}={v}" for n, v in self.detector_versions().items())
        log.info("privacy filter shared a %dx%d image: %s (detectors: %s)", width, height,
                 actions, versions)

    def _dropped(self, reason: DropReason, detail: str,
                 regions: tuple[Region, ...] = ()) -> DroppedImage:
        with self._stats_lock:
            self._counts.update(seen=1, dropped=1, found=len(regions))
            self._drops[str(reason)] += 1
        log.warning("privacy filter dropped an image: %s: %s", reason, detail)
        return DroppedImage(reason, detail, regions)
