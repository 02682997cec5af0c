"""Bytes on the wire per round, counted from real signed ModelUpdate encodings.

Rule: nothing is estimated. Each transfer a strategy makes in a round is built as the message
the exchange would send (same identities, dtype, delta/full choice) and its encoded length is
summed, so "equal bytes per round" is a measurement, not an assumption.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from peerdata.federated.tensors import BlobOptions, blobs_from_state
from peerdata.identity import Identity
from peerdata.ml.aggregate import TierPlan
from peerdata.wire.model_update import encode_model_update, sign_model_update


@dataclass(frozen=True)
class Transfer:
    """One model sent from one peer to another: what kind, and relative to which base."""

    sender: str
    receiver: str
    kind: str  # update | global | seed
    state: Mapping[str, torch.Tensor]
    base: Mapping[str, torch.Tensor] | None  # None = full weights, else a delta against it


def robot_identity(index: int, seed: int = 0) -> Identity:
    """A deterministic identity for simulated robot `index`."""
    return Identity.from_private_bytes(hashlib.sha256(f"robot:{seed}:{index}".encode()).digest())


def star_transfers(aggregator: str, peers: Sequence[str],
                   updates: Mapping[str, Mapping[str, torch.Tensor]],
                   replies: Mapping[str, Mapping[str, torch.Tensor]],
                   base: Mapping[str, torch.Tensor]) -> list[Transfer]:
    """FedAvg-style round: each peer uploads a delta to the aggregator and gets a model back."""
    out: list[Transfer] = []
    for peer in peers:
        if peer == aggregator:
            continue
        out.append(Transfer(peer, aggregator, "update", updates[peer], base))
        out.append(Transfer(aggregator, peer, "global", replies[peer], None))
    return out


def multitier_transfers(aggregator: str, plan: TierPlan,
                        seeds: Mapping[str, Mapping[str, torch.Tensor]],
                        locals_: Mapping[str, Mapping[str, torch.Tensor]],
                        groups: Mapping[str, Mapping[str, torch.Tensor]],
                        new_global: Mapping[str, torch.Tensor],
                        base: Mapping[str, torch.Tensor]) -> list[Transfer]:
    """Multi-tier round: seed down and fine-tuned delta up for each low-tier peer, then group
    model up and global model down for each top-tier peer but the aggregator."""
    out: list[Transfer] = []
    for low, top in sorted(plan.leader.items()):
        out.append(Transfer(top, low, "seed", seeds[top], None))
        out.append(Transfer(low, top, "update", locals_[low], seeds[top]))
    for top in plan.top:
        if top != aggregator and top in groups:
            out.append(Transfer(top, aggregator, "update", groups[top], base))
            out.append(Transfer(aggregator, top, "global", new_global, None))
    return out


def transfer_bytes(transfers: Sequence[Transfer], identities: Mapping[str, Identity],
                   round_id: int, options: BlobOptions) -> int:
    """Sum of the encoded sizes of every transfer, signed by its sender."""
    total = 0
    for t in transfers:
        sparse = options if t.base is not None else BlobOptions(options.dtype)
        msg = sign_model_update(
            identities[t.sender], round_id=round_id, base_version=round_id, kind=t.kind,
            is_delta=t.base is not None, num_samples=1, label_counts=(0,) * 10, tag="",
            tensors=blobs_from_state(dict(t.state), sparse, t.base),
        )
        total += len(encode_model_update(msg))
    return total
