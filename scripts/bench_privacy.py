#!/usr/bin/env python
"""Benchmark the privacy filter on the annotated photos in $PEERDATA_DATA_DIR, one table per set.

Sets: faces/ (22 photos, 4 without a face), faces_street/ (214 indoor and street photos, 1,069
faces, many small), plates/ (112 car photos, Brazil, EU, US; also shrunk to fit 640x480, where
plates are small), and 2,000 MNIST test digits. The default CenterFace is the int8 file
scripts/setup builds; the float model is scored beside it.
A face or plate counts as found when >= 90% of its annotated box lies under redacted pixels.
Face sizes are the annotated box width. faces_street/ is also scored on its two halves (even
and odd positions in name order): nothing here was tuned on either, and both should agree.
Speed: frames per second at 640x480, one core (OpenCV and onnxruntime on one thread), wall
clock and process CPU time; the default filter and YuNet alone are timed frame by frame in
turn, so their ratio is measured in one run. The last stdout line is one JSON object.

Usage:
    python scripts/bench_privacy.py [--data-dir DIR] [--models-dir DIR]

Every detector runs once per photo; each configuration then replays those boxes through the real
`PrivacyFilter` (merge, margin, redaction), so the rows differ only in which detectors they use.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from peerdata.config import PrivacyConfig
from peerdata.ml.privacy import YUNET_FILE_NAME, Action, Box, FilteredImage, PrivacyFilter
from peerdata.ml.privacy import RegionKind as Kind
from peerdata.ml.privacy.detectors import (
    Frame,
    RegionDetector,
    haar_frontal_faces,
    haar_plates,
    haar_profile_faces,
    load_yunet,
)
from peerdata.ml.privacy.dnn import CenterFaceDetector, TextPlateDetector

COVERED_ENOUGH = 0.9  # a face or plate counts as found when this fraction of its box is redacted
FACE_ZONE_MARGIN = 0.25  # pixels this close to an annotated face are not "non-face" pixels
FRAME_SIZE = (640, 480)
DEFAULT = ("centerface", "text_plate")


@dataclass(frozen=True)
class Photo:
    name: str
    pixels: np.ndarray
    targets: tuple[Box, ...]  # faces or plates
    ignore: tuple[Box, ...]
    group: str  # faces/: "voc" (independent boxes) or "yunet"; plates/: the region


@dataclass(frozen=True)
class Replay:
    """A detector that returns boxes recorded earlier for the photo being filtered."""

    name: str
    kind: Kind
    min_size: tuple[int, int]
    version: str
    boxes: dict[int, list[Box]]  # keyed by photo index
    current: list[int]  # the index of the photo being filtered, set by the caller

    def detect(self, frame: Frame) -> list[Box]:
        return self.boxes[self.current[0]]


def load_set(folder: Path) -> list[Photo]:
    meta_file = folder / ("plates.json" if folder.name == "plates" else "faces.json")
    photos = []
    for name, e in sorted(json.loads(meta_file.read_text())["images"].items()):
        pixels = cv2.imread(str(folder / name), cv2.IMREAD_COLOR)
        if pixels is None:
            sys.exit(f"cannot read {folder / name}")
        group = e.get("region") or ("voc" if "dlib" in e.get("box_source", "") else "yunet")
        photos.append(Photo(name, pixels, tuple(Box(*b) for b in e.get("faces", e.get("plates"))),
                            tuple(Box(*b) for b in e.get("ignore", [])), group))
    return photos


def build_detectors(cfg: PrivacyConfig, models_dir: Path | None) -> dict[str, RegionDetector]:
    detectors: dict[str, RegionDetector] = {
        "centerface": CenterFaceDetector(score=cfg.centerface_score, min_px=cfg.min_face_px),
        "centerface_float": CenterFaceDetector(score=cfg.centerface_score,
                                               min_px=cfg.min_face_px, int8=False),
        "haar_frontal": haar_frontal_faces(cfg.min_face_px),
        "haar_profile": haar_profile_faces(cfg.min_face_px),
        "text_plate": TextPlateDetector(),
        "haar_plate": haar_plates(),
    }
    model = models_dir / YUNET_FILE_NAME if models_dir else None
    if model is not None and model.exists():
        detectors["yunet"] = load_yunet(model, None, cfg.yunet_score, cfg.min_face_px)
    return detectors


def replay(photos: list[Photo], recorded: dict[str, dict[int, list[Box]]],
           detectors: dict[str, RegionDetector], names: tuple[str, ...],
           margin: float) -> list[FilteredImage]:
    current = [0]
    replays = [Replay(n, detectors[n].kind, detectors[n].min_size, detectors[n].version,
                      recorded[n], current) for n in names]
    filt = PrivacyFilter(replays, {Kind.FACE: Action.BLUR, Kind.PLATE: Action.BLUR},
                         margin=margin)
    outputs = []
    for i, photo in enumerate(photos):
        current[0] = i
        out = filt.filter_array(photo.pixels)
        assert isinstance(out, FilteredImage), out
        outputs.append(out)
    return outputs


def _mask(out: FilteredImage) -> np.ndarray:
    mask = np.zeros((out.height, out.width), dtype=bool)
    for r in out.regions:
        if r.action is Action.BLUR:
            c = r.covered
            mask[c.y:c.y + c.h, c.x:c.x + c.w] = True
    return mask


def score(photos: list[Photo], outputs: list[FilteredImage]) -> dict[str, float]:
    """Recall by size bin and group, over-blur, blurred area on target-free photos."""
    hits: dict[str, list[int]] = {}
    outside = blurred_outside = fp_faces = 0
    no_target: list[float] = []
    for i, (photo, out) in enumerate(zip(photos, outputs, strict=True)):
        h, w = photo.pixels.shape[:2]
        mask = _mask(out)
        for b in photo.targets:
            found = bool(mask[b.y:b.y + b.h, b.x:b.x + b.w].mean() >= COVERED_ENOUGH)
            size = "ge24" if b.w >= 24 else "15_24" if b.w >= 15 else "lt15"
            for key in ("all", size, photo.group, f"{size}_half_{'ab'[i % 2]}"):
                hits.setdefault(key, [0, 0])
                hits[key][0] += found
                hits[key][1] += 1
        zone = np.zeros((h, w), dtype=bool)
        zones = [b.enlarged(FACE_ZONE_MARGIN, w, h) for b in photo.targets + photo.ignore]
        for z in zones:
            zone[z.y:z.y + z.h, z.x:z.x + z.w] = True
        outside += int((~zone).sum())
        blurred_outside += int((mask & ~zone).sum())
        if not photo.targets:
            no_target.append(float(mask.mean()))
        fp_faces += sum(r.kind is Kind.FACE and all(r.box.intersection(z) == 0 for z in zones)
                        for r in out.regions)
    result = {f"recall_{k}": v[0] / v[1] for k, v in hits.items()}
    result |= {f"n_{k}": float(v[1]) for k, v in hits.items()}
    result["overblur_fraction"] = blurred_outside / max(outside, 1)
    result["blurred_fraction_no_target"] = float(np.mean(no_target)) if no_target else 0.0
    result["fp_face_boxes"] = float(fp_faces)
    return result


def run_set(title: str, photos: list[Photo], detectors: dict[str, RegionDetector],
            configs: list[tuple[str, tuple[str, ...]]], margin: float,
            columns: list[str]) -> dict[str, dict[str, float]]:
    used = sorted({n for _, names in configs for n in names})
    recorded: dict[str, dict[int, list[Box]]] = {n: {} for n in used}
    for i, photo in enumerate(photos):
        frame = Frame.from_pixels(photo.pixels)
        for n in used:
            recorded[n][i] = detectors[n].detect(frame)
    results = {t: score(photos, replay(photos, recorded, detectors, names, margin))
               for t, names in configs}
    first = next(iter(results.values()))
    counts = ", ".join(f"{c.removeprefix('recall_')} n={first.get('n_' + c[7:], 0):.0f}"
                       for c in columns if c.startswith("recall_"))
    print(f"\n{title}: {len(photos)} photos ({counts})")
    head = f"{'configuration':34s} " + " ".join(f"{c.removeprefix('recall_'):>11s}"
                                                for c in columns)
    print(head + "\n" + "-" * len(head))
    for t, r in results.items():
        print(f"{t:34s} " + " ".join(f"{r.get(c, float('nan')):11.3f}" for c in columns))
    return results


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


def fit_640x480(photo: Photo) -> Photo:
    """The photo shrunk (never enlarged) to fit into 640x480, its boxes with it."""
    h, w = photo.pixels.shape[:2]
    f = min(FRAME_SIZE[0] / w, FRAME_SIZE[1] / h, 1.0)
    pixels = cv2.resize(photo.pixels, (round(w * f), round(h * f)), interpolation=cv2.INTER_AREA)

    def scaled(b: Box) -> Box:
        return Box(int(b.x * f), int(b.y * f), max(1, round(b.w * f)), max(1, round(b.h * f)))

    return Photo(photo.name, pixels, tuple(map(scaled, photo.targets)),
                 tuple(map(scaled, photo.ignore)), photo.group)


def timed_in_turn(filters: dict[str, PrivacyFilter], frames: list[np.ndarray],
                  ) -> dict[str, tuple[float, float]]:
    """Frames per second (wall, CPU) for each filter, frame by frame in turn."""
    wall = dict.fromkeys(filters, 0.0)
    cpu = dict.fromkeys(filters, 0.0)
    for frame in frames:
        for name, filt in filters.items():
            w0, c0 = time.perf_counter(), time.process_time()
            filt.filter_array(frame)
            wall[name] += time.perf_counter() - w0
            cpu[name] += time.process_time() - c0
    return {n: (len(frames) / wall[n], len(frames) / cpu[n]) for n in filters}


def mnist_blurred_fraction(data_dir: Path, filt: PrivacyFilter, n: int = 2000) -> float | None:
    path = data_dir / "mnist.npz"
    if not path.exists():
        return None
    with np.load(path) as npz:
        digits = npz["x"][:n]
    total = 0.0
    for digit in digits:
        out = filt.filter_array(digit)
        assert isinstance(out, FilteredImage), out
        total += float(_mask(out).mean())
    return total / len(digits)


def measure_speed(cfg: PrivacyConfig, detectors: dict[str, RegionDetector],
                  data: Path) -> dict[str, tuple[float, float]]:
    """Time the default filter and single detectors on 19 frames of 640x480; print a table."""
    frames = frames_640x480(load_set(data / "faces_street")[::20]
                            + load_set(data / "plates")[::14])
    timed: dict[str, PrivacyFilter] = {"default": PrivacyFilter.from_config(cfg)}
    if "yunet" in detectors:
        timed["yunet alone"] = PrivacyFilter([detectors["yunet"]], {Kind.FACE: Action.BLUR})
    for n in ("centerface", "centerface_float", "text_plate"):
        timed[f"{n} alone"] = PrivacyFilter([detectors[n]], {detectors[n].kind: Action.BLUR})
    speed = timed_in_turn(timed, frames)
    print(f"\nframes per second at {FRAME_SIZE[0]}x{FRAME_SIZE[1]}, one thread, {len(frames)} "
          f"frames, whole filter (decode excluded, PNG encode included); load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    for name, (wall_fps, cpu_fps) in speed.items():
        print(f"  {name:28s} wall {wall_fps:7.1f}   cpu-time {cpu_fps:7.1f}")
    return speed


def speed_summary(speed: dict[str, tuple[float, float]]) -> dict[str, object]:
    summary: dict[str, object] = {
        "fps_640x480_1core": round(speed["default"][0], 2),
        "fps_640x480_1core_cpu_time": round(speed["default"][1], 2),
        "fps_640x480_1core_float_centerface_alone": round(speed["centerface_float alone"][0], 2),
        "fps_640x480_1core_centerface_alone": round(speed["centerface alone"][0], 2),
        "fps_640x480_1core_text_plate_alone": round(speed["text_plate alone"][0], 2),
        "fps_640x480": round(speed["default"][0], 2),
    }
    if "yunet alone" in speed:
        summary |= {
            "yunet_fps_640x480_1core": round(speed["yunet alone"][0], 2),
            "fps_ratio_default_to_yunet_alone": round(
                speed["default"][0] / speed["yunet alone"][0], 3),
            "fps_ratio_default_to_yunet_alone_cpu_time": round(
                speed["default"][1] / speed["yunet alone"][1], 3),
        }
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=os.environ.get("PEERDATA_DATA_DIR"))
    parser.add_argument("--models-dir", type=Path, default=os.environ.get("PEERDATA_MODELS_DIR"))
    parser.add_argument("--haar-street", action="store_true",
                        help="also run the (slow) Haar face cascades on faces_street/")
    parser.add_argument("--speed-only", action="store_true",
                        help="only the frames-per-second table (a short run to repeat on a quiet "
                             "machine)")
    args = parser.parse_args()
    data = args.data_dir
    if data is None or not all((data / s).is_dir() for s in ("faces", "faces_street", "plates")):
        sys.exit("need faces/, faces_street/ and plates/: pass --data-dir or set PEERDATA_DATA_DIR")
    cv2.setNumThreads(1)  # onnxruntime sessions are built with one thread (models.onnx_session)

    cfg = PrivacyConfig()
    detectors = build_detectors(cfg, args.models_dir)
    has_yunet = "yunet" in detectors
    if args.speed_only:
        print(json.dumps(speed_summary(measure_speed(cfg, detectors, data)), sort_keys=True))
        return
    face_configs = [("default (centerface + text_plate)", DEFAULT),
                    ("float centerface + text_plate", ("centerface_float", "text_plate")),
                    ("haar_frontal+haar_profile", ("haar_frontal", "haar_profile", "text_plate"))]
    if has_yunet:
        face_configs += [("yunet alone", ("yunet",)),
                         ("centerface+yunet", ("centerface", "yunet", "text_plate"))]
    print(f"margin {cfg.margin}; centerface_score {cfg.centerface_score}; "
          f"yunet_score {cfg.yunet_score}; found = >= {COVERED_ENOUGH:.0%} of the box redacted")

    faces = run_set("faces/", load_set(data / "faces"), detectors, face_configs, cfg.margin,
                    ["recall_all", "recall_voc", "overblur_fraction",
                     "blurred_fraction_no_target", "fp_face_boxes"])
    street_configs = [c for c in face_configs if args.haar_street or "haar" not in c[0]]
    street = run_set("faces_street/", load_set(data / "faces_street"), detectors, street_configs,
                     cfg.margin, ["recall_ge24", "recall_15_24", "recall_lt15",
                                  "recall_ge24_half_a", "recall_ge24_half_b",
                                  "recall_15_24_half_a", "recall_15_24_half_b",
                                  "overblur_fraction"])
    plate_photos = load_set(data / "plates")
    plates = run_set("plates/", plate_photos, detectors,
                     [("default (text_plate)", ("text_plate",)),
                      ("haar_plate (the old default)", ("haar_plate",))], cfg.margin,
                     ["recall_all", "recall_br", "recall_eu", "recall_us"])

    plates_640 = run_set("plates/ fitted into 640x480", [fit_640x480(p) for p in plate_photos],
                         detectors, [("default (text_plate)", ("text_plate",))], cfg.margin,
                         ["recall_all", "recall_br", "recall_eu", "recall_us"])

    mnist = mnist_blurred_fraction(data, PrivacyFilter.from_config(cfg))
    print(f"\nMNIST, first 2,000 test digits: blurred area {mnist}")

    speed = measure_speed(cfg, detectors, data)
    d_face, d_street, d_plate = (r[next(iter(r))] for r in (faces, street, plates))
    summary: dict[str, object] = {
        "street_face_recall_ge24": round(d_street["recall_ge24"], 4),
        "street_face_recall_15_24": round(d_street["recall_15_24"], 4),
        "street_face_recall_lt15": round(d_street["recall_lt15"], 4),
        "street_face_recall_ge24_halves": [round(d_street["recall_ge24_half_a"], 4),
                                           round(d_street["recall_ge24_half_b"], 4)],
        "street_face_recall_15_24_halves": [round(d_street["recall_15_24_half_a"], 4),
                                            round(d_street["recall_15_24_half_b"], 4)],
        "plate_recall": round(d_plate["recall_all"], 4),
        "plate_recall_640x480": round(plates_640["default (text_plate)"]["recall_all"], 4),
        "plate_recall_haar": round(plates["haar_plate (the old default)"]["recall_all"], 4),
        "blurred_fraction_no_face_photos": round(d_face["blurred_fraction_no_target"], 4),
        "mnist_blurred_fraction": None if mnist is None else round(mnist, 5),
        "street_face_recall_ge24_float": round(
            street["float centerface + text_plate"]["recall_ge24"], 4),
        "street_face_recall_15_24_float": round(
            street["float centerface + text_plate"]["recall_15_24"], 4),
        "face_recall": round(d_face["recall_all"], 4),
        "face_recall_voc": round(d_face["recall_voc"], 4),
        "overblur_fraction": round(d_face["overblur_fraction"], 4),
    }
    if has_yunet:
        yn = street["yunet alone"]
        summary |= {
            "yunet_street_face_recall_ge24": round(yn["recall_ge24"], 4),
            "yunet_street_face_recall_15_24": round(yn["recall_15_24"], 4),
            "yunet_blurred_fraction_no_face_photos": round(
                faces["yunet alone"]["blurred_fraction_no_target"], 4),
        }
    summary |= speed_summary(speed)
    print(json.dumps(summary, sort_keys=True))


if __name__ == "__main__":
    main()
