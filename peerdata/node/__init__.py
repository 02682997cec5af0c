"""The node: services of one robot in one nursery (`open_node`)."""

from peerdata.node.node import Node, NodeStats, PeerView, open_node
from peerdata.node.share import ReceivedImage, ShareService, ShareStats

__all__ = ["Node", "NodeStats", "PeerView", "ReceivedImage", "ShareService", "ShareStats",
           "open_node"]
