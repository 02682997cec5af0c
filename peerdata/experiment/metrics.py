"""Per-round measurements of a run: accuracy per domain, rare-data precision/recall, bytes.

Rule: measurements read learner state and round outcomes; they never change them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import cv2
import numpy as np

from peerdata.datasets import LabelledImages
from peerdata.ml.ood import DETECTORS, auroc, build_detector
from peerdata.sharing import RobotLearner, ShareCandidate


def png_bytes(image: np.ndarray) -> int:
    """Size of one image as a PNG file (what goes over the wire)."""
    ok, encoded = cv2.imencode(".png", image)
    if not ok:  # pragma: no cover - cv2 only fails on invalid arrays, which we never pass
        raise ValueError("PNG encoding failed")
    return int(encoded.size)


def accuracies(learner: RobotLearner, evaluation: Mapping[str, LabelledImages]) -> dict[str, float]:
    """Accuracy on each dataset's held-out split, and on all of them together (`all`)."""
    names = list(evaluation)
    return learner.accuracies(
        np.concatenate([evaluation[d].images for d in names]),
        np.concatenate([evaluation[d].labels for d in names]),
        np.concatenate([np.full(len(evaluation[d]), d, dtype=object) for d in names]))


def sharing_stats(
    learner: RobotLearner,
    round_domains: np.ndarray,
    shared: Sequence[ShareCandidate],
    novel_domains: frozenset[str],
) -> dict[str, float]:
    """Counts and precision/recall of rare data (domains novel to at least one peer).

    Args:
        round_domains: ground-truth domain of each image the robot observed this round.
    """
    rare_available = int(sum(d in novel_domains for d in round_domains))
    rare_shared = int(sum(learner.local_domains[c.image_id] in novel_domains for c in shared))
    return {
        "shared": len(shared),
        "rare_shared": rare_shared,
        "rare_available": rare_available,
        "rare_precision": rare_shared / len(shared) if shared else float("nan"),
        "rare_recall": rare_shared / rare_available if rare_available else float("nan"),
        "bytes": sum(png_bytes(c.image) for c in shared),
    }


def detector_aurocs(
    learner: RobotLearner,
    own: Sequence[str],
    evaluation: Mapping[str, LabelledImages],
    per_set: int,
) -> dict[str, dict[str, float]]:
    """AUROC of every detector: robot's own held-out data vs each foreign dataset's."""
    own_images = np.concatenate([evaluation[d].images[: per_set // len(own)] for d in own])
    out: dict[str, dict[str, float]] = {}
    for name in DETECTORS:
        detector = build_detector(name, learner.config.ood_tpr, learner.seed)
        detector.fit(learner.model, learner.calibration_images, learner.detector_reference(),
                     learner.received_images)
        in_scores = detector.score(learner.model, own_images)
        out[name] = {
            d: auroc(in_scores, detector.score(learner.model, data.images[:per_set]))
            for d, data in evaluation.items()
            if d not in own
        }
    return out


def mean_std(values: Sequence[float]) -> dict[str, float | None]:
    """Mean and (population) std over seeds, ignoring NaN; None when nothing is defined."""
    arr = np.asarray([v for v in values if v == v], dtype=np.float64)
    if not len(arr):
        return {"mean": None, "std": None}
    return {"mean": float(arr.mean()), "std": float(arr.std())}


def _histogram(values: Sequence[object]) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[str(v)] = out.get(str(v), 0) + 1
    return dict(sorted(out.items(), key=lambda kv: (len(kv[0]), kv[0])))


def round_histograms(
    learners: Mapping[str, RobotLearner], shared: Mapping[str, Sequence[ShareCandidate]]
) -> dict[str, dict[str, dict[str, dict[str, int]]]]:
    """Per robot, the class and domain histograms of what it shared and what it received.

    Received = what every other robot shared this round (the relay shows each batch to every
    peer). Domains are the sender's ground truth; classes are the unified labels.
    """
    sent = {
        name: (
            [c.label for c in shared[name]],
            [learners[name].local_domains[c.image_id] for c in shared[name]],
        )
        for name in learners
    }
    out = {}
    for name in learners:
        others = [sent[n] for n in learners if n != name]
        out[name] = {
            "shared": {"class": _histogram(sent[name][0]), "domain": _histogram(sent[name][1])},
            "received": {
                "class": _histogram([x for labels, _ in others for x in labels]),
                "domain": _histogram([x for _, domains in others for x in domains]),
            },
        }
    return out


def mean_histograms(per_seed: Sequence[Mapping[str, Mapping[str, Mapping[str, int]]]]) -> dict:
    """Mean count over seeds of every (direction, kind, key) of one robot's round histograms."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for direction in ("shared", "received"):
        out[direction] = {}
        for kind in ("class", "domain"):
            keys = sorted(
                {k for h in per_seed for k in h[direction][kind]}, key=lambda k: (len(k), k)
            )
            out[direction][kind] = {
                k: float(np.mean([h[direction][kind].get(k, 0) for h in per_seed])) for k in keys
            }
    return out


def class_entropy(histogram: Mapping[str, float]) -> float:
    """Entropy (bits) of a class histogram: log2(k) when k classes are equally present."""
    counts = np.asarray([v for v in histogram.values() if v > 0], dtype=np.float64)
    if not len(counts):
        return float("nan")
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())
