"""Federated learning between peers: model-update exchange and the federated experiment.

Rule: this package is the bridge between `peerdata.ml.aggregate` (pure rules) and
`peerdata.wire.model_update` (pure messages); it reaches the network only through injected
async callables, and it never prints.
"""

from peerdata.federated.exchange import FederatedPeer, LocalModel, RoundResult, elect_aggregator
from peerdata.federated.inbox import ModelInbox, transport_sender

__all__ = [
    "FederatedPeer",
    "LocalModel",
    "ModelInbox",
    "RoundResult",
    "elect_aggregator",
    "transport_sender",
]
