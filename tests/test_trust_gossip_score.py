"""GossipSub's peer score on real py-libp2p 0.8.1 hosts (127.0.0.1): the application score
(the vote reputation) graylists a lying member, so nothing we publish goes to it; a peer that
sends invalid messages has its later messages dropped unvalidated until its record decays."""

from __future__ import annotations

import trio

from peerdata.config import LimitsConfig, NetConfig
from peerdata.net.gossip import GRAYLIST_THRESHOLD, PUBLISH_THRESHOLD
from peerdata.net.libp2p_transport import Libp2pTransport, open_libp2p_transport

NET = NetConfig(connect_timeout_s=5.0, gossip_heartbeat_s=0.5)
TOPIC = "t"


async def _until_received(sender: Libp2pTransport, inbox: trio.MemoryReceiveChannel,  # type: ignore[type-arg]
                          prefix: bytes) -> list[bytes]:
    """Publish `prefix`-i until `inbox` gets one of them (best effort: the subscription may
    still be propagating); return every payload the inbox gave until then."""
    seen: list[bytes] = []
    for i in range(200):
        await sender.publish(TOPIC, prefix + b"-%d" % i)
        with trio.move_on_after(0.3):
            while True:
                data = bytes((await inbox.receive()).data)
                seen.append(data)
                if data.startswith(prefix):
                    return seen
    raise AssertionError(f"{prefix!r} never arrived")


async def test_a_graylisted_liar_gets_nothing_we_publish() -> None:
    with trio.fail_after(60):
        async with open_libp2p_transport(b"\x01" * 32, NET, LimitsConfig()) as hub, \
                open_libp2p_transport(b"\x02" * 32, NET, LimitsConfig()) as honest, \
                open_libp2p_transport(b"\x03" * 32, NET, LimitsConfig()) as liar:
            assert isinstance(hub, Libp2pTransport)
            at_honest, at_liar = honest.subscribe(TOPIC), liar.subscribe(TOPIC)
            hub.subscribe(TOPIC)
            await honest.connect(hub.listen_addrs()[0])
            await liar.connect(hub.listen_addrs()[0])  # the two reach each other only via hub
            await _until_received(hub, at_honest, b"before")
            await _until_received(hub, at_liar, b"before")
            kappa = {honest.peer_id: 0.9, liar.peer_id: -0.9}  # an inverter's reputation
            hub.set_gossip_score(lambda peer: kappa.get(peer, 0.0))
            assert hub._gossip.peer_score(liar.peer_id, TOPIC) < GRAYLIST_THRESHOLD
            assert hub._gossip.peer_score(honest.peer_id, TOPIC) > 0
            await _until_received(hub, at_honest, b"graylisted")  # the honest peer still gets it
            for i in range(5):
                await hub.publish(TOPIC, b"graylisted-more-%d" % i)
            # one ordered stream from hub to liar: once its score is restored, the first
            # message of the new kind it gets is preceded by none of the graylisted ones
            kappa[liar.peer_id] = 0.5
            got = await _until_received(hub, at_liar, b"restored")
            assert not any(p.startswith(b"graylisted") for p in got), got


async def test_invalid_messages_close_the_publish_gate_until_they_decay() -> None:
    with trio.fail_after(60):
        async with open_libp2p_transport(b"\x04" * 32, NET, LimitsConfig()) as hub, \
                open_libp2p_transport(b"\x05" * 32, NET, LimitsConfig()) as spammer:
            assert isinstance(hub, Libp2pTransport)
            validated: list[bytes] = []
            bad_seen = trio.Event()

            def validate(_sender: str, data: bytes) -> bool:
                validated.append(bytes(data))
                if sum(d.startswith(b"bad") for d in validated) > -PUBLISH_THRESHOLD:
                    bad_seen.set()
                return not data.startswith(b"bad")

            hub.set_gossip_validator(TOPIC, validate)
            inbox = hub.subscribe(TOPIC)
            spammer.subscribe(TOPIC)
            await spammer.connect(hub.listen_addrs()[0])
            await _until_received(spammer, inbox, b"hello")
            for i in range(int(-PUBLISH_THRESHOLD) + 2):
                await spammer.publish(TOPIC, b"bad-%d" % i)
            await bad_seen.wait()
            assert hub._gossip.peer_score(spammer.peer_id, TOPIC) < PUBLISH_THRESHOLD
            # its valid messages are now dropped before validation, in order on one stream,
            # until the invalid record decays (2% a heartbeat) above the threshold
            got = await _until_received(spammer, inbox, b"good")
            first = int(got[-1].rsplit(b"-", 1)[1])
            assert first > 0 and b"good-0" not in validated
            assert [d for d in validated if d.startswith(b"good")][0] == got[-1]
