"""The control protocol (pure) and the Unix-socket endpoint: permissions, answers, bad input."""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from peerdata.control.client import DaemonError, call
from peerdata.control.protocol import (
    MAX_LINE_BYTES,
    ControlRequest,
    ControlResponse,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
)
from peerdata.control.server import serve_control
from peerdata.errors import ConfigError, ControlError, DataError


def test_request_round_trip() -> None:
    req = ControlRequest(id=7, cmd="send", args={"to": "x", "paths": ["/a.png"]})
    line = encode_request(req)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert decode_request(line.rstrip(b"\n")) == req


def test_response_round_trip() -> None:
    ok = ControlResponse(id=1, ok=True, result={"a": 1})
    assert decode_response(encode_response(ok)) == ok
    err = ControlResponse(id=2, ok=False, error_type="DataError", error_message="bad")
    assert decode_response(encode_response(err)) == err


@pytest.mark.parametrize(
    ("line", "match"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"id": 1, "cmd": "explode"}', "unknown command"),
        (b'{"id": "1", "cmd": "status"}', "integer"),
        (b'{"id": 1, "cmd": "status", "args": []}', "args"),
        (b'{"id": 1}', "cmd"),
        (b"\xff\xfe", "not JSON"),
        (b"{" + b" " * MAX_LINE_BYTES + b"}", "exceeds"),
    ],
)
def test_bad_request_lines(line: bytes, match: str) -> None:
    with pytest.raises(ControlError, match=match):
        decode_request(line)


def test_bad_response_lines() -> None:
    for line in (b'{"ok": true}', b'{"id": 1, "ok": true, "result": 3}', b'{"id":1,"ok":false}'):
        with pytest.raises(ControlError):
            decode_response(line)


async def _dispatch(req: ControlRequest) -> dict[str, Any]:
    if req.cmd == "status":
        return {"echo": req.args}
    if req.cmd == "send":
        raise DataError("no such image")
    raise RuntimeError("a bug in a command")


@asynccontextmanager
async def _serving(path: Path) -> AsyncIterator[None]:
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_control, path, _dispatch)
        yield
        nursery.cancel_scope.cancel()


async def _call(home: Path, cmd: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
    return await trio.to_thread.run_sync(lambda: call(home, cmd, args, timeout_s=10))


async def test_socket_is_owner_only_and_answers(tmp_path: Path) -> None:
    with trio.fail_after(30):
        path = tmp_path / "control.sock"
        async with _serving(path):
            mode = os.stat(path).st_mode
            assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
            assert await _call(tmp_path, "status", {"x": 1}) == {"echo": {"x": 1}}
            with pytest.raises(DataError, match=r"^no such image$"):
                await _call(tmp_path, "send")  # keeps its class, hence its exit code
            with pytest.raises(DaemonError, match="RuntimeError"):
                await _call(tmp_path, "peers")  # a failing command does not stop the server
            assert await _call(tmp_path, "status") == {"echo": {}}
        assert not path.exists()  # removed on the way out


async def test_bad_lines_get_error_answers_on_the_same_connection(tmp_path: Path) -> None:
    with trio.fail_after(30):
        path = tmp_path / "control.sock"
        async with _serving(path):
            stream = await trio.open_unix_socket(str(path))
            async with stream:
                await stream.send_all(b"garbage\n" + encode_request(ControlRequest(3, "status")))
                buf = b""
                while buf.count(b"\n") < 2:
                    buf += await stream.receive_some(4096)
            first, second = (decode_response(x) for x in buf.splitlines())
            assert not first.ok and "not JSON" in (first.error_message or "")
            assert second.ok and second.id == 3


async def test_stale_socket_is_replaced_live_one_refused(tmp_path: Path) -> None:
    with trio.fail_after(30):
        path = tmp_path / "control.sock"
        stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stale.bind(str(path))
        stale.close()  # a crashed daemon's leftover: the file exists, nobody listens
        async with _serving(path):
            assert await _call(tmp_path, "status") == {"echo": {}}
            with pytest.RaisesGroup(pytest.RaisesExc(ControlError, match="already serving"),
                                    flatten_subgroups=True):
                async with _serving(path):
                    pass


async def test_a_regular_file_in_the_way_is_not_replaced(tmp_path: Path) -> None:
    with trio.fail_after(30):
        path = tmp_path / "control.sock"
        path.write_text("precious")
        with pytest.RaisesGroup(pytest.RaisesExc(ConfigError, match="not a socket"),
                                flatten_subgroups=True):
            async with _serving(path):
                pass
        assert path.read_text() == "precious"


def test_client_without_daemon_says_so(tmp_path: Path) -> None:
    with pytest.raises(ControlError, match="no daemon is running"):
        call(tmp_path, "status", timeout_s=1)
