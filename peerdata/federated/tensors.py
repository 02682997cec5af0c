"""State dicts <-> wire tensor blobs: dense float32/float16, or top-k sparsified deltas.

Rule: the only module where torch tensors meet wire types (`peerdata.ml` never sees a
TensorBlob, `peerdata.wire` never sees a tensor). Decoding trusts nothing: every blob is checked
against the reference model's names and shapes, and every value must be finite. A delta leaves
out every float tensor that did not change (a frozen backbone, for one: only the trained head
travels), so a delta's names are an in-order subset of the model's; a full model names all.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from peerdata.errors import LocalProtocolError, RemoteProtocolError
from peerdata.ml.aggregate import StateDict
from peerdata.wire.model_update import TensorBlob

_NUMPY: dict[str, np.dtype[Any]] = {
    "float32": np.dtype("<f4"), "float16": np.dtype("<f2"), "int64": np.dtype("<i8"),
}


@dataclass(frozen=True)
class BlobOptions:
    """How a state dict is put on the wire: value dtype, and the fraction of deltas kept."""

    dtype: str = "float32"  # float32 | float16 (integer buffers always travel as int64)
    topk_fraction: float = 1.0  # < 1 needs a base model: only the largest |delta| are sent

    def __post_init__(self) -> None:
        if self.dtype not in ("float32", "float16"):
            raise LocalProtocolError(f"update dtype must be float32 or float16, not {self.dtype}")
        if not 0 < self.topk_fraction <= 1:
            raise LocalProtocolError("topk_fraction must be in (0, 1]")


def _dense(name: str, t: torch.Tensor, dtype: str) -> TensorBlob:
    array = t.detach().cpu().contiguous().numpy().astype(_NUMPY[dtype])
    return TensorBlob(name=name, dtype=dtype, shape=tuple(int(d) for d in t.shape),
                      encoding="dense", data=array.tobytes(), indices=b"")


def _topk(name: str, delta: torch.Tensor, dtype: str, fraction: float) -> TensorBlob:
    flat = delta.detach().cpu().flatten().to(torch.float32)
    k = max(1, math.ceil(fraction * flat.numel())) if flat.numel() else 0
    index = (torch.topk(flat.abs(), k).indices.sort().values if k
             else torch.zeros(0, dtype=torch.long))
    values = flat[index].numpy().astype(_NUMPY[dtype])
    return TensorBlob(name=name, dtype=dtype, shape=tuple(int(d) for d in delta.shape),
                      encoding="topk", data=values.tobytes(),
                      indices=index.numpy().astype("<u4").tobytes())


def blobs_from_state(
    state: Mapping[str, torch.Tensor],
    options: BlobOptions,
    base: Mapping[str, torch.Tensor] | None = None,
) -> tuple[TensorBlob, ...]:
    """Encode `state` (or `state - base` when `base` is given) as wire blobs.

    Integer buffers always travel dense and whole (never as deltas).
    """
    if options.topk_fraction < 1 and base is None:
        raise LocalProtocolError("top-k sparsification needs a base model to take deltas from")
    blobs = []
    for name, t in state.items():
        if not torch.is_floating_point(t):
            blobs.append(_dense(name, t.to(torch.int64), "int64"))
            continue
        value = t if base is None else t.to(torch.float32) - base[name].to(torch.float32)
        if base is not None and not bool(value.any()):
            continue  # unchanged (frozen): the receiver keeps its own copy
        if options.topk_fraction < 1:
            blobs.append(_topk(name, value, options.dtype, options.topk_fraction))
        else:
            blobs.append(_dense(name, value, options.dtype))
    if not blobs and state:  # nothing changed: one zero delta (a message holds >= 1 tensor)
        name = next(iter(state))
        blobs.append(_dense(name, torch.zeros_like(state[name], dtype=torch.float32),
                            options.dtype))
    return tuple(blobs)


class ErrorFeedback:
    """What lossy encoding (top-k, float16) left out of our last deltas, added to the next one.

    Sparsified SGD with memory (Stich, Cordonnier and Jaggi, 2018): every coordinate's change
    reaches the receivers eventually, so top-k converges like the dense update instead of
    dropping the many small changes for good. The memory is our own, never sent.
    """

    def __init__(self) -> None:
        self._residual: dict[str, torch.Tensor] = {}

    def blobs(self, state: Mapping[str, torch.Tensor], options: BlobOptions,
              base: Mapping[str, torch.Tensor]) -> tuple[TensorBlob, ...]:
        """Encode `state - base` plus the remembered residual; remember what did not fit."""
        wanted = {k: v.to(torch.float32) + self._residual[k]
                  if k in self._residual and torch.is_floating_point(v) else v
                  for k, v in state.items()}
        blobs = blobs_from_state(wanted, options, base)
        sent = state_from_blobs(blobs, wanted, base)
        self._residual = {k: wanted[k].to(torch.float32) - sent[k].to(torch.float32)
                          for k, v in wanted.items() if torch.is_floating_point(v)}
        return blobs

    def norm(self) -> float:
        """Size of what is still owed (L2 over every tensor)."""
        return float(sum(float(r.pow(2).sum()) for r in self._residual.values())) ** 0.5


def _values(blob: TensorBlob) -> torch.Tensor:
    array = np.frombuffer(blob.data, dtype=_NUMPY[blob.dtype]).astype(
        np.int64 if blob.dtype == "int64" else np.float32
    )
    return torch.from_numpy(array.copy())


def state_from_blobs(
    blobs: Sequence[TensorBlob],
    reference: Mapping[str, torch.Tensor],
    base: Mapping[str, torch.Tensor] | None = None,
) -> StateDict:
    """Decode blobs received from a peer into a state dict shaped like `reference`.

    With `base`, float blobs are deltas added to it (top-k blobs must be deltas), and a float
    tensor left out is unchanged: it is taken from `base`.

    Raises:
        RemoteProtocolError: names differ from the reference (for a delta: are not an in-order
            subset holding every integer buffer), a shape or dtype kind differs, a value is NaN
            or infinite, or a sparse blob arrives without a base.
    """
    names = [b.name for b in blobs]
    if base is not None and names != list(reference):
        sent = set(names)
        kept = [k for k in reference if k in sent]
        if kept != names or any(not torch.is_floating_point(reference[k])
                                for k in reference if k not in sent):
            raise RemoteProtocolError(
                "delta tensor names are not an in-order subset of our model's (with every "
                "integer buffer)")
    elif names != list(reference):
        missing = sorted(set(reference) - set(names))
        extra = sorted(set(names) - set(reference))
        raise RemoteProtocolError(
            f"tensor names differ from our model (missing {missing[:5]}, unexpected {extra[:5]}"
            + (", or out of order)" if not missing and not extra else ")")
        )
    out: StateDict = {}
    for blob in blobs:
        ref = reference[blob.name]
        if blob.shape != tuple(ref.shape):
            raise RemoteProtocolError(
                f"tensor {blob.name} has shape {blob.shape}, our model has {tuple(ref.shape)}"
            )
        if (blob.dtype == "int64") == torch.is_floating_point(ref):
            raise RemoteProtocolError(f"tensor {blob.name}: dtype {blob.dtype} does not fit")
        values = _values(blob)
        if blob.dtype != "int64" and not bool(torch.isfinite(values).all()):
            raise RemoteProtocolError(f"tensor {blob.name} holds NaN or infinite values")
        if blob.encoding == "topk":
            if base is None:
                raise RemoteProtocolError(f"tensor {blob.name} is sparse but not a delta")
            index = torch.from_numpy(
                np.frombuffer(blob.indices, dtype="<u4").astype(np.int64)
            )
            dense = torch.zeros(blob.numel, dtype=torch.float32)
            dense[index] = values
            values = dense
        values = values.reshape(blob.shape)
        if base is not None and torch.is_floating_point(ref):
            values = base[blob.name].to(torch.float32) + values
            if not bool(torch.isfinite(values).all()):
                raise RemoteProtocolError(f"tensor {blob.name} overflows when applied")
        out[blob.name] = values.to(ref.dtype)
    if base is not None and len(out) < len(reference):
        out = {k: out[k] if k in out else base[k].detach().clone() for k in reference}
    return out


def state_bytes(blobs: Sequence[TensorBlob]) -> int:
    """Payload bytes of the tensors alone (values plus indices)."""
    return sum(len(b.data) + len(b.indices) for b in blobs)
