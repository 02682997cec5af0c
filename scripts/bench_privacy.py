#!/usr/bin/env python
"""Benchmark the privacy filter on the annotated photos in $PEERDATA_DATA_DIR/faces/.

Reports, per detector and per combination: face recall (an annotated face counts as found when
>= 90% of its box lies under redacted pixels), over-blur (fraction of pixels outside every face
zone that got redacted), false-positive boxes, and frames per second at 640x480 on one core.
Writes a before/after contact sheet. The last stdout line is one JSON object.

Usage:
    python scripts/bench_privacy.py [--data-dir DIR] [--models-dir DIR] [--out DIR]

Every detector runs once per photo; each configuration then replays those boxes through the real
`PrivacyFilter` (merge, margin, redaction), so the rows differ only in which detectors they use.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from peerdata.config import PrivacyConfig
from peerdata.ml.privacy import (
    YUNET_FILE_NAME,
    Action,
    Box,
    FilteredImage,
    PrivacyFilter,
    RegionKind,
)
from peerdata.ml.privacy.detectors import (
    Frame,
    RegionDetector,
    haar_frontal_faces,
    haar_plates,
    haar_profile_faces,
    load_yunet,
)

COVERED_ENOUGH = 0.9  # a face counts as found when this fraction of its box is redacted
FACE_ZONE_MARGIN = 0.25  # pixels this close to an annotated face are not "non-face" pixels
FRAME_SIZE = (640, 480)


@dataclass(frozen=True)
class Photo:
    name: str
    pixels: np.ndarray
    faces: tuple[Box, ...]
    ignore: tuple[Box, ...]
    independent: bool  # boxes from the PASCAL VOC/dlib annotation, not from YuNet


@dataclass(frozen=True)
class Replay:
    """A detector that returns boxes recorded earlier for the photo being filtered."""

    name: str
    kind: RegionKind
    min_size: tuple[int, int]
    boxes: dict[int, list[Box]]  # keyed by photo index
    current: list[int]  # the index of the photo being filtered, set by the caller

    def detect(self, frame: Frame) -> list[Box]:
        return self.boxes[self.current[0]]


def load_photos(faces_dir: Path) -> list[Photo]:
    meta = json.loads((faces_dir / "faces.json").read_text())["images"]
    photos = []
    for name, entry in sorted(meta.items()):
        pixels = cv2.imread(str(faces_dir / name), cv2.IMREAD_COLOR)
        if pixels is None:
            sys.exit(f"cannot read {faces_dir / name}")
        photos.append(Photo(
            name, pixels, tuple(Box(*b) for b in entry["faces"]),
            tuple(Box(*b) for b in entry["ignore"]), "dlib" in entry["box_source"]))
    return photos


def build_detectors(cfg: PrivacyConfig, models_dir: Path | None) -> dict[str, RegionDetector]:
    detectors: dict[str, RegionDetector] = {
        "haar_frontal": haar_frontal_faces(cfg.min_face_px),
        "haar_profile": haar_profile_faces(cfg.min_face_px),
        "haar_plate": haar_plates(),
    }
    model = models_dir / YUNET_FILE_NAME if models_dir else None
    if model is not None and model.exists():
        detectors["yunet"] = load_yunet(model, None, cfg.yunet_score, cfg.min_face_px)
    return detectors


def score(photos: list[Photo], outputs: list[FilteredImage]) -> dict[str, float]:
    """Recall per subset, over-blur and false-positive boxes for one configuration."""
    found = {True: [0, 0], False: [0, 0]}
    outside = blurred_outside = 0
    fp_no_face = fp_face_imgs = plates = 0
    no_face_images = 0
    for photo, out in zip(photos, outputs, strict=True):
        h, w = photo.pixels.shape[:2]
        mask = np.zeros((h, w), dtype=bool)
        for r in out.regions:
            c = r.covered
            if r.action is Action.BLUR:
                mask[c.y:c.y + c.h, c.x:c.x + c.w] = True
        for face in photo.faces:
            covered = mask[face.y:face.y + face.h, face.x:face.x + face.w].mean()
            found[photo.independent][0] += bool(covered >= COVERED_ENOUGH)
            found[photo.independent][1] += 1
        zone = np.zeros((h, w), dtype=bool)
        zones = [b.enlarged(FACE_ZONE_MARGIN, w, h) for b in photo.faces + photo.ignore]
        for z in zones:
            zone[z.y:z.y + z.h, z.x:z.x + z.w] = True
        outside += int((~zone).sum())
        blurred_outside += int((mask & ~zone).sum())
        face_regions = [r for r in out.regions if r.kind is RegionKind.FACE]
        plates += len(out.regions) - len(face_regions)
        if not photo.faces:
            no_face_images += 1
            fp_no_face += len(face_regions)
        else:
            fp_face_imgs += sum(all(r.box.intersection(z) == 0 for z in zones)
                                for r in face_regions)
    hits = found[True][0] + found[False][0]
    total = found[True][1] + found[False][1]
    return {
        "face_recall": hits / total,
        "recall_voc": found[True][0] / max(found[True][1], 1),
        "recall_yunet_boxes": found[False][0] / max(found[False][1], 1),
        "faces_found": hits, "faces_total": total,
        "voc_found": found[True][0], "voc_total": found[True][1],
        "overblur_fraction": blurred_outside / max(outside, 1),
        "fp_boxes_per_no_face_image": fp_no_face / max(no_face_images, 1),
        "fp_boxes_on_face_images": fp_face_imgs,
        "plate_boxes": plates,
    }


def frames_640x480(photos: list[Photo]) -> list[np.ndarray]:
    """Centre-crop each photo to 4:3 and resize it to 640x480, like a camera frame."""
    frames = []
    for p in photos:
        h, w = p.pixels.shape[:2]
        cw, ch = min(w, h * 4 // 3), min(h, w * 3 // 4)
        x0, y0 = (w - cw) // 2, (h - ch) // 2
        crop = p.pixels[y0:y0 + ch, x0:x0 + cw]
        frames.append(cv2.resize(crop, FRAME_SIZE, interpolation=cv2.INTER_AREA))
    return frames


def fps(fn: Callable[[Any], object], frames: Sequence[object]) -> float:
    start = time.perf_counter()
    for f in frames:
        fn(f)
    return len(frames) / (time.perf_counter() - start)


def contact_sheet(photos: list[Photo], columns: list[tuple[str, list[FilteredImage]]],
                  path: Path, thumb_h: int = 180) -> None:
    """Rows of: original with annotations (green, ignored yellow), then each configuration's
    output with its redacted boxes (red) and plate boxes (blue)."""
    rows = []
    for i, photo in enumerate(photos):
        scale = thumb_h / photo.pixels.shape[0]
        tiles = []
        before = photo.pixels.copy()
        for b, colour in [(b, (0, 200, 0)) for b in photo.faces] + [
                (b, (0, 220, 220)) for b in photo.ignore]:
            cv2.rectangle(before, (b.x, b.y), (b.x + b.w, b.y + b.h), colour, 3)
        tiles.append(("original: " + photo.name, before))
        for title, outputs in columns:
            out = cv2.imdecode(np.frombuffer(outputs[i].png, np.uint8), cv2.IMREAD_COLOR)
            assert out is not None
            for r in outputs[i].regions:
                colour = (0, 0, 255) if r.kind is RegionKind.FACE else (255, 0, 0)
                c = r.covered
                cv2.rectangle(out, (c.x, c.y), (c.x + c.w, c.y + c.h), colour, 2)
            tiles.append((title, out))
        row = []
        for title, img in tiles:
            t = cv2.resize(img, (max(1, int(img.shape[1] * scale)), thumb_h))
            t = cv2.copyMakeBorder(t, 22, 4, 4, 4, cv2.BORDER_CONSTANT, value=(255, 255, 255))
            cv2.putText(t, title[:40], (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)
            row.append(t)
        rows.append(np.hstack(row))
    width = max(r.shape[1] for r in rows)
    sheet = np.vstack([cv2.copyMakeBorder(r, 0, 0, 0, width - r.shape[1], cv2.BORDER_CONSTANT,
                                          value=(255, 255, 255)) for r in rows])
    cv2.imwrite(str(path), sheet)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=os.environ.get("PEERDATA_DATA_DIR"))
    parser.add_argument("--models-dir", type=Path, default=os.environ.get("PEERDATA_MODELS_DIR"))
    parser.add_argument("--out", type=Path, default=None, help="where the contact sheet goes")
    args = parser.parse_args()
    if args.data_dir is None or not (args.data_dir / "faces" / "faces.json").exists():
        sys.exit("no faces/faces.json: pass --data-dir or set PEERDATA_DATA_DIR")
    out_dir = args.out or Path(tempfile.mkdtemp(prefix="bench_privacy_"))
    out_dir.mkdir(parents=True, exist_ok=True)
    cv2.setNumThreads(1)

    cfg = PrivacyConfig()
    photos = load_photos(args.data_dir / "faces")
    detectors = build_detectors(cfg, args.models_dir)
    recorded: dict[str, dict[int, list[Box]]] = {name: {} for name in detectors}
    for i, photo in enumerate(photos):
        frame = Frame.from_pixels(photo.pixels)
        for name, det in detectors.items():
            recorded[name][i] = det.detect(frame)

    has_yunet = "yunet" in detectors
    configs: list[tuple[str, tuple[str, ...]]] = [
        ("haar_frontal", ("haar_frontal",)),
        ("haar_profile", ("haar_profile",)),
        ("default (haar_frontal+haar_profile)", ("haar_frontal", "haar_profile")),
    ]
    if has_yunet:
        configs += [("yunet (default with yunet_model)", ("yunet",)),
                    ("yunet+haar_frontal", ("yunet", "haar_frontal")),
                    ("yunet+haar_frontal+haar_profile", ("yunet", "haar_frontal", "haar_profile"))]
    results: dict[str, dict[str, float]] = {}
    outputs_by_config: dict[str, list[FilteredImage]] = {}
    for title, names in configs:
        current = [0]
        replays = [Replay(n, detectors[n].kind, detectors[n].min_size, recorded[n], current)
                   for n in (*names, "haar_plate")]
        filt = PrivacyFilter(replays, {RegionKind.FACE: Action.BLUR, RegionKind.PLATE: Action.BLUR},
                             margin=cfg.margin, max_pixels=cfg.max_pixels)
        outputs = []
        for i, photo in enumerate(photos):
            current[0] = i
            out = filt.filter_array(photo.pixels)
            assert isinstance(out, FilteredImage), out
            outputs.append(out)
        outputs_by_config[title] = outputs
        results[title] = score(photos, outputs)

    frames = frames_640x480(photos)
    speed: dict[str, float] = {}
    for name, det in detectors.items():
        prepared = [Frame.from_pixels(f) for f in frames]
        speed[f"detect only: {name}"] = fps(det.detect, prepared)
    speed["filter: default (haar)"] = fps(PrivacyFilter.from_config(cfg).filter_array, frames)
    if has_yunet:
        with_yunet = PrivacyConfig(yunet_model=YUNET_FILE_NAME)
        speed["filter: yunet configured"] = fps(
            PrivacyFilter.from_config(with_yunet, args.models_dir).filter_array, frames)

    print(f"{len(photos)} photos, {results[configs[0][0]]['faces_total']:.0f} faces "
          f"({results[configs[0][0]]['voc_total']:.0f} with independent VOC boxes); "
          f"margin {cfg.margin}, min_face_px {cfg.min_face_px}, plates always on")
    head = f"{'configuration':38s} {'recall':>7s} {'VOC':>7s} {'YuNet-box':>9s} " \
           f"{'over-blur':>9s} {'FP/no-face':>10s} {'FP on faces':>11s} {'plates':>6s}"
    print(head)
    print("-" * len(head))
    for title, r in results.items():
        print(f"{title:38s} {r['face_recall']:7.3f} {r['recall_voc']:7.3f} "
              f"{r['recall_yunet_boxes']:9.3f} {r['overblur_fraction']:9.4f} "
              f"{r['fp_boxes_per_no_face_image']:10.2f} {r['fp_boxes_on_face_images']:11.0f} "
              f"{r['plate_boxes']:6.0f}")
    print(f"\nframes per second at {FRAME_SIZE[0]}x{FRAME_SIZE[1]}, one core, "
          f"{len(frames)} frames:")
    for title, value in speed.items():
        print(f"  {title:34s} {value:8.1f}")

    sheet_cols = [("default (haar)", outputs_by_config[configs[2][0]])]
    if has_yunet:
        sheet_cols.append(("yunet configured", outputs_by_config[configs[3][0]]))
    sheet = out_dir / "contact_sheet.png"
    contact_sheet(photos, sheet_cols, sheet)
    print(f"\ncontact sheet: {sheet}")

    default = results[configs[2][0]]
    summary = {
        "face_recall": round(default["face_recall"], 4),
        "face_recall_voc": round(default["recall_voc"], 4),
        "fp_boxes_per_no_face_image": round(default["fp_boxes_per_no_face_image"], 3),
        "overblur_fraction": round(default["overblur_fraction"], 4),
        "fps_640x480": round(speed["filter: default (haar)"], 2),
        "contact_sheet": str(sheet),
    }
    if has_yunet:
        yn = results[configs[3][0]]
        summary |= {
            "yunet_face_recall": round(yn["face_recall"], 4),
            "yunet_face_recall_voc": round(yn["recall_voc"], 4),
            "yunet_fp_boxes_per_no_face_image": round(yn["fp_boxes_per_no_face_image"], 3),
            "yunet_overblur_fraction": round(yn["overblur_fraction"], 4),
            "yunet_fps_640x480": round(speed["filter: yunet configured"], 2),
        }
    print(json.dumps(summary, sort_keys=True))


if __name__ == "__main__":
    main()
