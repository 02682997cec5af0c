"""The daemon's side of the control endpoint: a Unix socket `home/control.sock`, owner-only.

Rule: the socket file is created with mode 0600 (umask set around bind, then chmod) and only
after any stale socket is proven dead; a live one means another daemon owns the home and we
refuse to start. One bad client line gets an error answer; it never stops the daemon.
"""

from __future__ import annotations

import errno
import logging
import os
import socket as stdsocket
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

from peerdata.control.protocol import (
    COMMANDS,
    MAX_LINE_BYTES,
    ControlRequest,
    ControlResponse,
    decode_request,
    encode_response,
    error_response,
)
from peerdata.errors import ConfigError, ControlError, PeerdataError

log = logging.getLogger("peerdata.control")

# The handler the node supplies: one request in, the `result` object out.
Dispatch = Callable[[ControlRequest], Awaitable[dict[str, Any]]]
# sun_path is 108 bytes on Linux including the terminating NUL.
MAX_SOCKET_PATH = 107


def ensure_free(path: Path) -> None:
    """Remove a dead socket left by a crashed daemon; refuse (ControlError) one a daemon is
    serving now, and (ConfigError) a path that is not a socket."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise ConfigError(f"{path} exists and is not a socket; refusing to replace it")
    probe = stdsocket.socket(stdsocket.AF_UNIX, stdsocket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError as exc:
        if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT):
            raise ControlError(f"{path}: cannot probe existing socket: {exc.strerror}") from None
        path.unlink(missing_ok=True)
        return
    finally:
        probe.close()
    raise ControlError(f"another daemon is already serving {path}")


async def _bind_private(path: Path) -> trio.socket.SocketType:
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise ConfigError(
            f"control socket path {path} is longer than {MAX_SOCKET_PATH} bytes; use a shorter home"
        )
    ensure_free(path)
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    # umask, not chmod-after-bind alone: no instant exists where the socket is group-reachable.
    old = os.umask(0o177)
    try:
        await sock.bind(str(path))
    except OSError as exc:
        sock.close()
        raise ControlError(f"cannot bind control socket {path}: {exc.strerror}") from None
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.listen(16)
    return sock


def _inode(path: Path) -> int:
    return path.stat().st_ino


def _remove_if_ours(path: Path, ino: int) -> None:
    """Unlink the socket unless another daemon has replaced it meanwhile."""
    try:
        if path.stat().st_ino == ino:
            path.unlink()
    except FileNotFoundError:
        pass


async def _answer(dispatch: Dispatch, line: bytes, commands: frozenset[str]) -> ControlResponse:
    try:
        req = decode_request(line, commands)
    except ControlError as exc:
        log.warning("event=control_bad_request error=%r", str(exc))
        return error_response(0, exc)
    try:
        return ControlResponse(id=req.id, ok=True, result=await dispatch(req))
    except PeerdataError as exc:
        return error_response(req.id, exc)
    except Exception as exc:  # a bug in one command must not take the daemon down
        log.exception("event=control_command_failed cmd=%s", req.cmd)
        return error_response(req.id, exc)


async def _serve_client(
    stream: trio.SocketStream, dispatch: Dispatch, commands: frozenset[str]
) -> None:
    buf = bytearray()
    async with stream:
        while True:
            nl = buf.find(b"\n")
            if nl < 0:
                if len(buf) > MAX_LINE_BYTES:
                    resp = error_response(0, ControlError("control line too long"))
                    await stream.send_all(encode_response(resp))
                    return
                try:
                    chunk = await stream.receive_some(65536)
                except trio.BrokenResourceError:
                    return
                if not chunk:
                    return
                buf += chunk
                continue
            line, buf = bytes(buf[:nl]), buf[nl + 1 :]
            resp = await _answer(dispatch, line, commands)
            try:
                await stream.send_all(encode_response(resp))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return


async def serve_control(
    path: Path,
    dispatch: Dispatch,
    *,
    commands: frozenset[str] = COMMANDS,
    task_status: trio.TaskStatus[Path] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the control socket at `path` until cancelled; remove it on the way out.

    Raises:
        ConfigError: the path is too long or is occupied by something that is not a socket.
        ControlError: another daemon is serving the same path, or bind failed.
    """
    sock = await _bind_private(path)
    ino = _inode(path)
    listener = trio.SocketListener(sock)
    try:
        async with trio.open_nursery() as nursery:
            async with listener:
                task_status.started(path)
                while True:
                    stream = await listener.accept()
                    nursery.start_soon(_serve_client, stream, dispatch, commands)
    finally:
        _remove_if_ours(path, ino)
