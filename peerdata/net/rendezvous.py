"""Rendezvous discovery (libp2p's `/rendezvous/1.0.0`, shipped in py-libp2p 0.8.1): robots on
different networks find each other through a rendezvous point that every one of them can
reach, with no bootstrap list naming the others.

Rule: a robot with `net.rendezvous` set registers its listen addresses under
`net.rendezvous_namespace` at that point and asks it for the namespace's other registrations
every `net.rendezvous_refresh_s`; each address found goes to `found` (the node dials it as it
dials mDNS finds: through its dialer, with the fleet's membership checks). A robot with
`net.rendezvous_serve` is a rendezvous point. Whatever fails (point unreachable, refusing, a
bad answer) is logged and tried again after a back-off; it never stops the node. The point is
a peer like any other: at most MAX_FOUND registrations are read per ask.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio
from libp2p.abc import IHost
from libp2p.discovery.rendezvous import RendezvousClient, RendezvousService
from libp2p.discovery.rendezvous.config import MIN_TTL
from libp2p.peer.peerinfo import info_from_p2p_addr
from multiaddr import Multiaddr

from peerdata.config import NetConfig

logger = logging.getLogger("peerdata.net")

MAX_FOUND = 100  # registrations read per ask


def serve_rendezvous(host: IHost) -> RendezvousService:
    """Make this host a rendezvous point (it serves `/rendezvous/1.0.0` from now on)."""
    return RendezvousService(host)


async def run_rendezvous_client(host: IHost, net: NetConfig, found: Callable[[str], None]
                                ) -> None:
    """Register at `net.rendezvous` and report the namespace's other peers, until cancelled."""
    me = host.get_id()
    point = info_from_p2p_addr(Multiaddr(net.rendezvous))
    ttl = max(MIN_TTL, int(3 * net.rendezvous_refresh_s))
    backoff = net.reconnect_initial_s
    while True:
        try:
            with trio.fail_after(net.connect_timeout_s):
                await host.connect(point)
            client = RendezvousClient(host, point.peer_id)
            with trio.fail_after(net.request_timeout_s):
                await client.register(net.rendezvous_namespace, ttl)
                peers, _cookie = await client.discover(net.rendezvous_namespace, MAX_FOUND)
        except Exception as exc:  # libp2p raises many kinds; each one is a failed attempt
            logger.warning("rendezvous at %s failed: %s: %s", net.rendezvous,
                           type(exc).__name__, str(exc)[:200])
            await trio.sleep(backoff)
            backoff = min(2 * backoff, net.reconnect_max_s)
            continue
        backoff = net.reconnect_initial_s
        for info in peers[:MAX_FOUND]:
            if info.peer_id == me:
                continue
            pid = info.peer_id.to_base58()
            for addr in info.addrs:
                text = str(addr)
                found(text if "/p2p/" in text else f"{text}/p2p/{pid}")
        await trio.sleep(net.rendezvous_refresh_s)
