"""Fleet membership: certificates checked, non-members refused at their first message over real
libp2p, forged and non-member gossip not forwarded, revocations spread by gossip."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import replace
from pathlib import Path

import pytest
import trio

from peerdata.config import NetConfig
from peerdata.errors import ConfigError, RemoteProtocolError, TransportError
from peerdata.fleet import (
    CERT_FILE,
    Membership,
    init_authority,
    issue_certificate,
    join_fleet_config,
    load_membership,
    revoke,
    write_message,
)
from peerdata.identity import Identity
from peerdata.net.libp2p_transport import open_libp2p_transport
from peerdata.node.home import CONFIG_FILE, check_home, init_home
from peerdata.node.node import Node, open_node
from peerdata.wire import OfferItem, encode, sign_vote
from peerdata.wire.messages import Hello, content_id
from peerdata.wire.versions import HELLO_PROTOCOL, MEMBER_PROTOCOL, VOTES_TOPIC

NOW = 1_800_000_000.0
NET = NetConfig(connect_timeout_s=5.0, request_timeout_s=10.0, reconnect_initial_s=0.2,
                reconnect_max_s=0.5, gossip_heartbeat_s=0.2)


def _membership(authority: Identity, me: Identity, clock: list[float]) -> Membership:
    m = Membership("fleet", authority.peer_id, me.peer_id, lambda: clock[0])
    m.own_cert = issue_certificate(authority, me.peer_id, clock[0], 1)
    return m


def test_certificates_are_checked_for_peer_authority_signature_expiry_and_revocation(
    tmp_path: Path,
) -> None:
    authority, other_authority = init_authority(tmp_path / "fa"), Identity.generate()
    me, bob, eve = Identity.generate(), Identity.generate(), Identity.generate()
    clock = [NOW]
    m = _membership(authority, me, clock)
    good = issue_certificate(authority, bob.peer_id, NOW, 1)
    assert not m.is_member(bob.peer_id)
    for cert, why in ((good, "link is"),  # shown over eve's link
                      (issue_certificate(other_authority, eve.peer_id, NOW, 1), "not ours"),
                      (replace(issue_certificate(authority, eve.peer_id, NOW, 1),
                               expires_at=NOW + 10 * 86_400), "signature")):
        with pytest.raises(RemoteProtocolError, match=why):
            m.check_certificate(cert, eve.peer_id)
    m.check_certificate(good, bob.peer_id)
    assert m.is_member(bob.peer_id) and not m.is_member(eve.peer_id)
    clock[0] = NOW + 86_400 + 301  # past expiry and the skew allowance
    assert not m.is_member(bob.peer_id)
    with pytest.raises(RemoteProtocolError, match="expired"):
        m.check_certificate(good, bob.peer_id)
    clock[0] = NOW
    rl1 = revoke(tmp_path / "fa", authority, (bob.peer_id,), NOW)
    assert m.apply_revocations(rl1) and not m.is_member(bob.peer_id)
    with pytest.raises(RemoteProtocolError, match="revoked"):
        m.check_certificate(good, bob.peer_id)
    assert not m.apply_revocations(rl1)  # the same list again changes nothing
    forged = replace(rl1, serial=99)
    with pytest.raises(RemoteProtocolError, match="signature"):
        m.apply_revocations(forged)


def test_fleet_mode_needs_our_own_valid_certificate(tmp_path: Path) -> None:
    authority = init_authority(tmp_path / "fa")
    home = tmp_path / "r1"
    peer = init_home(home).peer_id
    assert join_fleet_config(home / CONFIG_FILE, authority.peer_id)
    identity, config = check_home(home)
    assert config.trust.membership == "fleet"
    with pytest.raises(ConfigError, match="no fleet certificate"):
        load_membership(home, config.trust, peer, lambda: NOW)
    write_message(home / CERT_FILE, issue_certificate(authority, peer, NOW, 1))
    assert load_membership(home, config.trust, peer, lambda: NOW).is_member(peer)
    with pytest.raises(ConfigError, match="expired"):
        load_membership(home, config.trust, peer, lambda: NOW + 3 * 86_400)


@asynccontextmanager
async def fleet_robot(base: Path, name: str, authority: Identity,
                      bootstrap: tuple[str, ...] = ()) -> AsyncIterator[Node]:
    home = base / name
    peer = init_home(home, name, bootstrap=bootstrap).peer_id
    assert join_fleet_config(home / CONFIG_FILE, authority.peer_id)
    write_message(home / CERT_FILE, issue_certificate(authority, peer, time.time(), 1))
    identity, config = check_home(home)
    config = replace(config, net=replace(NET, bootstrap=bootstrap))
    async with open_node(home, config, identity=identity) as node:
        yield node


async def test_a_stranger_is_refused_and_revocations_spread(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="peerdata")
    authority = init_authority(tmp_path / "fa")
    with trio.fail_after(60):
        async with AsyncExitStack() as stack:
            a = await stack.enter_async_context(fleet_robot(tmp_path, "a", authority))
            addr = a.transport.listen_addrs()[0]
            b = await stack.enter_async_context(fleet_robot(tmp_path, "b", authority, (addr,)))
            c = await stack.enter_async_context(fleet_robot(tmp_path, "c", authority, (addr,)))
            for node in (a, b, c):  # a introduces b and c; Hello comes after the certificates
                await node.wait_until(lambda s: sum(bool(p.connected and p.name)
                                                    for p in s.peers) == 2)
            assert a.membership.is_member(b.peer_id) and c.membership.is_member(b.peer_id)

            # A stranger (fresh key, Noise-authenticated) says Hello: refused, link dropped.
            eve = Identity.generate()
            stranger = await stack.enter_async_context(open_libp2p_transport(
                eve.private_key_bytes, NET, a.config.limits))
            await stranger.connect(addr)
            hello = Hello(protocol_version=1, peer_id=eve.peer_id, name="eve",
                          listen_addrs=(), agent="x", samples=0, round_id=0)
            with pytest.raises(TransportError):
                await stranger.request(a.peer_id, HELLO_PROTOCOL, encode(hello))
            assert any("event=refused_non_member" in r.getMessage() and eve.peer_id in
                       r.getMessage() for r in caplog.records)
            # Its certificate from another authority is refused as well.
            fake = issue_certificate(Identity.generate(), eve.peer_id, NOW, 1)
            with pytest.raises(TransportError):
                await stranger.request(a.peer_id, MEMBER_PROTOCOL, encode(fake))
            # We never offer to it, even if asked to.
            item = OfferItem(cid=content_id(b"x"), size=1, has_label=False, origin=a.peer_id,
                             origin_round=1, novel_votes=0, voters=(), hops=0)
            assert await a.share.offer_items(eve.peer_id, [item], 1) is None

            # A member's signed vote is delivered; a stranger's is not (nor forwarded).
            await stranger.connect(c.transport.listen_addrs()[0])
            await stranger.publish(VOTES_TOPIC, encode(sign_vote(
                eve, origin=a.peer_id, cid=b"\x01" * 32, round_id=1, novel=True, score=1.0,
                timestamp=NOW)))
            await b.transport.publish(VOTES_TOPIC, encode(sign_vote(
                b.identity, origin=a.peer_id, cid=b"\x02" * 32, round_id=1, novel=True,
                score=1.0, timestamp=NOW)))
            sender, vote = await a.gossip_inbox.receive()
            assert sender == b.peer_id and vote.cid == b"\x02" * 32

            # Revoke b at a; gossip carries it to c; both drop b.
            rl = revoke(tmp_path / "fa", authority, (b.peer_id,), NOW)
            assert await a.members.adopt(rl)
            await c.members.wait_serial(rl.serial)
            assert not c.membership.is_member(b.peer_id)
            assert (tmp_path / "c" / "fleet.revocations").exists()
            assert b.membership.own_cert is not None
            with pytest.raises(RemoteProtocolError, match="revoked"):
                a.membership.check_certificate(b.membership.own_cert, b.peer_id)
            await a.wait_until(lambda s: b.peer_id not in
                               {p.peer_id for p in s.peers if p.connected})


def test_fleet_cli_admits_into_a_home_and_revokes(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from peerdata.cli.main import _register_all, app

    _register_all()
    runner = CliRunner()

    def run(*args: str) -> dict[str, object]:
        result = runner.invoke(app, [*args, "--format", "json"])
        assert result.exit_code == 0, result.output
        return dict(json.loads(result.output.strip().splitlines()[-1]))

    authority = run("fleet", "init", "--authority", str(tmp_path / "fa"))["authority"]
    home = tmp_path / "r1"
    peer = run("init", "--home", str(home))["peer_id"]
    admitted = run("fleet", "admit", str(peer), "--authority", str(tmp_path / "fa"),
                   "--home", str(home))
    assert admitted["admitted"][0]["config_switched"]  # type: ignore[index]
    _, config = check_home(home)
    assert (config.trust.membership, config.trust.fleet_authority) == ("fleet", authority)
    assert load_membership(home, config.trust, str(peer), time.time).is_member(str(peer))
    revoked = run("fleet", "revoke", str(peer), "--authority", str(tmp_path / "fa"),
                  "--home", str(home))
    assert revoked["serial"] == 1 and revoked["homes"] == [
        {"home": str(home), "daemon_running": False}]
    with pytest.raises(ConfigError, match="revoked"):
        load_membership(home, config.trust, str(peer), time.time)
    bad = runner.invoke(app, ["fleet", "admit", "not-a-peer-id", "--authority",
                              str(tmp_path / "fa"), "--out", str(tmp_path)])
    assert bad.exit_code == 3 and "cannot admit" in bad.output


async def test_a_pre_shared_key_fences_the_fleet(tmp_path: Path) -> None:
    """py-libp2p's pnet: the same key connects, another key (or none) never gets to Noise."""
    from peerdata.config import LimitsConfig
    from peerdata.fleet import load_swarm_key, write_swarm_key

    key, other = "ab" * 32, "cd" * 32
    write_swarm_key(tmp_path, key)
    assert load_swarm_key(tmp_path) == key
    (tmp_path / "swarm.key").chmod(0o644)
    with pytest.raises(ConfigError, match="group or others"):
        load_swarm_key(tmp_path)
    net = replace(NET, connect_timeout_s=2.0)
    limits = LimitsConfig()

    async def echo(peer_id: str, payload: bytes) -> bytes:
        return payload

    with trio.fail_after(30):
        async with open_libp2p_transport(bytes([1]) * 32, net, limits, psk=key) as server:
            server.set_handler("/echo/1", echo)
            addr = server.listen_addrs()[0]
            async with open_libp2p_transport(bytes([2]) * 32, net, limits, psk=key) as friend:
                await friend.connect(addr)
                assert await friend.request(server.peer_id, "/echo/1", b"hi") == b"hi"
            for psk in (other, None):
                async with open_libp2p_transport(bytes([3]) * 32, net, limits,
                                                 psk=psk) as outsider:
                    with pytest.raises(TransportError):
                        await outsider.connect(addr)
