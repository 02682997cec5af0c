#!/usr/bin/env python3
"""Bytes of one federated update: full model vs float16 vs top-k vs head-only (frozen backbone).

One local epoch on a robot's MNIST images, from the same start, then the signed ModelUpdate
the exchange would send (`peerdata.federated.traffic`: real encodings, nothing estimated).
Head-only trains only the parameters whose name starts with `--head` (the classifier); the
exchange leaves every unchanged tensor out of a delta, so only the head travels. Measured on
the vision models this branch has: the federated experiment's net and the daemon's default.
Prints a table; the last stdout line is one JSON object. The pretrained EfficientNet-Lite0
model (whose federated state is its head alone) is measured, with the accuracy each encoding
costs over federated rounds, by `scripts/bench_fed_head.py`.

    PEERDATA_DATA_DIR=../shared/data .venv/bin/python scripts/bench_fed_bytes.py
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch

from peerdata.datasets import load_dataset, resolve_data_dir
from peerdata.federated.local import LocalTraining, new_state, train_from
from peerdata.federated.tensors import BlobOptions
from peerdata.federated.traffic import Transfer, robot_identity, transfer_bytes
from peerdata.ml.vision import VisionConfig

MODELS = {
    "experiment_net": VisionConfig(num_classes=10, width=4, embedding_dim=32, dropout=0.0),
    "daemon_default_net": VisionConfig(num_classes=30),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--head", default="classifier.")
    args = parser.parse_args()
    torch.set_num_threads(1)
    train = load_dataset("mnist", resolve_data_dir(None)).train
    assert train is not None
    pick = np.random.default_rng(0).permutation(len(train))[: args.images]
    images, labels = train.images[pick], train.labels[pick]
    ids = [robot_identity(0), robot_identity(1)]
    identities = {i.peer_id: i for i in ids}
    rows, out = [], {}
    for model, vision in MODELS.items():
        start = new_state(vision, 0)
        full = train_from(vision, start, images, labels, epochs=1, training=LocalTraining(),
                          seed=1)
        head = train_from(vision, start, images, labels, epochs=1, training=LocalTraining(),
                          seed=1, trainable=lambda name: name.startswith(args.head))
        variants = {"full_f32": (full, BlobOptions("float32")),
                    "full_f16": (full, BlobOptions("float16")),
                    "full_topk0.1_f16": (full, BlobOptions("float16", 0.1)),
                    "head_f32": (head, BlobOptions("float32")),
                    "head_f16": (head, BlobOptions("float16"))}
        sizes = {}
        for name, (state, options) in variants.items():
            t = Transfer(ids[0].peer_id, ids[1].peer_id, "update", state, start)
            sizes[name] = transfer_bytes([t], identities, 1, options)
        params = sum(v.numel() for v in start.values())
        head_params = sum(v.numel() for k, v in start.items() if k.startswith(args.head))
        for name, size in sizes.items():
            ratio = size / sizes["full_f32"]
            rows.append((model, name, size, f"{100 * ratio:.2f}%"))
            out[f"{model}_{name}_bytes"] = size
        out[f"{model}_head_f32_ratio"] = round(sizes["head_f32"] / sizes["full_f32"], 4)
        out[f"{model}_head_f16_ratio"] = round(sizes["head_f16"] / sizes["full_f32"], 4)
        out[f"{model}_params"] = params
        out[f"{model}_head_params"] = head_params
    print(f"{'model':<20} {'update':<18} {'bytes':>9} {'of full f32':>11}")
    for model, name, size, ratio in rows:
        print(f"{model:<20} {name:<18} {size:>9} {ratio:>11}")
    print(json.dumps(out, sort_keys=True))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
