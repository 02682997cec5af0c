#!/usr/bin/env python3
"""Ingest benchmark: camera frames through decode -> embed -> rank -> OoD, against the bare
backbone.

Frames are distinct 640x480 JPEGs (crops of real photos shipped with scikit-image, so every
frame is a cache miss). The pipeline per batch: `decode_frame` (header check, decode, resize
to the backbone's input, RGB), the frozen trunk (content-ID cache lookup + forward), the head,
GU-ranker features and prediction, and a calibrated OoD vote. The reference is the backbone's
bare forward pass on already-prepared input tensors of the same batch, timed in the same run,
interleaved batch by batch with the pipeline.
The table shows both; the last stdout line is one JSON object with `ratio` (pipeline frames/s
divided by bare forward frames/s; target >= 0.8).

    .venv/bin/python scripts/bench_ingest.py [--frames 96] [--batch 32] [--backbone NAME]
        [--detector backbone_knn] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from peerdata.ml.backbones import FrozenTrunk
from peerdata.ml.frames import decode_frame
from peerdata.ml.ood import build_detector
from peerdata.ml.ood_backbone import BackboneKnnDetector
from peerdata.ml.ranker import GlobalUtilityRanker, feature_dim, ranker_features
from peerdata.ml.vision import VisionConfig, VisionModel, as_tensor

PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png",
          "hubble_deep_field.jpg", "retina.jpg", "horse.png")


def camera_frames(count: int, seed: int) -> list[bytes]:
    """`count` distinct 640x480 JPEGs: random crops and scales of real photos."""
    import skimage

    folder = Path(skimage.data_dir)
    photos = []
    for name in PHOTOS:
        img = cv2.imread(str(folder / name), cv2.IMREAD_COLOR)
        if img is not None:
            photos.append(cv2.resize(img, (960, 720), interpolation=cv2.INTER_LINEAR))
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(count):
        base = photos[i % len(photos)]
        y, x = rng.integers(0, 240), rng.integers(0, 320)
        crop = np.ascontiguousarray(base[y:y + 480, x:x + 640])
        ok, data = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, 90])
        assert ok
        frames.append(data.tobytes())
    return frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=96)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--backbone", default="efficientnet-lite0")
    parser.add_argument("--detector", default="backbone_knn")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = VisionConfig(backbone=args.backbone, num_classes=10, embedding_dim=128)
    spec = config.image_spec
    model = VisionModel(config, seed=0)
    model.trunk = FrozenTrunk(config.spec, fine_tune_last_block=False)  # a cold, private cache
    assert model.trunk is not None
    ranker = GlobalUtilityRanker(feature_dim(128, 10, model.descriptor_dim), seed=0)
    own = np.stack([decode_frame(f, spec) for f in camera_frames(70, seed=1)])
    calibration, pool = own[:40], own[40:]
    detector = build_detector(args.detector)
    if isinstance(detector, BackboneKnnDetector):  # the vote a robot with peers has
        peers = np.stack([decode_frame(f, spec) for f in camera_frames(30, seed=3)])
        detector.fit(model, calibration, pool, peers)
    else:
        detector.fit(model, calibration)
    ranker.fit(ranker_features(model.predict(calibration[:20])), np.linspace(0, 1, 20))
    frames = camera_frames(args.frames, seed=2)
    fitted = model.trunk.misses
    warm = np.zeros((2, *spec.shape), np.uint8)
    with torch.no_grad():
        model.trunk.net(as_tensor(warm, config.spec))  # first-call allocations, both timings

    batches = [frames[s:s + args.batch] for s in range(0, len(frames), args.batch)]
    tensors = [as_tensor(np.stack([decode_frame(f, spec) for f in b]), config.spec)
               for b in batches]
    # interleaved, batch by batch, so both timings see the same load on a shared machine
    pipeline_s = bare_s = decode_s = 0.0
    for batch, x in zip(batches, tensors, strict=True):
        t0 = time.perf_counter()
        with torch.no_grad():
            model.trunk.net(x)
        t1 = time.perf_counter()
        pixels = np.stack([decode_frame(f, spec) for f in batch])
        t2 = time.perf_counter()
        prediction = model.predict(pixels)
        ranker.predict(ranker_features(prediction))
        detector.vote(model, pixels)
        t3 = time.perf_counter()
        bare_s, decode_s, pipeline_s = bare_s + t1 - t0, decode_s + t2 - t1, pipeline_s + t3 - t1
    # each frame embedded once, never twice (a crop may repeat one the detector was fitted on)
    assert model.trunk.misses <= fitted + len(frames)

    n = len(frames)
    pipeline_fps, bare_fps = n / pipeline_s, n / bare_s
    rows = [
        ("bare backbone forward", bare_s, bare_fps),
        ("decode->embed->rank->OoD", pipeline_s, pipeline_fps),
        ("  of which decode+resize", decode_s, n / decode_s),
    ]
    print(f"{args.backbone}, {n} frames 640x480 JPEG -> {spec.side}x{spec.side}, batch "
          f"{args.batch}, {args.threads} threads, load average {os.getloadavg()[0]:.1f}")
    print(f"{'stage':<28}{'seconds':>10}{'frames/s':>10}")
    for name, seconds, fps in rows:
        print(f"{name:<28}{seconds:>10.2f}{fps:>10.1f}")
    print(json.dumps({
        "backbone": args.backbone, "frames": n, "input_side": spec.side,
        "threads": args.threads, "pipeline_fps": round(pipeline_fps, 2),
        "bare_forward_fps": round(bare_fps, 2), "ratio": round(pipeline_fps / bare_fps, 3),
        "load_average": round(os.getloadavg()[0], 1),
    }))


if __name__ == "__main__":
    main()
