#!/usr/bin/env python3
"""Head-only federation on a frozen pretrained EfficientNet-Lite0: bytes per round and accuracy.

The model is the daemon's own (`peerdata.ml.vision.VisionModel` with `backbone =
"efficientnet-lite0"` and `head_size` as `[model]` sets it): its federated state is the head
(dense + classifier), the trunk never changes and never travels. 7 robots, a quantity-skewed
MNIST split, FedAvg for --rounds rounds, each robot training the head as the daemon does (one
local epoch, the learner's Adam); every update and every global model goes through the real
encoding (signed ModelUpdate bytes) and the aggregate is built from what was *decoded*, so a
lossy encoding costs the accuracy it really costs. Variants: dense float32 / float16 deltas,
top-k float16 deltas with error feedback (`peerdata.federated.tensors.ErrorFeedback`, as the
daemon does) and without. The global model comes back as the daemon sends it (the full head,
dense, in the update dtype), or, in the `both_` variants (what the daemon does when top-k is
configured: `FederatedPeer.send_globals`), as a top-k delta too (no memory: the aggregator
rotates). The reference is a full-model update of the same network (trunk +
head, float32): ratios are bytes per message over that. Prints a table; last line is JSON.

    PEERDATA_DATA_DIR=../shared/data .venv/bin/python scripts/bench_fed_head.py
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from peerdata.datasets import load_dataset, resolve_data_dir
from peerdata.federated.partition import SplitSpec, split_indices
from peerdata.federated.tensors import (
    BlobOptions,
    ErrorFeedback,
    blobs_from_state,
    state_from_blobs,
)
from peerdata.federated.traffic import robot_identity
from peerdata.ml.aggregate import ClientUpdate, FedAvg, StateDict
from peerdata.ml.backbones import pretrained_lite0
from peerdata.ml.frames import fit_batch
from peerdata.ml.vision import VisionConfig, VisionModel
from peerdata.wire.model_update import TensorBlob, encode_model_update, sign_model_update

VARIANTS = {  # name: (dtype, top-k fraction up, error feedback up, top-k fraction down)
    "dense_f32": ("float32", 1.0, False, 1.0),
    "dense_f16": ("float16", 1.0, False, 1.0),
    "up_topk0.25_f16": ("float16", 0.25, False, 1.0),
    "up_topk0.25_f16_ef": ("float16", 0.25, True, 1.0),
    "up_topk0.2_f16_ef": ("float16", 0.2, True, 1.0),
    "both_topk0.25_f16_ef": ("float16", 0.25, True, 0.25),
    "both_topk0.2_f16_ef": ("float16", 0.2, True, 0.2),
}


def message_bytes(blobs: tuple[TensorBlob, ...], kind: str, is_delta: bool) -> int:
    """Encoded length of a signed ModelUpdate carrying `blobs` (what the exchange sends)."""
    msg = sign_model_update(robot_identity(0), round_id=1, base_version=1, kind=kind,
                            is_delta=is_delta, num_samples=100, label_counts=(10,) * 10, tag="",
                            tensors=blobs)
    return len(encode_model_update(msg))


def clone(state: dict[str, torch.Tensor]) -> StateDict:
    return {k: v.detach().clone() for k, v in state.items()}


def run_variant(model: VisionModel, start: StateDict, robots: list[tuple[np.ndarray, np.ndarray]],
                test: tuple[np.ndarray, np.ndarray], rounds: int,
                variant: tuple[str, float, bool, float]) -> dict[str, float]:
    dtype, fraction, feedback, down_fraction = variant
    options, dense = BlobOptions(dtype, fraction), BlobOptions(dtype)
    down_options = BlobOptions(dtype, down_fraction)
    memories = [ErrorFeedback() for _ in robots]
    global_state, up, down, curve = clone(start), [], [], []
    for round_id in range(1, rounds + 1):
        updates = []
        for i, (images, labels) in enumerate(robots):
            model.net.load_state_dict(global_state)
            model.train(images, labels, epochs=1, seed=1000 * round_id + i)
            local = clone(model.net.state_dict())
            blobs = (memories[i].blobs(local, options, global_state) if feedback
                     else blobs_from_state(local, options, global_state))
            up.append(message_bytes(blobs, "update", True))
            updates.append(ClientUpdate(str(i), state_from_blobs(blobs, global_state,
                                                                 global_state), len(labels)))
        merged = FedAvg().aggregate(updates)
        if down_fraction < 1:  # the global's top-k delta (robots in step hold its base)
            sent = blobs_from_state(merged, down_options, global_state)
            down.append(message_bytes(sent, "global", True))
            global_state = state_from_blobs(sent, global_state, global_state)
        else:
            sent = blobs_from_state(merged, dense)
            down.append(message_bytes(sent, "global", False))
            global_state = state_from_blobs(sent, global_state)  # what every robot adopts
        model.net.load_state_dict(global_state)
        curve.append(model.accuracy(*test))
    return {"accuracy": curve[-1], "up_bytes": float(np.mean(up)),
            "down_bytes": float(np.mean(down)), "curve": curve}  # type: ignore[dict-item]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2100, help="train images, all robots")
    parser.add_argument("--test-images", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--robots", type=int, default=7)
    parser.add_argument("--side", type=int, default=64,
                        help="trunk input side (224 is the backbone's; bytes do not depend on it)")
    parser.add_argument("--head-size", type=int, default=128, help="[model] head_size")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.monotonic()
    splits = load_dataset("mnist", resolve_data_dir(None))
    assert splits.train is not None and splits.test is not None
    config = VisionConfig(backbone="efficientnet-lite0", input_side=args.side, num_classes=10,
                          embedding_dim=args.head_size)
    model = VisionModel(config, seed=args.seed)
    start = clone(model.net.state_dict())
    parts = split_indices(splits.train.labels, SplitSpec("quantity", 0.5, args.robots,
                                                         args.images), args.seed)
    robots = [(fit_batch(splits.train.images[p], config.image_spec), splits.train.labels[p])
              for p in parts]
    pick = np.random.default_rng(args.seed + 10_000).permutation(len(splits.test))
    pick = np.sort(pick[: args.test_images])
    test = (fit_batch(splits.test.images[pick], config.image_spec), splits.test.labels[pick])
    # the reference: a full-model update of the same network, trunk trained too (float32)
    trunk = {f"trunk.{k}": v for k, v in pretrained_lite0().state_dict().items()}
    full = {**trunk, **start}
    full_bytes = message_bytes(blobs_from_state(full, BlobOptions("float32")), "update", False)
    results = {}
    for name in args.variants.split(","):
        results[name] = run_variant(model, start, robots, test, args.rounds, VARIANTS[name])
    base_acc = results.get("dense_f32", next(iter(results.values())))["accuracy"]
    print(f"full-model update (trunk + head, float32): {full_bytes} bytes; "
          f"head params {sum(v.numel() for v in start.values())}")
    print(f"{'variant':<18} {'acc':>6} {'d acc':>7} {'up B':>9} {'up %':>6} {'down B':>9} "
          f"{'down %':>6} {'round %':>7}")
    out: dict[str, object] = {"full_model_bytes": full_bytes, "head_size": args.head_size,
                              "rounds": args.rounds, "images": args.images, "side": args.side}
    for name, r in results.items():
        up, down = r["up_bytes"] / full_bytes, r["down_bytes"] / full_bytes
        both = (r["up_bytes"] + r["down_bytes"]) / (2 * full_bytes)
        print(f"{name:<18} {r['accuracy']:>6.3f} {r['accuracy'] - base_acc:>+7.3f} "
              f"{r['up_bytes']:>9.0f} {100 * up:>5.2f}% {r['down_bytes']:>9.0f} "
              f"{100 * down:>5.2f}% {100 * both:>6.2f}%")
        out[f"{name}_accuracy"] = round(r["accuracy"], 4)
        out[f"{name}_up_ratio"] = round(up, 5)
        out[f"{name}_down_ratio"] = round(down, 5)
        out[f"{name}_round_ratio"] = round(both, 5)
    out["wall_s"] = round(time.monotonic() - started, 1)
    print(json.dumps(out, sort_keys=True))


if __name__ == "__main__":
    main()
