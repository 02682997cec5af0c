"""Control commands against nodes on a MemoryNetwork (MockClock): status, peers, send, wait."""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st
from test_node_support import addr_of, start_node

from peerdata.control.commands import make_dispatch
from peerdata.control.protocol import (
    COMMANDS,
    ControlRequest,
    decode_request,
    encode_request,
)
from peerdata.errors import ControlError, DataError, TransportError
from peerdata.identity import Identity
from peerdata.ml.privacy.imageformat import encode_png
from peerdata.testing.memory_network import MemoryNetwork

_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=10,
)


@given(st.integers(0, 2**31), st.sampled_from(sorted(COMMANDS)),
       st.dictionaries(st.text(max_size=10), _json, max_size=5))
def test_any_request_round_trips(rid: int, cmd: str, args: dict[str, Any]) -> None:
    req = ControlRequest(rid, cmd, args)
    assert decode_request(encode_request(req).rstrip(b"\n")) == req


async def test_status_peers_send_wait_stop(
    autojump_clock: trio.testing.MockClock, tmp_path: Path,
) -> None:
    with trio.fail_after(60):
        network = MemoryNetwork()
        stopped = []
        async with AsyncExitStack() as stack:
            a = await start_node(stack, network, "a")
            b = await start_node(stack, network, "b", bootstrap=(addr_of(a.node.peer_id),))
            on_a = make_dispatch(a.node, "/x/control.sock", lambda: stopped.append(1))
            on_b = make_dispatch(b.node, "/y/control.sock", lambda: None)

            async def ask(dispatch: Any, cmd: str, **args: Any) -> dict[str, Any]:
                return dict(await dispatch(ControlRequest(1, cmd, args)))

            status = await ask(on_b, "wait", peers=1, timeout_s=30)
            assert status["peers_connected"] == 1 and status["control"] == "/y/control.sock"
            peers = await ask(on_a, "peers")
            assert [p["peer_id"] for p in peers["peers"]] == [b.node.peer_id]
            assert peers["peers"][0]["name"] == "b" and peers["peers"][0]["connected"]
            files = []
            for i in range(3):
                files.append(tmp_path / f"{i}.png")
                # real images: `send` passes each through the privacy filter
                files[-1].write_bytes(encode_png(np.full((32, 32), 40 * i, np.uint8)))
            sent = await ask(on_a, "send", paths=[str(f) for f in files], to=b.node.peer_id,
                             label=4)
            assert sent["offered"] == 3 and sent["wanted"] == 3
            status = await ask(on_b, "wait", images_received=3, timeout_s=30)
            assert status["images_verified"] == 3 and status["samples_received"] == 3
            assert (await ask(on_a, "status"))["samples_local"] == 3
            with pytest.raises(ControlError, match="not reached within"):
                await ask(on_b, "wait", images_received=4, timeout_s=5)
            (tmp_path / "x.txt").write_text("text")
            with pytest.raises(DataError, match="not a PNG or JPEG"):
                await ask(on_a, "send", paths=[str(tmp_path / "x.txt")], to=b.node.peer_id)
            with pytest.raises(DataError, match="cannot read"):
                await ask(on_a, "send", paths=[str(tmp_path / "nope.png")], to=b.node.peer_id)
            with pytest.raises(ControlError, match="paths"):
                await ask(on_a, "send", paths=[], to=b.node.peer_id)
            with pytest.raises(TransportError):
                await ask(on_a, "send", paths=[str(files[0])], to=Identity.generate().peer_id)
            assert await ask(on_a, "stop") == {"stopping": True} and stopped == [1]


async def test_extra_commands_plug_in(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(60):
        async with AsyncExitStack() as stack:
            a = await start_node(stack, MemoryNetwork(), "a")

            async def rounds(node: Any, args: dict[str, Any]) -> dict[str, Any]:
                return {"rounds": [], "peer_id": node.peer_id}

            dispatch = make_dispatch(a.node, "c", lambda: None, extra={"rounds": rounds})
            got = await dispatch(ControlRequest(1, "rounds", {}))
            assert got == {"rounds": [], "peer_id": a.node.peer_id}
