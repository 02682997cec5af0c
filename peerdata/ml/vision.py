"""The robot's local vision model: a backbone by name, a head giving logits and an embedding,
and its training.

Rule: pure torch/numpy. No files, no printing, no global RNG side effects: every random draw
comes from a seed argument (global torch RNG state is forked and restored), so the same seed and
data give the same weights on the same machine and thread count.

Backbones (`peerdata.ml.backbones`): `small-cnn` is trained from scratch, whole. A pretrained
one (`efficientnet-lite0`) is frozen: its output per image is cached by content ID, and only the
head (dense -> dropout -> classifier; optionally the backbone's last block) is trained, so the
state that is saved, checkpointed or federated is the trainable part only.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from peerdata.errors import ConfigError, DataError
from peerdata.ml.backbones import BackboneSpec, FrozenTrunk, backbone_spec, shared_trunk
from peerdata.ml.frames import ImageSpec


@dataclass(frozen=True)
class VisionConfig:
    """Shape and training schedule of the vision model."""

    backbone: str = "small-cnn"  # see peerdata.ml.backbones.BACKBONES
    input_side: int = 0  # square input size in pixels; 0 = the backbone's default
    fine_tune_last_block: bool = False  # pretrained backbones: also train their last block
    num_classes: int = 30
    width: int = 16  # channels of the first conv layer; the second has twice as many
    embedding_dim: int = 64
    dropout: float = 0.3  # before the classifier; also what MC-dropout samples
    epochs: int = 6  # training from scratch
    fine_tune_epochs: int = 2  # each later fine-tune
    # Images drawn per fine-tune epoch; 0 means one pass over the data. A fixed number keeps a
    # round's cost flat while a robot's training set keeps growing.
    fine_tune_samples: int = 0
    fine_tune_learning_rate: float = 0.0  # 0: same as learning_rate
    batch_size: int = 64
    learning_rate: float = 2e-3
    eval_batch_size: int = 1024
    # Draw training batches class-balanced (with replacement): a handful of images of a class a
    # peer just shared then count as much as thousands of local ones, so new classes are learned
    # within a round or two instead of being drowned out.
    balanced: bool = True
    balance_power: float = 1.0  # sampling weight per image = count(label) ** -balance_power

    def __post_init__(self) -> None:
        if self.num_classes < 2 or self.width < 1 or self.embedding_dim < 1:
            raise ValueError("num_classes >= 2, width >= 1 and embedding_dim >= 1 required")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout}")
        spec = backbone_spec(self.backbone)
        if self.input_side and not (spec.pretrained and 32 <= self.input_side <= 1024):
            raise ConfigError(
                f"input_side={self.input_side}: only a pretrained backbone takes another input "
                f"size (32..1024); {self.backbone} takes {spec.input_side}"
            )

    @property
    def spec(self) -> BackboneSpec:
        """The backbone's spec."""
        return backbone_spec(self.backbone)

    @property
    def image_spec(self) -> ImageSpec:
        """Size and channels every image is brought to before this model sees it."""
        spec = self.spec
        return ImageSpec(self.input_side or spec.input_side, spec.channels)


@dataclass(frozen=True)
class Prediction:
    """What the vision model says about a batch of images (numpy, float32)."""

    logits: np.ndarray  # N x C
    probabilities: np.ndarray  # N x C, softmax of logits
    embedding: np.ndarray  # N x D
    # N x F, a frozen pretrained trunk's pooled features (unit length): what peers' backbone
    # detectors vote on, untouched by training. None for a backbone trained from scratch.
    descriptor: np.ndarray | None = None

    @property
    def labels(self) -> np.ndarray:
        """Predicted class per image."""
        return self.probabilities.argmax(axis=1)

    @property
    def entropy(self) -> np.ndarray:
        """Predictive entropy (nats) per image."""
        p = np.clip(self.probabilities, 1e-12, 1.0)
        return -(p * np.log(p)).sum(axis=1)


class VisionNet(nn.Module):
    """conv-pool-conv-pool-dense CNN for 28x28 images; `forward` returns (logits, embedding)."""

    def __init__(self, config: VisionConfig) -> None:
        super().__init__()
        w = config.width
        self.conv1 = nn.Conv2d(1, w, 3, padding=1)
        self.conv2 = nn.Conv2d(w, 2 * w, 3, padding=1)
        self.dense = nn.Linear(2 * w * 7 * 7, config.embedding_dim)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(config.embedding_dim, config.num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate-layer embedding (before dropout)."""
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return F.relu(self.dense(x.flatten(1)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embedding = self.embed(x)
        return self.classifier(self.dropout(embedding)), embedding


class HeadNet(nn.Module):
    """The trainable part on a pretrained trunk: [last block] -> dense -> dropout -> classifier.

    `forward` takes trunk outputs (cached) and returns (logits, embedding) like `VisionNet`.
    """

    def __init__(self, config: VisionConfig, tail: nn.Module | None) -> None:
        super().__init__()
        self.tail = tail
        self.dense = nn.Linear(config.spec.feature_dim, config.embedding_dim)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(config.embedding_dim, config.num_classes)

    def train(self, mode: bool = True) -> HeadNet:
        super().train(mode)
        if self.tail is not None:
            self.tail.eval()  # batch-norm statistics stay ImageNet's; only weights are tuned
        return self

    def embed(self, z: torch.Tensor) -> torch.Tensor:
        """The embedding (before dropout) of trunk outputs."""
        if self.tail is not None:
            z = self.tail(z)
        return F.relu(self.dense(z))

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embedding = self.embed(z)
        return self.classifier(self.dropout(embedding)), embedding


def as_tensor(images: np.ndarray, spec: BackboneSpec | None = None) -> torch.Tensor:
    """uint8 N x H x W (gray) or N x H x W x 3 (RGB) -> float N x C x H x W, scaled for `spec`
    (default: small-cnn, gray in [0, 1])."""
    spec = spec or backbone_spec("small-cnn")
    if images.dtype != np.uint8 or images.ndim != (3 if spec.channels == 1 else 4):
        raise DataError(f"{spec.name} expects uint8 N x H x W"
                        f"{'' if spec.channels == 1 else ' x 3'} images, got "
                        f"{images.dtype} {images.shape}")
    x = torch.from_numpy(np.ascontiguousarray(images))
    x = x.unsqueeze(1) if spec.channels == 1 else x.permute(0, 3, 1, 2)
    return x.float().sub_(spec.offset).div_(spec.scale)


class VisionModel:
    """A `VisionNet` with its config: train, fine-tune, predict, and (de)serialize."""

    def __init__(self, config: VisionConfig, seed: int) -> None:
        self.config = config
        self.spec = config.spec
        self.trunk: FrozenTrunk | None = None
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.net: VisionNet | HeadNet
            if self.spec.pretrained:
                self.trunk = shared_trunk(config.backbone, config.fine_tune_last_block)
                self.net = HeadNet(config, self.trunk.tail())
            else:
                self.net = VisionNet(config)
        self.net.eval()

    def inputs(self, images: np.ndarray) -> torch.Tensor:
        """What `net` takes for these images: pixels scaled for the backbone, or the frozen
        trunk's (cached) outputs."""
        if self.trunk is None:
            return as_tensor(images, self.spec)
        side = self.config.image_spec.side
        if images.ndim != 4 or images.shape[1:3] != (side, side):
            raise DataError(f"{self.spec.name} expects uint8 N x {side} x {side} x 3 images, "
                            f"got {images.dtype} {images.shape}")
        return self.trunk(images, lambda batch: as_tensor(batch, self.spec))

    @torch.no_grad()
    def features(self, images: np.ndarray) -> torch.Tensor:
        """Backbone features for OoD detection: the pretrained trunk's pooled output (never
        changed by training), or the embedding for a backbone trained from scratch."""
        if self.trunk is None:
            return self.embed(images)
        return self.trunk.pooled(self.inputs(images))

    def train(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        *,
        epochs: int,
        seed: int,
        samples_per_epoch: int = 0,
        learning_rate: float = 0.0,
    ) -> float:
        """Train for `epochs` epochs on (images, labels); returns the last epoch's mean loss.

        An epoch draws `samples_per_epoch` images (0: as many as there are), class-balanced with
        replacement when `config.balanced`, else a permutation.
        """
        if len(images) != len(labels):
            raise DataError(f"{len(images)} images but {len(labels)} labels")
        if len(images) == 0 or epochs <= 0:
            return float("nan")
        if labels.min() < 0 or labels.max() >= self.config.num_classes:
            raise DataError(f"labels must lie in 0..{self.config.num_classes - 1}")
        x, y = self.inputs(images), torch.from_numpy(labels.astype(np.int64))
        lr = learning_rate or self.config.learning_rate
        optimizer = torch.optim.Adam([p for p in self.net.parameters() if p.requires_grad], lr=lr)
        generator = torch.Generator().manual_seed(seed)
        loss_sum, batches = 0.0, 0
        self.net.train()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # dropout masks
            weights = self._sample_weights(y)
            draws = samples_per_epoch or len(y)
            for _ in range(epochs):
                if weights is None:
                    order = torch.randperm(len(y), generator=generator)[:draws]
                else:
                    order = torch.multinomial(weights, draws, replacement=True, generator=generator)
                loss_sum, batches = 0.0, 0
                # over the draws, not the data: past `draws` a batch would be empty (NaN loss,
                # and an Adam step driven by momentum alone)
                for start in range(0, len(order), self.config.batch_size):
                    batch = order[start : start + self.config.batch_size]
                    logits, _ = self.net(x[batch])
                    loss = F.cross_entropy(logits, y[batch])
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    loss_sum, batches = loss_sum + float(loss.detach()), batches + 1
        self.net.eval()
        return loss_sum / max(batches, 1)

    def _sample_weights(self, labels: torch.Tensor) -> torch.Tensor | None:
        if not self.config.balanced:
            return None
        counts = torch.bincount(labels, minlength=self.config.num_classes).double()
        return counts.clamp_min(1.0).pow(-self.config.balance_power)[labels]

    @torch.no_grad()
    def embed(self, images: np.ndarray) -> torch.Tensor:
        """Embeddings as a float tensor (eval mode, batched)."""
        return self._embed_inputs(self.inputs(images))

    def _embed_inputs(self, x: torch.Tensor) -> torch.Tensor:
        parts = [
            self.net.embed(x[s : s + self.config.eval_batch_size])
            for s in range(0, len(x), self.config.eval_batch_size)
        ]
        return torch.cat(parts) if parts else torch.zeros(0, self.config.embedding_dim)

    @torch.no_grad()
    def pyramid(self, images: np.ndarray) -> torch.Tensor:
        """Features at every depth of a frozen pretrained trunk: its style statistics per stage
        (`FrozenTrunk.style`) and its unit-length pooled features; for a backbone trained from
        scratch, the unit-length embedding."""
        pooled = F.normalize(self.features(images), dim=1) if len(images) else None
        if self.trunk is None:
            return pooled if pooled is not None else torch.zeros(0, self.config.embedding_dim)
        if pooled is None:
            return torch.zeros(0, self.trunk.style_dim + self.spec.feature_dim)
        style = self.trunk.style(images, lambda batch: as_tensor(batch, self.spec))
        return torch.cat([style, pooled], dim=1)

    @property
    def descriptor_dim(self) -> int:
        """Length of `Prediction.descriptor` (0: no descriptor, a backbone trained from scratch)."""
        return 0 if self.trunk is None else self.spec.feature_dim

    @torch.no_grad()
    def predict(self, images: np.ndarray) -> Prediction:
        """Logits, softmax probabilities, embeddings and, with a frozen pretrained trunk, its
        unit-length pooled features (deterministic, dropout off)."""
        x = self.inputs(images)
        embedding = self._embed_inputs(x)
        logits = self.net.classifier(embedding)
        descriptor = None
        if self.trunk is not None:
            pooled = self.trunk.pooled(x) if len(images) else torch.zeros(0, self.descriptor_dim)
            descriptor = F.normalize(pooled, dim=1).numpy()
        return Prediction(logits.numpy(), torch.softmax(logits, dim=1).numpy(), embedding.numpy(),
                          descriptor)

    @torch.no_grad()
    def sample_probabilities(self, images: np.ndarray, samples: int, seed: int) -> np.ndarray:
        """MC-dropout: `samples` x N x C softmax outputs with dropout on before the classifier.

        The conv trunk has no dropout, so it runs once and only the head is resampled.
        """
        embedding = self.embed(images)
        generator = torch.Generator().manual_seed(seed)
        keep = 1.0 - self.config.dropout
        out = []
        for _ in range(samples):
            mask = (torch.rand(embedding.shape, generator=generator) < keep).float() / keep
            out.append(torch.softmax(self.net.classifier(embedding * mask), dim=1))
        return torch.stack(out).numpy()

    def accuracy(self, images: np.ndarray, labels: np.ndarray) -> float:
        """Fraction of images whose predicted class equals the label."""
        if len(labels) == 0:
            return float("nan")
        return float((self.predict(images).labels == labels).mean())

    def state_bytes(self) -> bytes:
        """The weights as bytes (torch.save of the state_dict); see `load_state_bytes`."""
        buffer = io.BytesIO()
        torch.save(self.net.state_dict(), buffer)
        return buffer.getvalue()

    def load_state_bytes(self, data: bytes) -> None:
        """Replace the weights with those from `state_bytes` of a model of the same config.

        Raises:
            DataError: the bytes are not a state dict of this architecture.
        """
        try:
            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
            self.net.load_state_dict(state)
        except Exception as exc:  # torch raises many types for bad bytes or mismatched shapes
            raise DataError(f"vision model state does not fit this model: {exc}") from None
        self.net.eval()

    def copy(self) -> VisionModel:
        """An independent copy with the same weights."""
        twin = VisionModel(self.config, seed=0)  # the frozen trunk is shared, not copied
        twin.net.load_state_dict(self.net.state_dict())
        return twin
