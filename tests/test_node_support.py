"""Support for node tests (no tests here): nodes on a MemoryNetwork, SqliteStores in temporary
homes, no threads."""

from __future__ import annotations

import os
import tempfile
from contextlib import AsyncExitStack, ExitStack
from dataclasses import dataclass
from pathlib import Path

from peerdata.config import LimitsConfig, NetConfig, NodeConfig, TrustConfig
from peerdata.identity import Identity
from peerdata.node.node import Node, Offload, inline_offload, open_node
from peerdata.store import Provenance, Sample, SqliteStore, Store
from peerdata.testing.memory_network import MemoryNetwork, MemoryTransport

NOWHERE = Path("/nonexistent-peerdata-home")


RAM_DIR = "/dev/shm" if os.path.isdir("/dev/shm") else None  # fsync is free on tmpfs


def temp_store(stack: ExitStack | AsyncExitStack) -> Store:
    """A SqliteStore in a temporary home (in RAM where the OS has one), closed and removed
    with `stack`."""
    home = stack.enter_context(tempfile.TemporaryDirectory(prefix="peerdata-store-", dir=RAM_DIR))
    return stack.enter_context(SqliteStore.open(Path(home)))


def addr_of(peer_id: str) -> str:
    """The MemoryNetwork address of a peer."""
    return f"/memory/{peer_id}/p2p/{peer_id}"


@dataclass
class Started:
    node: Node
    store: Store
    identity: Identity


async def start_node(stack: AsyncExitStack, network: MemoryNetwork, name: str,
                     bootstrap: tuple[str, ...] = (), store: Store | None = None,
                     identity: Identity | None = None, net: NetConfig | None = None,
                     limits: LimitsConfig | None = None,
                     trust: TrustConfig | None = None, offload: Offload = inline_offload
                     ) -> Started:
    """Open a node on `network` for the lifetime of `stack`."""
    identity = identity or Identity.generate()
    store = store or temp_store(stack)
    net = net or NetConfig()
    config = NodeConfig(name=name, net=NetConfig(**{**net.__dict__, "bootstrap": bootstrap}),
                        limits=limits or network.limits, trust=trust or TrustConfig())
    transport = await stack.enter_async_context(network.open_transport(identity.peer_id))
    node = await stack.enter_async_context(open_node(
        NOWHERE, config, identity=identity, store=store, transport=transport,
        wall_clock=lambda: 1_700_000_000.0, offload=offload))
    return Started(node, store, identity)


async def raw_peer(stack: AsyncExitStack, network: MemoryNetwork) -> MemoryTransport:
    """A bare transport with a valid peer ID (a hand-driven, possibly misbehaving peer)."""
    return await stack.enter_async_context(network.open_transport(Identity.generate().peer_id))


def add_local(store: Store, data: bytes, label: int | None = 1,
              provenance: Provenance = "filtered") -> bytes:
    """Store `data` as a local sample (by default as a privacy-filter output, which may leave
    the robot; "local" = raw, which may not); return its cid."""
    cid = store.put_blob(data, provenance)
    store.add_sample(Sample(cid=cid, source="local", label=label, origin=None, domain=None,
                            prediction=None, confidence=None, embedding=None,
                            observed_round=0, created_at=0.0))
    return cid


def png(n: int, size: int = 100) -> bytes:
    """Fake PNG bytes (PNG magic + unique body); the node never decodes images."""
    return b"\x89PNG\r\n\x1a\n" + n.to_bytes(4, "big") * (size // 4)
