"""The vision model: shapes, seeded determinism, learning, and pure state (de)serialization."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from peerdata.datasets.synthetic import generate
from peerdata.errors import DataError
from peerdata.ml.vision import VisionConfig, VisionModel

torch.set_num_threads(1)
TINY = VisionConfig(num_classes=10, width=4, embedding_dim=16, batch_size=32)


def test_prediction_shapes_and_probabilities() -> None:
    model = VisionModel(TINY, seed=0)
    images = generate("bars", 7, seed=0).images
    pred = model.predict(images)
    assert pred.logits.shape == (7, 10) and pred.embedding.shape == (7, 16)
    assert np.allclose(pred.probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert pred.entropy.shape == (7,) and np.all(pred.entropy >= 0)
    samples = model.sample_probabilities(images, samples=5, seed=1)
    assert samples.shape == (5, 7, 10)


def test_same_seed_same_weights_and_training() -> None:
    data = generate("spots", 200, seed=0)
    a, b = VisionModel(TINY, seed=3), VisionModel(TINY, seed=3)
    assert a.state_bytes() == b.state_bytes()
    la = a.train(data.images, data.labels, epochs=1, seed=5)
    lb = b.train(data.images, data.labels, epochs=1, seed=5)
    assert la == lb
    assert np.array_equal(a.predict(data.images).logits, b.predict(data.images).logits)
    c = VisionModel(TINY, seed=4)
    assert not np.array_equal(a.predict(data.images).logits, c.predict(data.images).logits)


def test_training_learns_a_synthetic_family() -> None:
    train, test = generate("spots", 600, seed=0), generate("spots", 200, seed=1)
    model = VisionModel(TINY, seed=0)
    before = model.accuracy(test.images, test.labels)
    model.train(train.images, train.labels, epochs=4, seed=0)
    after = model.accuracy(test.images, test.labels)
    assert after > 0.6 and after > before + 0.3


def test_state_bytes_round_trip_and_rejection() -> None:
    model = VisionModel(TINY, seed=0)
    twin = VisionModel(TINY, seed=99)
    twin.load_state_bytes(model.state_bytes())
    images = generate("rings", 5, seed=0).images
    assert np.array_equal(model.predict(images).logits, twin.predict(images).logits)
    other = VisionModel(VisionConfig(num_classes=10, width=8), seed=0)
    with pytest.raises(DataError, match="does not fit"):
        other.load_state_bytes(model.state_bytes())
    with pytest.raises(DataError):
        model.load_state_bytes(b"garbage")


def test_bad_inputs_are_data_errors() -> None:
    model = VisionModel(TINY, seed=0)
    with pytest.raises(DataError, match="uint8"):
        model.predict(np.zeros((2, 28, 28), np.float32))
    with pytest.raises(DataError, match="labels must lie"):
        model.train(np.zeros((2, 28, 28), np.uint8), np.array([0, 10]), epochs=1, seed=0)


def test_fixed_draws_per_epoch_take_only_full_steps() -> None:
    # more images than draws per epoch: every step must see a non-empty batch, so the loss is
    # finite and the weights equal those of a run that made exactly ceil(draws / batch) steps
    data = generate("bars", 300, seed=0)
    model = VisionModel(TINY, seed=0)
    loss = model.train(data.images, data.labels, epochs=2, seed=1, samples_per_epoch=64)
    assert np.isfinite(loss)
    steps: list[int] = []
    twin = VisionModel(TINY, seed=0)
    hook = twin.net.classifier.register_forward_hook(lambda _m, inp, _o: steps.append(len(inp[0])))
    twin.train(data.images, data.labels, epochs=2, seed=1, samples_per_epoch=64)
    hook.remove()
    assert steps == [32, 32, 32, 32]  # 2 epochs x 64 draws in batches of 32, none empty
    assert all(np.isfinite(p.detach().numpy()).all() for p in model.net.parameters())
