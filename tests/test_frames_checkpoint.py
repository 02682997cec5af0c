"""The daemon's learner with `[model] fine_tune_last_block = true`: the fine-tuned last block of
the pretrained backbone survives the daemon's checkpoint (save, restart, load) exactly."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from peerdata.config import RoundConfig, config_from_dict
from peerdata.ml.backbones import pretrained_lite0
from peerdata.node.learning import LearnerHost, Observation, learner_config_for

torch.set_num_threads(1)
SIDE = 64
MODEL = {"backbone": "efficientnet-lite0", "labels": ["dark", "bright", "striped"],
         "input_size": SIDE, "head_size": 16, "fine_tune_last_block": True,
         "calibration_images": 10, "epochs": 2, "fine_tune_epochs": 1}
BLOCK = "tail.net._blocks.15._project_conv.weight"


def _observations(n: int, seed: int) -> list[Observation]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        image = rng.integers(0, 60, (SIDE, SIDE, 3)).astype(np.uint8)
        if i % 3 == 1:
            image += 180
        if i % 3 == 2:
            image[::4] = 255
        out.append(Observation(hashlib.sha256(image.tobytes()).digest(), image, i % 3, None))
    return out


def test_fine_tuned_last_block_survives_the_daemon_checkpoint(tmp_path: Path) -> None:
    model = config_from_dict({"name": "a", "model": MODEL}).model
    config = learner_config_for(RoundConfig(), model)
    assert config.vision.fine_tune_last_block
    path = tmp_path / "learner.ckpt"
    host = LearnerHost("a", config, seed=0, path=path)
    host.bootstrap(_observations(30, seed=0), seed=None)
    host.observe(_observations(6, seed=1))
    host.learn([], train_ranker=False)  # fine-tunes head and last block
    tuned = host.learner.model.net.state_dict()[BLOCK]
    pretrained = pretrained_lite0().state_dict()[BLOCK.removeprefix("tail.net.")]
    assert not torch.equal(tuned, pretrained)
    host.save()

    restarted = LearnerHost.load("a", config, seed=0, path=path)
    assert torch.equal(restarted.learner.model.net.state_dict()[BLOCK], tuned)
    probe = np.stack([o.image for o in _observations(9, seed=2)])
    assert np.array_equal(restarted.learner.model.predict(probe).logits,
                          host.learner.model.predict(probe).logits)
    assert np.array_equal(restarted.vote(probe)[0], host.vote(probe)[0])
    assert restarted.statistics().fine_tunes == host.statistics().fine_tunes == 1
