"""Fakes shipped with the package so higher layers can test without real networks or robots."""

from peerdata.testing.memory_network import Faults, MemoryNetwork, MemoryTransport

__all__ = ["Faults", "MemoryNetwork", "MemoryTransport"]
