#!/usr/bin/env python3
"""Attack a real `peerdata run` daemon over libp2p on 127.0.0.1 the way a hostile peer would,
then print a table and ONE JSON line: per attack `refused`, `daemon_alive`, `rss_growth_mib`,
`log_line` (plus `peak_growth_mib` and `detail`).

The victim runs in fleet mode. The attacker holds two fresh keys: a stranger (never admitted)
and an insider (admitted by the authority, then misbehaving: the worst case, since membership
is then no help). Each attack is judged by what the daemon did, never by what we hoped:

  membership        stranger says Hello                    refused = request reset, link dropped
  raw_cid           insider asks /fetch, /relay, /share     refused = no byte of the raw photo
                    for the raw photo's content ID          left, replies same as unknown cid
  forged_vote       insider gossips a badly signed Vote     refused = rejected by the validator
                    and a stranger-signed one
  stuffed_feedback  insider reports Feedback with 9         refused = utility not set by it
                    invented voters on an image the victim
                    offered it (rules built by the core engineer's round core)
  bad_hash          insider serves bytes that do not       refused = link dropped, nothing stored
                    match the offered cid
  bomb              insider offers a 1 kB PNG declaring    refused = never decoded (log line),
                    2.5 Gpixel                              RSS flat
  flood             insider opens 200 parallel 1 MiB       refused = most streams reset at once
                    streams
  disk_full         a daemon whose files may not grow      refused = store_failed logged, alive
                    is offered an image
  full_disk_restart restart with no writable disk          refused = exit 6, one line, no
                                                            traceback

    .venv/bin/python scripts/attack.py            # about a minute
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import trio

from peerdata.config import LimitsConfig, NetConfig
from peerdata.control.client import call
from peerdata.errors import PeerdataError, TransportError
from peerdata.fleet import CERT_FILE, init_authority, issue_certificate, join_fleet_config
from peerdata.fleet import write_message as write_fleet_file
from peerdata.identity import Identity
from peerdata.ml.privacy.imageformat import encode_png
from peerdata.net.libp2p_transport import Libp2pTransport, open_libp2p_transport
from peerdata.node.home import CONFIG_FILE, LOG_FILE, init_home
from peerdata.node.receiver import REPORT_PROTOCOL
from peerdata.testing.swarm import Robot, await_ready, edit_config, spawn_robot, stop_robot
from peerdata.wire import (
    Hello,
    ImageData,
    ImageItem,
    ImageOffer,
    ImageRequest,
    OfferItem,
    OfferReply,
    RelayState,
    Vote,
    content_id,
    decode,
    encode,
    sign_feedback,
    sign_vote,
)
from peerdata.wire.versions import (
    FETCH_PROTOCOL,
    HELLO_PROTOCOL,
    MEMBER_PROTOCOL,
    RELAY_PROTOCOL,
    SHARE_PROTOCOL,
    VOTES_TOPIC,
)

NET = NetConfig(connect_timeout_s=5.0, request_timeout_s=20.0, gossip_heartbeat_s=0.3)
LIMITS = LimitsConfig()
MiB = 1024 * 1024


def photo() -> bytes:
    """The scikit-image astronaut (a real face), 256x256, as PNG."""
    import cv2
    from skimage import data

    bgr = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    return encode_png(cv2.resize(bgr, (256, 256), interpolation=cv2.INTER_AREA))


def bomb_png(side: int = 50_000) -> bytes:
    """A valid-looking PNG of about 1 kB that declares side x side pixels."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return len(body).to_bytes(4, "big") + kind + body + \
            (zlib.crc32(kind + body) & 0xFFFFFFFF).to_bytes(4, "big")

    ihdr = side.to_bytes(4, "big") * 2 + bytes((8, 0, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + \
        chunk(b"IDAT", zlib.compress(b"\x00" * 100_000, 9)) + chunk(b"IEND", b"")


def logged(text: str, event_name: str, peer: str = "") -> int:
    """Log lines of `event_name` (naming `peer`), whatever the log format (key=value, JSON)."""
    return sum(1 for line in text.splitlines()
               if (f"event={event_name}" in line or f'"event": "{event_name}"' in line
                   or f'"event":"{event_name}"' in line) and peer in line)


def rss(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of `pid` in MiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


class Victim:
    """One daemon in a fresh home, in fleet mode under `authority`."""

    def __init__(self, home: Path, authority: Identity, *, fsize: int | None = None,
                 limits: dict[str, Any] | None = None) -> None:
        self.home = home
        peer = init_home(home, "victim").peer_id
        join_fleet_config(home / CONFIG_FILE, authority.peer_id)
        write_fleet_file(home / CERT_FILE, issue_certificate(authority, peer, time.time(), 1))
        edit_config(home, {"round": {"interval_s": 0.0, "policy": "all",
                                     "budget_fraction": 1.0, "inbox_poll_s": 0.2,
                                     "vote_deadline_s": 5.0},
                           "net": {"reconnect_max_s": 1.0}, **({"limits": limits} if limits
                                                               else {})})
        self.fsize = fsize
        self.robot: Robot | None = None

    def start(self) -> Robot:
        if self.fsize is None:
            robot, fd = spawn_robot(0, self.home)
            self.robot = await_ready(robot, fd, 120)
            return self.robot
        # A daemon whose files may not grow past `fsize` bytes: every larger write fails as on
        # a full disk (EFBIG instead of ENOSPC; the same OSError path in the store).
        read_fd, write_fd = os.pipe()
        limit = self.fsize

        def no_room() -> None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

        with open(self.home / "daemon.stderr", "ab") as err:
            proc = subprocess.Popen(
                [sys.executable, "-c", "from peerdata.cli.run import main; main()", "--home",
                 str(self.home), "--ready-fd", str(write_fd)], stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=err, pass_fds=(write_fd,),
                preexec_fn=no_room, start_new_session=True)
        os.close(write_fd)
        self.robot = await_ready(Robot(0, self.home, proc), read_fd, 120)
        return self.robot

    @property
    def pid(self) -> int:
        assert self.robot is not None
        return self.robot.pid

    def alive(self) -> bool:
        if self.robot is None or self.robot.process.poll() is not None:
            return False
        try:
            call(self.home, "status", timeout_s=10.0)
        except PeerdataError:
            return False
        return True

    def log_size(self) -> int:
        try:
            return (self.home / LOG_FILE).stat().st_size
        except OSError:
            return 0

    def log_since(self, offset: int) -> str:
        with open(self.home / LOG_FILE, "rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace")

    def stop(self) -> None:
        if self.robot is not None:
            stop_robot(self.robot, timeout_s=10.0)


class Attacker:
    """A libp2p endpoint with a chosen key that records every byte it is sent."""

    def __init__(self, transport: Libp2pTransport, identity: Identity) -> None:
        self.t, self.id = transport, identity
        self.received: list[bytes] = []
        self.serve: dict[bytes, bytes] = {}  # cid -> bytes to answer /fetch with (any bytes)
        self.offers: list[ImageOffer] = []
        self.offered = trio.Event()

        async def on_fetch(peer: str, payload: bytes) -> bytes:
            req = decode(payload)
            assert isinstance(req, ImageRequest)
            return encode(ImageData(items=tuple(
                ImageItem(cid=c, data=self.serve[c], label=None, media_type="image/png")
                for c in req.cids if c in self.serve)))

        async def on_share(peer: str, payload: bytes) -> bytes:
            self.received.append(payload)
            offer = decode(payload)
            assert isinstance(offer, ImageOffer)
            self.offers.append(offer)
            self.offered.set()
            return encode(OfferReply(wanted=tuple(i.cid for i in offer.items)))

        transport.set_handler(FETCH_PROTOCOL, on_fetch)
        transport.set_handler(SHARE_PROTOCOL, on_share)

    async def ask(self, peer: str, protocol: str, payload: bytes) -> bytes | None:
        """The reply, or None if the daemon reset the stream / dropped the link."""
        try:
            reply = await self.t.request(peer, protocol, payload)
        except TransportError:
            return None
        self.received.append(reply)
        return reply

    def item(self, data: bytes, size: int | None = None) -> OfferItem:
        return OfferItem(cid=content_id(data), size=len(data) if size is None else size,
                         has_label=False, origin=self.id.peer_id, origin_round=1,
                         novel_votes=0, voters=(), hops=0)

    def offer(self, *items: OfferItem) -> bytes:
        return encode(ImageOffer(sender=self.id.peer_id, round_id=1, items=items))


ONLY: set[str] = set()  # --attacks: run just these (empty: all)
FLOOD = {"streams": 200}  # --flood-streams


async def measure(name: str, victim: Victim, attack: Callable[[], Awaitable[tuple[bool, str]]],
                  log_words: tuple[str, ...], results: list[dict[str, Any]]) -> None:
    if ONLY and name not in ONLY:
        return
    offset = victim.log_size()
    rss0, hwm0 = rss(victim.pid)
    refused, detail = await attack()
    await trio.sleep(1.0)  # let the daemon finish what the attack started before measuring
    rss1, hwm1 = rss(victim.pid) if victim.robot and victim.robot.process.poll() is None \
        else (rss0, hwm0)
    logged = victim.log_since(offset)
    results.append({"attack": name, "refused": refused, "daemon_alive": victim.alive(),
                    "rss_growth_mib": round(rss1 - rss0, 1),
                    "peak_growth_mib": round(max(0.0, hwm1 - max(hwm0, rss0)), 1),
                    "log_line": any(w in logged for w in log_words), "detail": detail})


async def run_attacks(work: Path, limits: dict[str, Any] | None = None
                      ) -> list[dict[str, Any]]:
    authority = init_authority(work / "authority")
    victim = Victim(work / "victim", authority, limits=limits)
    raw = photo()
    inbox = victim.home / "inbox"
    inbox.mkdir(mode=0o700, exist_ok=True)
    (inbox / "astronaut.png").write_bytes(raw)
    (inbox / "astronaut.json").write_text('{"label": 1}')  # only labelled images are shared
    robot = victim.start()
    insider, stranger = Identity.generate(), Identity.generate()
    cert = issue_certificate(authority, insider.peer_id, time.time(), 1)
    results: list[dict[str, Any]] = []
    me = robot.peer_id
    addr = robot.listen_addrs[0]
    try:
        for _ in range(600):  # the daemon files the photo away once ingested (raw, local)
            if (inbox / "done" / "astronaut.png").exists():
                break
            await trio.sleep(0.2)
        async with open_libp2p_transport(insider.private_key_bytes, NET, LIMITS) as t_in, \
                open_libp2p_transport(stranger.private_key_bytes, NET, LIMITS) as t_out:
            ins, out = Attacker(t_in, insider), Attacker(t_out, stranger)
            await t_in.connect(addr)
            member_reply = await ins.ask(me, MEMBER_PROTOCOL, encode(cert))
            assert member_reply is not None, "the victim refused the insider's certificate"

            async def membership() -> tuple[bool, str]:
                await t_out.connect(addr)
                reply = await out.ask(me, HELLO_PROTOCOL, encode(_hello(stranger)))
                again = await out.ask(me, SHARE_PROTOCOL, out.offer(out.item(b"\x89PNG x")))
                return reply is None and again is None, "Hello and offer from a fresh key"

            await measure("membership", victim, membership, ("refused_non_member",), results)

            raw_cid, unknown = content_id(raw), content_id(b"no robot holds this")

            async def raw_cid_attack() -> tuple[bool, str]:
                same = await ins.ask(me, FETCH_PROTOCOL, encode(ImageRequest(cids=(raw_cid,)))) \
                    == await ins.ask(me, FETCH_PROTOCOL, encode(ImageRequest(cids=(unknown,))))
                relay = [await ins.ask(me, RELAY_PROTOCOL, encode(RelayState(
                    cid=c, origin=insider.peer_id, origin_round=1, novel_votes=0, voters=(),
                    hops=0))) for c in (raw_cid, unknown)]
                same &= relay[0] == relay[1]
                reply = await ins.ask(me, SHARE_PROTOCOL, ins.offer(OfferItem(
                    cid=raw_cid, size=len(raw), has_label=False, origin=insider.peer_id,
                    origin_round=1, novel_votes=0, voters=(), hops=0)))
                same &= reply is not None and decode(reply) == OfferReply(wanted=(raw_cid,))
                leaked = any(raw in p for p in ins.received)
                return same and not leaked, f"replies identical to unknown cid: {same}; " \
                                            f"raw bytes received: {leaked}"

            await measure("raw_cid", victim, raw_cid_attack, ("images_served", "offer_received"),
                          results)

            async def forged_vote() -> tuple[bool, str]:
                good = sign_vote(insider, origin=me, cid=b"\x01" * 32, round_id=1, novel=True,
                                 score=1.0, timestamp=time.time())
                forged = Vote(**{**good.__dict__, "signature": b"\x07" * 64})
                outsider = sign_vote(stranger, origin=me, cid=b"\x02" * 32, round_id=1,
                                     novel=True, score=1.0, timestamp=time.time())
                await trio.sleep(1.0)  # the gossip mesh forms on the heartbeat
                await t_in.publish(VOTES_TOPIC, encode(forged))
                await t_in.publish(VOTES_TOPIC, encode(outsider))
                await trio.sleep(1.5)
                rejected = logged(victim.log_since(0), "gossip_rejected", insider.peer_id)
                return rejected >= 2, f"{rejected} of 2 rejected by the gossip validator"

            await measure("forged_vote", victim, forged_vote, ("gossip_rejected",), results)

            async def stuffed_feedback() -> tuple[bool, str]:
                # (in a thread: the attacker's event loop must keep answering the victim)
                start = await trio.to_thread.run_sync(
                    lambda: call(victim.home, "round_now", {"policy": "all"}, timeout_s=60.0))
                if not start.get("shared"):
                    return False, f"victim shared nothing to attack: {start}"
                with trio.fail_after(30):
                    await ins.offered.wait()
                item = ins.offers[-1].items[0]
                fake = tuple(Identity.generate().peer_id for _ in range(9))
                fb = sign_feedback(insider, origin=me, cid=item.cid, round_id=item.origin_round,
                                   novel_votes=10, voters=(*fake, insider.peer_id),
                                   timestamp=time.time())
                ack = await ins.ask(me, REPORT_PROTOCOL, encode(fb))
                shared = (await trio.to_thread.run_sync(
                    lambda: call(victim.home, "shared", {}, timeout_s=10.0)))["shared"]
                utility = next((s["utility"] for s in shared if s["cid"] == item.cid.hex()),
                               None)
                answer = "link dropped" if ack is None else type(decode(ack)).__name__
                return utility != 1.0, (f"utility after 9 invented voters: {utility}; "
                                        f"report answered: {answer}; offered cid is the "
                                        f"filter output: {item.cid != content_id(raw)}")

            await measure("stuffed_feedback", victim, stuffed_feedback,
                          ("feedback_rejected", "link_dropped", "report_refused"), results)
            await trio.sleep(1.2)  # a dropped peer is blocked for net.reconnect_max_s
            await t_in.connect(addr)
            await ins.ask(me, MEMBER_PROTOCOL, encode(cert))

            async def bad_hash() -> tuple[bool, str]:
                claimed = b"\x89PNG\r\n\x1a\n claimed bytes"
                ins.serve[content_id(claimed)] = b"\x89PNG\r\n\x1a\n other bytes!!"
                await ins.ask(me, SHARE_PROTOCOL, ins.offer(ins.item(claimed)))
                await trio.sleep(2.0)
                dropped = logged(victim.log_since(0), "link_dropped", insider.peer_id) > 0
                await t_in.connect(addr)  # come back for the next attack (after the block)
                return dropped, "mismatching bytes served for an offered cid"

            await measure("bad_hash", victim, bad_hash, ("link_dropped",), results)
            await trio.sleep(1.2)  # the victim blocks a dropped peer for net.reconnect_max_s
            await ins.ask(me, MEMBER_PROTOCOL, encode(cert))

            async def bomb() -> tuple[bool, str]:
                data = bomb_png()
                ins.serve[content_id(data)] = data
                reply = await ins.ask(me, SHARE_PROTOCOL, ins.offer(ins.item(data)))
                await trio.sleep(3.0)
                text = victim.log_since(0)
                refused = "max_pixels" in text
                return refused, f"{len(data)} bytes declaring 50000x50000; offer reply " \
                                f"{'ok' if reply else 'reset'}"

            await measure("bomb", victim, bomb, ("max_pixels",), results)

            async def flood() -> tuple[bool, str]:
                # N (200) raw streams at once, each declaring a 1 MiB request and sending all
                # of it but the last byte, then holding: what the daemon must buffer.
                from libp2p.custom_types import TProtocol
                from libp2p.peer.id import ID

                from peerdata.net.framing import HEADER

                outcome = {"reset": 0, "held": 0}
                n = FLOOD["streams"]
                body = HEADER.pack(MiB) + b"\x00" * (MiB - 1)

                async def one() -> None:
                    try:
                        stream = await t_in._host.new_stream(ID.from_base58(me),
                                                             [TProtocol(SHARE_PROTOCOL)])
                        with trio.move_on_after(3.0):
                            await stream.write(body)
                            await stream.read(1)  # returns or raises once the daemon resets
                            outcome["reset"] += 1
                            return
                        outcome["held"] += 1
                    except Exception:  # noqa: BLE001 - a reset surfaces as any libp2p error
                        outcome["reset"] += 1

                async with trio.open_nursery() as nursery:
                    for _ in range(n):
                        nursery.start_soon(one)
                # refused: every stream past what the per-peer limits admit is reset
                admitted = min(LimitsConfig().max_streams_per_peer,
                               LimitsConfig().max_buffered_bytes_per_peer // MiB)
                return outcome["reset"] >= n - admitted, f"{n} x 1 MiB streams: {outcome}"

            await measure("flood", victim, flood, ("stream refused",), results)
    finally:
        victim.stop()
    if not ONLY or "disk_full" in ONLY:
        results.append(await disk_full(work, authority))
    if not ONLY or "full_disk_restart" in ONLY:
        results.append(full_disk_restart(work))
    return results


def _hello(identity: Identity) -> Hello:
    return Hello(protocol_version=1, peer_id=identity.peer_id, name="stranger",
                 listen_addrs=(), agent="attack/1", samples=0, round_id=0)


async def disk_full(work: Path, authority: Identity) -> dict[str, Any]:
    """A daemon whose files may not grow past 1 MiB is offered a 2 MiB image by a member."""
    victim = Victim(work / "victim-full", authority, fsize=MiB)
    insider = Identity.generate()
    cert = issue_certificate(authority, insider.peer_id, time.time(), 1)
    robot = victim.start()
    results: list[dict[str, Any]] = []
    try:
        async with open_libp2p_transport(insider.private_key_bytes, NET, LIMITS) as t:
            ins = Attacker(t, insider)
            await t.connect(robot.listen_addrs[0])
            await ins.ask(robot.peer_id, MEMBER_PROTOCOL, encode(cert))

            async def attack() -> tuple[bool, str]:
                noise = np.frombuffer(os.urandom(1200 * 1200), np.uint8).reshape(1200, 1200)
                big = encode_png(noise)  # random pixels: ~1.4 MB of PNG
                ins.serve[content_id(big)] = big
                reply = await ins.ask(robot.peer_id, SHARE_PROTOCOL, ins.offer(ins.item(big)))
                await trio.sleep(3.0)
                failed = logged(victim.log_since(0), "store_failed") > 0
                again = await ins.ask(robot.peer_id, SHARE_PROTOCOL,
                                      ins.offer(ins.item(b"\x89PNG small")))
                return failed and again is not None, \
                    f"{len(big)} byte image, reply {bool(reply)}; still answering: " \
                    f"{again is not None}"

            await measure("disk_full", victim, attack, ("store_failed",), results)
    finally:
        victim.stop()
    intact, why = store_intact(victim.home)
    results[0]["refused"] = results[0]["refused"] and intact
    results[0]["detail"] += f"; store after the run: {why}"
    return results[0]


def store_intact(home: Path) -> tuple[bool, str]:
    """SQLite integrity_check ok and every recorded blob's bytes match its content ID."""
    import sqlite3

    from peerdata.errors import StoreError
    from peerdata.store import SqliteStore

    conn = sqlite3.connect(home / "store.sqlite")
    try:
        (check,) = conn.execute("PRAGMA integrity_check").fetchone()
        cids = [row[0] for row in conn.execute("SELECT cid FROM blobs")]
    finally:
        conn.close()
    bad = 0
    with SqliteStore.open(home) as store:
        for cid in cids:
            try:
                store.get_blob(cid)  # verifies the bytes against the cid
            except StoreError:
                bad += 1
    return check == "ok" and bad == 0, f"integrity_check {check}, {len(cids)} blobs, {bad} bad"


def full_disk_restart(work: Path) -> dict[str, Any]:
    home = work / "victim-restart"
    init_home(home, "restart")

    def no_room() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    proc = subprocess.run([sys.executable, "-c", "from peerdata.cli.run import main; main()",
                           "--home", str(home)], capture_output=True, text=True, timeout=120,
                          preexec_fn=no_room)
    one_line = "Traceback" not in proc.stderr and "error:" in proc.stderr
    return {"attack": "full_disk_restart", "refused": proc.returncode == 6 and one_line,
            "daemon_alive": False, "rss_growth_mib": 0.0, "peak_growth_mib": 0.0,
            "log_line": "disk full" in " ".join(proc.stderr.split()),
            "detail": f"exit {proc.returncode}: {' '.join(proc.stderr.split())[:120]}"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="keep the homes (logs) afterwards")
    parser.add_argument("--max-buffered-mib", type=int, default=None,
                        help="the victim's limits.max_buffered_bytes_per_peer (and "
                             "max_message_bytes, which may not exceed it), in MiB")
    parser.add_argument("--attacks", default="",
                        help="comma list: run only these attacks (default: all)")
    parser.add_argument("--flood-streams", type=int, default=200,
                        help="parallel 1 MiB streams of the flood attack (default 200)")
    args = parser.parse_args(argv)
    FLOOD["streams"] = args.flood_streams
    ONLY.update(a.strip() for a in args.attacks.split(",") if a.strip())
    limits = None if args.max_buffered_mib is None else {
        "max_buffered_bytes_per_peer": args.max_buffered_mib * MiB,
        "max_message_bytes": args.max_buffered_mib * MiB,
        "max_image_bytes": min(16, args.max_buffered_mib) * MiB}
    work = Path(tempfile.mkdtemp(prefix="peerdata-attack-"))
    t0 = time.monotonic()
    results = trio.run(run_attacks, work, limits)
    wall = time.monotonic() - t0
    cols = ("attack", "refused", "daemon_alive", "rss_growth_mib", "peak_growth_mib",
            "log_line")
    widths = [max(len(c), *(len(str(r[c])) for r in results)) for c in cols]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)))
    for r in results:
        print("  ".join(str(r[c]).ljust(w) for c, w in zip(cols, widths, strict=True)))
        print(f"    {r['detail']}")
    if args.keep:
        print(f"homes and logs kept in {work}")
    else:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({"attacks": {r["attack"]: {k: r[k] for k in cols[1:]} for r in results},
                      "wall_s": round(wall, 1)}, sort_keys=True))
    alive_ok = all(r["daemon_alive"] for r in results if r["attack"] != "full_disk_restart")
    return 0 if all(r["refused"] for r in results) and alive_ok else 1


if __name__ == "__main__":
    sys.exit(main())
