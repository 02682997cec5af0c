"""Build and run a libp2p host the way peerdata needs it: Noise only, yamux, one link a peer.

Rule: every libp2p construction choice (security, muxer, connection limits) is made here and
nowhere else, so a reviewer checks one function to know that nothing travels in the clear.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import libp2p
import trio
from libp2p.abc import IHost, ISecureTransport
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.keys import KeyPair
from libp2p.crypto.x25519 import create_new_key_pair as create_new_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.network.config import ConnectionConfig
from libp2p.peer.id import ID
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux
from multiaddr import Multiaddr

from peerdata.config import NetConfig
from peerdata.errors import IdentityError, TransportError
from peerdata.net.buffered_tcp import BufferedTCP

ED25519_SEED_BYTES = 32
CLOSE_TIMEOUT_S = 5.0  # closing links and listeners on shutdown; loopback takes ~ms


def key_pair_from_seed(private_key_bytes: bytes) -> KeyPair:
    """Return the libp2p Ed25519 key pair for a raw 32-byte seed (our identity file's key)."""
    if len(private_key_bytes) != ED25519_SEED_BYTES:
        raise IdentityError(
            f"node key must be a {ED25519_SEED_BYTES}-byte Ed25519 seed, "
            f"got {len(private_key_bytes)} bytes"
        )
    return create_new_key_pair(private_key_bytes)


def peer_id_from_seed(private_key_bytes: bytes) -> str:
    """Return the base58 peer ID that a host built from this seed will have."""
    return ID.from_pubkey(key_pair_from_seed(private_key_bytes).public_key).to_base58()


def connection_config(net: NetConfig) -> ConnectionConfig:
    """Connection-manager settings: one connection a peer, dials bounded by our timeout.

    With the default (3 connections a peer) the dialer waits a fixed ~250 ms for more
    connections before returning; with 1 a dial on loopback takes ~10 ms.
    """
    return ConnectionConfig(
        max_connections_per_peer=1,
        dial_timeout=net.connect_timeout_s,
        outbound_upgrade_timeout=net.connect_timeout_s,
        inbound_upgrade_timeout=net.connect_timeout_s,
    )


def build_host(key_pair: KeyPair, net: NetConfig, *, secure: bool = True) -> IHost:
    """Return an unstarted host. `secure=False` exists only so tests can prove it is refused."""
    sec_opt: dict[TProtocol, ISecureTransport]
    if secure:
        sec_opt = {
            NOISE_PROTOCOL_ID: NoiseTransport(
                key_pair, noise_privkey=create_new_x25519_key_pair().private_key
            )
        }
    else:
        from libp2p.security.insecure.transport import PLAINTEXT_PROTOCOL_ID, InsecureTransport

        sec_opt = {TProtocol(PLAINTEXT_PROTOCOL_ID): InsecureTransport(key_pair)}
    return libp2p.new_host(
        key_pair=key_pair,
        sec_opt=sec_opt,
        muxer_opt={TProtocol(YAMUX_PROTOCOL_ID): Yamux},
        listen_addrs=[Multiaddr(a) for a in net.listen],
        connection_config=connection_config(net),
        transports=[BufferedTCP()],  # TCP only; see buffered_tcp.py for why it is buffered
        enable_mDNS=net.mdns,  # advertise and browse _p2p._udp.local (libp2p's mDNS spec)
    )


@asynccontextmanager
async def run_host(host: IHost, net: NetConfig) -> AsyncIterator[IHost]:
    """Listen on `net.listen` for the duration of the block.

    `host.run` is entered directly, never from a nursery task (libp2p issue #1071).
    """
    async with AsyncExitStack() as stack:
        try:
            addrs = [Multiaddr(a) for a in net.listen]
            await stack.enter_async_context(host.run(listen_addrs=addrs))
        except OSError as exc:
            raise TransportError(f"cannot listen on {', '.join(net.listen)}: {exc}") from exc
        # libp2p's auto-connector dials every peerstore address until it holds 150 links, and
        # again after each disconnect. Which peers to keep linked is the node's decision
        # (bootstrap list, back-off from NetConfig), so it is switched off.
        await host.get_network().auto_connector.stop()  # type: ignore[attr-defined]
        try:
            yield host
        finally:
            # Leaving host.run() only cancels the swarm's tasks; the TCP listener lives in a
            # system task and keeps its socket until host.close() closes it explicitly.
            with trio.move_on_after(CLOSE_TIMEOUT_S) as scope:
                scope.shield = True
                await host.close()
