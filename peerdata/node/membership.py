"""Fleet membership on the wire: certificates shown on /peerdata/member, revocations gossiped.

Rule: a peer counts as a member only through `Membership.is_member` (peerdata.fleet); this
service only feeds it: the certificate a peer shows (as dialer or listener), and the highest
revocation list heard on peerdata/fleet/1, which is kept in HOME and re-published every
REPUBLISH_S so robots that were away learn it. Revoked peers' links are dropped at once, and a
connected peer that has shown no valid certificate STRANGER_DEADLINE_S after we first saw it
is disconnected (an idle stranger must not hold a link, and with it a gossip neighbour slot).
In open mode nothing here runs.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import cast

import trio

from peerdata.config import LimitsConfig
from peerdata.errors import LocalProtocolError, RemoteProtocolError, TransportError
from peerdata.fleet import REVOCATIONS_FILE, Membership, write_message
from peerdata.net.transport import Transport
from peerdata.node.logs import event
from peerdata.wire.codec import decode_as, encode
from peerdata.wire.messages import ErrorReply, MemberCert, Revocations
from peerdata.wire.versions import FLEET_TOPIC, MEMBER_PROTOCOL

log = logging.getLogger("peerdata.node.membership")

REPUBLISH_S = 60.0
STRANGER_DEADLINE_S = 30.0  # a dialer shows its certificate in its first request: seconds


class MemberService:
    """Shows and checks certificates, spreads revocations (fleet mode only)."""

    def __init__(self, membership: Membership, transport: Transport, limits: LimitsConfig,
                 home: Path | None, drop_link: Callable[[str, str], Awaitable[None]],
                 stranger_deadline_s: float = STRANGER_DEADLINE_S) -> None:
        self.membership = membership
        self.stranger_deadline_s = stranger_deadline_s
        self._transport = transport
        self._limits = limits
        self._home = home
        self._drop_link = drop_link
        self.refused = 0
        self._adopted = trio.Event()  # set (and replaced) whenever a newer list is adopted

    def refuse(self, peer_id: str, protocol: str) -> RemoteProtocolError:
        """Log a non-member's request and return the error that drops its link."""
        self.refused += 1
        event(log, logging.WARNING, "refused_non_member", peer=peer_id, protocol=protocol,
              reason="no valid fleet certificate shown (peerdata fleet admit)")
        return RemoteProtocolError(f"{peer_id} is not a member of this fleet")

    async def handle_member(self, peer_id: str, payload: bytes) -> bytes:
        """Serve /peerdata/member: check the dialer's certificate, answer with ours."""
        if self.membership.is_open:
            return encode(ErrorReply(code="unsupported", message="open fleet: no certificates"))
        cert = decode_as(payload, MemberCert, limits=self._limits)
        self._check(peer_id, cert)
        assert self.membership.own_cert is not None
        return encode(self.membership.own_cert)

    async def introduce(self, peer_id: str) -> None:
        """As dialer: show our certificate and check the listener's (no-op in open mode).

        Raises:
            TransportError: the peer is unreachable. RemoteProtocolError: its certificate is
            bad or missing (the link is dropped first).
        """
        if self.membership.is_open or self.membership.is_member(peer_id) and \
                peer_id in self.membership._certs:
            return
        assert self.membership.own_cert is not None
        raw = await self._transport.request(peer_id, MEMBER_PROTOCOL,
                                            encode(self.membership.own_cert))
        try:
            reply = cast(MemberCert | ErrorReply, decode_as(raw, MemberCert, ErrorReply,
                                                            limits=self._limits))
            if isinstance(reply, ErrorReply):
                raise RemoteProtocolError(f"it shows no certificate ({reply.code}: "
                                          f"{reply.message[:100]})")
            self._check(peer_id, reply)
        except RemoteProtocolError as exc:
            await self._drop_link(peer_id, f"membership: {exc}")
            raise

    def _check(self, peer_id: str, cert: MemberCert) -> None:
        try:
            self.membership.check_certificate(cert, peer_id)
        except RemoteProtocolError as exc:
            self.refused += 1
            event(log, logging.WARNING, "refused_non_member", peer=peer_id,
                  protocol=MEMBER_PROTOCOL, reason=str(exc)[:200])
            raise
        event(log, logging.INFO, "member_admitted", peer=peer_id,
              expires_at=round(cert.expires_at))

    def validate_revocations(self, sender: str, data: bytes) -> bool:
        """Gossip validator for peerdata/fleet/1: deliver and forward only a valid list from
        our authority, no older than the one we hold (a newer one is adopted here, before
        anyone reads it; the same one again is a periodic re-publish and passes)."""
        try:
            self._adopt(sender, decode_as(data, Revocations, limits=self._limits))
        except RemoteProtocolError as exc:
            event(log, logging.WARNING, "gossip_rejected", peer=sender, topic=FLEET_TOPIC,
                  error=str(exc)[:200])
            return False
        return True

    def _adopt(self, sender: str, rl: Revocations) -> bool:
        """Adopt `rl` if newer (persisted in HOME); RemoteProtocolError if invalid or older."""
        held = self.membership.revocations
        newer = self.membership.apply_revocations(rl)
        if not newer and held is not None and rl.serial < held.serial:
            raise RemoteProtocolError(f"revocations serial {rl.serial} is older than "
                                      f"{held.serial}")
        if newer:
            event(log, logging.WARNING, "members_revoked", serial=rl.serial,
                  revoked=len(rl.revoked), via=sender)
            if self._home is not None:
                write_message(self._home / REVOCATIONS_FILE, rl)
            self._adopted.set()
            self._adopted = trio.Event()
        return newer

    async def wait_serial(self, serial: int) -> None:
        """Return once a revocation list numbered `serial` or higher is held."""
        while (held := self.membership.revocations) is None or held.serial < serial:
            await self._adopted.wait()

    async def adopt(self, rl: Revocations) -> bool:
        """Take a list given locally (by `peerdata fleet revoke --home`) and gossip it.

        Raises:
            RemoteProtocolError: not our authority's, a bad signature, or older than ours.
        """
        newer = self._adopt(self.membership.me, rl)
        if newer:
            await self._publish()
            await self.drop_revoked()
        return newer

    async def drop_revoked(self) -> None:
        for peer in self._transport.connected_peers():
            if not self.membership.is_member(peer):
                await self._drop_link(peer, "membership revoked or expired")

    async def _publish(self) -> None:
        rl = self.membership.revocations
        if rl is None:
            return
        try:
            await self._transport.publish(FLEET_TOPIC, encode(rl))
        except (TransportError, LocalProtocolError) as exc:
            event(log, logging.WARNING, "gossip_publish_failed", topic=FLEET_TOPIC,
                  error=str(exc)[:200])

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Listen for revocation lists; re-publish ours every REPUBLISH_S; drop revoked links."""
        if self.membership.is_open:
            task_status.started()
            return
        self._transport.set_gossip_validator(FLEET_TOPIC, self.validate_revocations)
        channel = self._transport.subscribe(FLEET_TOPIC)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._republish)
            nursery.start_soon(self.drop_idle_strangers)
            task_status.started()
            async for _ in channel:  # the validator adopted it already
                await self.drop_revoked()

    async def _republish(self) -> None:
        while True:
            await self._publish()
            await trio.sleep(REPUBLISH_S)

    async def drop_idle_strangers(self) -> None:
        """Every quarter deadline: disconnect peers connected for `stranger_deadline_s` or
        longer (as far as we have seen) without being members."""
        first_seen: dict[str, float] = {}
        while True:
            now = trio.current_time()
            connected = set(self._transport.connected_peers())
            for peer in [p for p in first_seen if p not in connected]:
                del first_seen[peer]
            for peer in sorted(connected):
                if self.membership.is_member(peer):
                    first_seen.pop(peer, None)
                elif now - first_seen.setdefault(peer, now) >= self.stranger_deadline_s:
                    del first_seen[peer]
                    self.refused += 1
                    event(log, logging.WARNING, "stranger_dropped", peer=peer,
                          reason=f"no fleet certificate within {self.stranger_deadline_s} s")
                    await self._drop_link(peer, "idle stranger")
            await trio.sleep(self.stranger_deadline_s / 4)
