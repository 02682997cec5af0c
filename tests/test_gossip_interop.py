"""GossipSub interop with the js implementation (`@chainsafe/libp2p-gossipsub` 14 on
js-libp2p 2, Noise, yamux): each side sees the other as a topic peer and receives its signed
messages, whichever side dialled. Real libp2p on 127.0.0.1; the js peer is
tests/interop/gossip_peer.mjs, installed by `scripts/setup-js` (skipped without it)."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from peerdata.config import LimitsConfig, NetConfig
from peerdata.identity import Identity
from peerdata.net.libp2p_transport import Libp2pTransport, open_libp2p_transport
from peerdata.wire.versions import FEEDBACK_TOPIC, VOTES_TOPIC

INTEROP = Path(__file__).parent / "interop"
NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(
    NODE is None or not (INTEROP / "node_modules" / "@chainsafe" / "libp2p-gossipsub").is_dir(),
    reason="js-libp2p not installed: run `bash scripts/setup-js` (needs node >= 20 and npm)",
)
TOPICS = (VOTES_TOPIC, FEEDBACK_TOPIC)


class JsPeer:
    """The js GossipSub peer: commands on stdin, one JSON event a line on stdout."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self._buf = b""

    async def command(self, line: str) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.send_all(line.encode() + b"\n")

    async def next_event(self, kind: str) -> dict[str, Any]:
        """The next event of `kind` (earlier events of other kinds are skipped)."""
        assert self.process.stdout is not None
        while True:
            while b"\n" not in self._buf:
                chunk = await self.process.stdout.receive_some()
                if not chunk:
                    raise AssertionError(f"js peer exited before a {kind!r} event")
                self._buf += chunk
            line, self._buf = self._buf.split(b"\n", 1)
            event = json.loads(line)
            if event["event"] == kind:
                return dict(event)


@asynccontextmanager
async def js_peer(*dial: str) -> AsyncIterator[JsPeer]:
    assert NODE is not None
    process = await trio.lowlevel.open_process(
        [NODE, str(INTEROP / "gossip_peer.mjs"), ",".join(TOPICS), *dial],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        yield JsPeer(process)
    finally:
        assert process.stdin is not None
        await process.stdin.aclose()  # the js peer stops when its stdin closes
        with trio.move_on_after(10):
            await process.wait()
        if process.returncode is None:
            process.kill()
            await process.wait()


@asynccontextmanager
async def py_peer() -> AsyncIterator[Libp2pTransport]:
    async with open_libp2p_transport(Identity.generate().private_key_bytes, NetConfig(),
                                     LimitsConfig()) as transport:
        yield transport


async def exchange(py: Libp2pTransport, js: JsPeer) -> None:
    """Both directions on both topics, each message signed and checked by the receiver."""
    inboxes = {t: py.subscribe(t) for t in TOPICS}
    seen = {(e["topic"], e["peer"]) for e in [await js.next_event("topic_peer") for _ in TOPICS]}
    assert seen == {(t, py.peer_id) for t in TOPICS}
    for topic in TOPICS:
        payload = f"from-js {topic}".encode()
        await js.command(f"publish {topic} {payload.hex()}")
        published = await js.next_event("published")
        assert py.peer_id in published["recipients"]
        while (msg := await inboxes[topic].receive()).sender == py.peer_id:
            pass
        assert (msg.topic, msg.data) == (topic, payload)
        # js's SUBSCRIBE came before its message on the same stream: py knows js is a
        # topic peer now, so py's publish reaches it
        await py.publish(topic, f"from-py {topic}".encode())
        got = await js.next_event("message")
        assert got == {"event": "message", "topic": topic, "from": py.peer_id,
                       "data": f"from-py {topic}".encode().hex()}


async def test_js_gossipsub_peer_that_dials_us() -> None:
    with trio.fail_after(60):
        async with py_peer() as py, js_peer(py.listen_addrs()[0]) as js:
            await js.next_event("ready")
            await exchange(py, js)


async def test_js_gossipsub_peer_that_we_dial() -> None:
    with trio.fail_after(60):
        async with py_peer() as py, js_peer() as js:
            ready = await js.next_event("ready")
            assert await py.connect(ready["addrs"][0]) == ready["peer_id"]
            await exchange(py, js)
