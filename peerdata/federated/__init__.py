"""Federated learning between peers: model-update exchange and the federated experiment.

Rule: this package is the bridge between `peerdata.ml.aggregate` (pure rules) and
`peerdata.wire.model_update` (pure messages); it reaches the network only through injected
async callables, and it never prints.
"""

from __future__ import annotations

from peerdata.federated.exchange import (
    Collect,
    FederatedPeer,
    LocalModel,
    RoundResult,
    SendUpdate,
    elect_aggregator,
)
from peerdata.federated.inbox import ModelInbox, transport_sender
from peerdata.federated.service import Federation, FederationStats, start_federation
from peerdata.federated.validate import Expectation, ReceivedUpdate, Rejection, UpdateValidator

__all__ = [
    "Collect",
    "Expectation",
    "Federation",
    "FederationStats",
    "FederatedPeer",
    "LocalModel",
    "ModelInbox",
    "ReceivedUpdate",
    "Rejection",
    "RoundResult",
    "SendUpdate",
    "UpdateValidator",
    "elect_aggregator",
    "start_federation",
    "transport_sender",
]
