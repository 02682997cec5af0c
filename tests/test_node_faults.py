"""A seeded lossy network (dropped, delayed, duplicated requests) under MockClock: re-offering
until done delivers every image exactly once, verified, with nothing half-stored."""

from __future__ import annotations

from contextlib import AsyncExitStack

import trio
import trio.testing
from test_node_support import Started, add_local, addr_of, png, start_node

from peerdata.errors import TransportError
from peerdata.testing.memory_network import Faults, MemoryNetwork


async def test_lossy_network_delivers_everything_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(3600):
        network = MemoryNetwork(seed=7)
        async with AsyncExitStack() as stack:
            nodes: list[Started] = [await start_node(stack, network, "r0")]
            for i in range(1, 4):
                nodes.append(await start_node(stack, network, f"r{i}",
                                              bootstrap=(addr_of(nodes[0].node.peer_id),)))
            for n in nodes:
                await n.node.wait_until(lambda s: s.peers_connected == 3)
            network.set_faults(requests=Faults(drop=0.15, duplicate=0.2, delay=0.3))
            own = {n.node.peer_id: [add_local(n.store, png(100 * i + k)) for k in range(3)]
                   for i, n in enumerate(nodes)}
            expected = 9  # 3 images from each of the 3 others
            failures = 0
            for _ in range(20):  # a "round": every robot re-offers everything to everyone
                for src in nodes:
                    for dst in nodes:
                        if dst is not src:
                            try:
                                await src.node.share.offer(dst.node.peer_id,
                                                           own[src.node.peer_id])
                            except TransportError:
                                failures += 1
                with trio.move_on_after(120):  # let queued fetches finish or time out
                    for n in nodes:
                        await n.node.wait_until(
                            lambda s: s.share.images_verified == expected)
                stats_all = [await n.node.statistics() for n in nodes]
                if all(st.share.images_verified == expected for st in stats_all):
                    break
            assert failures > 0  # the faults did bite
            for n in nodes:
                stats = await n.node.statistics()
                assert stats.share.images_verified == stats.samples_received == expected
                assert stats.share.images_rejected == 0
                for sample in n.store.list_samples(source="received"):
                    n.store.get_blob(sample.cid)  # verifies against the cid
