"""The receive boundary for model updates: nothing a peer sent reaches a model unchecked.

Rule: `UpdateValidator.check` is the one place received ModelUpdate bytes become a state dict.
It refuses, with one clear reason per update, anything oversized, malformed, unsigned or signed
by someone other than the transport-level sender, from another round or base version, of another
kind, shaped unlike our model, or holding NaN/Inf; `screen` logs each refusal and drops it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import torch

from peerdata.errors import RemoteProtocolError
from peerdata.federated.tensors import state_from_blobs
from peerdata.ml.aggregate import StateDict
from peerdata.wire.model_update import ModelUpdate, decode_model_update, verify_model_update

logger = logging.getLogger("peerdata.federated")

MAX_CLAIMED_SAMPLES = 10_000_000  # a peer claiming more is lying or misconfigured


@dataclass(frozen=True)
class Expectation:
    """What this round will accept: its ID, the base version deltas apply to, and the kinds."""

    round_id: int
    base_version: int
    kinds: frozenset[str]
    max_bytes: int


@dataclass(frozen=True)
class ReceivedUpdate:
    """A verified update, decoded into a full state dict shaped like our model."""

    peer: str
    state: StateDict
    num_samples: int
    label_counts: tuple[int, ...]
    tag: str
    kind: str
    base_version: int
    wire_bytes: int


@dataclass(frozen=True)
class Rejection:
    """An update left out of the round, and why (also logged)."""

    peer: str
    reason: str


class EarlyUpdate(RemoteProtocolError):
    """An update for the next round: its sender's clock runs ahead (within tolerance), so it
    is held for that round rather than refused."""


Hold = Callable[[str, bytes], None]
"""Keep (sender, payload) for the next round."""


class UpdateValidator:
    """Check received updates against our model's shapes and, for deltas, its current weights."""

    def __init__(self, reference: Mapping[str, torch.Tensor]) -> None:
        self._reference = {k: v.detach().clone() for k, v in reference.items()}

    def check(self, peer: str, payload: bytes, expect: Expectation) -> ReceivedUpdate:
        """Decode, verify and convert one update that `peer` sent us.

        Raises:
            RemoteProtocolError: (or its SignatureError) naming the first thing wrong.
        """
        msg = self._open(peer, payload, expect, "update")
        if not 0 < msg.num_samples <= MAX_CLAIMED_SAMPLES:
            raise RemoteProtocolError(
                f"num_samples {msg.num_samples} outside 1..{MAX_CLAIMED_SAMPLES}"
            )
        base = self._reference if msg.is_delta else None
        state = state_from_blobs(msg.tensors, self._reference, base)
        return ReceivedUpdate(peer, state, msg.num_samples, msg.label_counts, msg.tag, msg.kind,
                              msg.base_version, len(payload))

    @staticmethod
    def check_plan(peer: str, payload: bytes, expect: Expectation) -> tuple[int, ...]:
        """Decode and verify a multi-tier plan message; return the sender's label counts.

        Raises:
            RemoteProtocolError: as `check`, or no label counts.
        """
        msg = UpdateValidator._open(peer, payload, expect, "plan")
        if not msg.label_counts or not 0 < sum(msg.label_counts) <= MAX_CLAIMED_SAMPLES:
            raise RemoteProtocolError("plan without label counts, or claiming too many samples")
        return msg.label_counts

    @staticmethod
    def _open(peer: str, payload: bytes, expect: Expectation, what: str) -> ModelUpdate:
        """Decode `payload`, check that `peer` signed it and that `expect` wants it now."""
        msg = decode_model_update(payload, expect.max_bytes)
        if msg.sender != peer:
            raise RemoteProtocolError(f"{what} names sender {msg.sender}, but {peer} sent it")
        verify_model_update(msg)
        if msg.round_id == expect.round_id + 1:
            raise EarlyUpdate(f"update for round {msg.round_id}, one ahead of {expect.round_id}")
        if msg.round_id != expect.round_id:
            raise RemoteProtocolError(f"update for round {msg.round_id}, this is {expect.round_id}")
        if msg.kind not in expect.kinds:
            raise RemoteProtocolError(f"update of kind {msg.kind!r} not expected now")
        if msg.is_delta and msg.base_version != expect.base_version:
            raise RemoteProtocolError(
                f"delta against model version {msg.base_version}, ours is {expect.base_version}"
            )
        return msg

    def screen(
        self, received: Iterable[tuple[str, bytes]], expect: Expectation,
        allowed: frozenset[str] | None = None, already: frozenset[str] = frozenset(),
        hold: Hold | None = None,
    ) -> tuple[list[ReceivedUpdate], list[Rejection]]:
        """Check every (peer, payload); keep the first valid update per peer, log the rest.

        `allowed`, when given, is the set of peers this round listens to; `already` holds
        peers whose update was accepted by an earlier call in the same round; `hold`, when
        given, keeps updates for the next round (see `EarlyUpdate`) instead of refusing them.
        """
        accepted: dict[str, ReceivedUpdate] = {}
        rejected: list[Rejection] = []
        for peer, payload in received:
            reason: str | None = None
            try:
                if allowed is not None and peer not in allowed:
                    if hold is not None:  # a round early, it may be for us next round
                        self.check(peer, payload, expect)
                    reason = "not a participant of this round"
                elif peer in accepted or peer in already:
                    reason = "second update in one round"
                else:
                    accepted[peer] = self.check(peer, payload, expect)
            except EarlyUpdate as exc:
                if hold is None:
                    reason = str(exc)
                else:
                    hold(peer, payload)
            except RemoteProtocolError as exc:
                reason = reason or str(exc)
            if reason is not None:
                logger.warning("model update from %s rejected: %s", peer, reason)
                rejected.append(Rejection(peer, reason))
        return list(accepted.values()), rejected
