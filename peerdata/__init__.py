"""peerdata: private, selective, peer-to-peer data sharing between robots."""

__version__ = "0.1.0"
