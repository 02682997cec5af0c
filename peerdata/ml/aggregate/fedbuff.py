"""Buffered asynchronous aggregation (FedBuff: Nguyen et al., 2022) with staleness weighting.

Rule: updates arrive one at a time, each a delta against the global version its sender started
from; the `buffer_size`-th one triggers a step: the global model moves by `server_lr` times the
weighted mean of the buffered deltas, each weighted by its sample count times
`(1 + staleness) ** -staleness_exponent`, where staleness is how many versions the global model
moved since the sender pulled it. Nobody waits for a slow robot; a slow robot's late update
still counts, for less. Pure torch, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from peerdata.ml.aggregate.base import AggregationError, StateDict, is_float


@dataclass
class FedBuff:
    """The asynchronous server state: the global model, its version, and the buffer."""

    global_state: StateDict
    buffer_size: int = 3
    server_lr: float = 1.0
    staleness_exponent: float = 0.5
    max_staleness: int = 20  # older updates are dropped, not applied
    version: int = 0
    _buffer: list[tuple[StateDict, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.buffer_size < 1 or self.server_lr <= 0 or self.staleness_exponent < 0:
            raise AggregationError("fedbuff: buffer_size >= 1, server_lr > 0, exponent >= 0")

    def staleness_weight(self, base_version: int) -> float:
        """`(1 + s) ** -a` for an update started from `base_version` (0 when too stale)."""
        staleness = self.version - base_version
        if staleness < 0:
            raise AggregationError(f"update from version {base_version} > ours {self.version}")
        if staleness > self.max_staleness:
            return 0.0
        return float((1 + staleness) ** -self.staleness_exponent)

    def submit(self, state: Mapping[str, torch.Tensor], base: Mapping[str, torch.Tensor],
               base_version: int, num_samples: int) -> bool:
        """Buffer `state - base`; return True when this update completed a step."""
        weight = num_samples * self.staleness_weight(base_version)
        if weight <= 0:
            return False
        delta = {k: (v.to(torch.float32) - base[k].to(torch.float32)) for k, v in state.items()
                 if is_float(v)}
        self._buffer.append((delta, weight))
        if len(self._buffer) < self.buffer_size:
            return False
        total = sum(w for _, w in self._buffer)
        new: StateDict = {}
        for k, v in self.global_state.items():
            if not is_float(v):
                new[k] = v.clone()
                continue
            step = sum(w * d[k] for d, w in self._buffer) / total
            new[k] = (v.to(torch.float32) + self.server_lr * step).to(v.dtype)
        self.global_state, self.version = new, self.version + 1
        self._buffer = []
        return True
