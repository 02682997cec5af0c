"""A minimal GET-only HTTP/1.1 server on trio listeners, for the metrics endpoint and the
dashboard (both local, both read-only).

Rule: a request head is bounded (MAX_REQUEST_BYTES) and must arrive within REQUEST_TIMEOUT_S;
one request per connection; anything a route raises becomes a 500 and is logged, never a crash
of the caller's nursery.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from http import HTTPStatus

import trio

from peerdata.errors import ConfigError

log = logging.getLogger("peerdata.ops.http")
MAX_REQUEST_BYTES = 8192
REQUEST_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Reply:
    """One response."""

    code: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)

    def encode(self, head_only: bool = False) -> bytes:
        lines = [f"HTTP/1.1 {self.code} {HTTPStatus(self.code).phrase}",
                 f"Content-Type: {self.content_type}", f"Content-Length: {len(self.body)}",
                 "Connection: close", "X-Content-Type-Options: nosniff",
                 *(f"{k}: {v}" for k, v in self.headers.items())]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode()
        return head if head_only else head + self.body


Route = Callable[[str], Awaitable[Reply]]
"""Answers one GET: the request target (path and query) in, the reply out."""


async def _read_head(stream: trio.abc.ReceiveStream) -> bytes | None:
    buf = b""
    while b"\r\n\r\n" not in buf and b"\n\n" not in buf:
        if len(buf) > MAX_REQUEST_BYTES:
            return None
        chunk = await stream.receive_some(4096)
        if not chunk:
            return None
        buf += chunk
    return buf


async def _handle(stream: trio.SocketStream, route: Route) -> None:
    async with stream:
        with trio.move_on_after(REQUEST_TIMEOUT_S):
            try:
                head = await _read_head(stream)
                parts = head.split(b"\n", 1)[0].split() if head else []
                if len(parts) != 3:
                    reply, head_only = Reply(400, b"bad request\n"), False
                elif parts[0] not in (b"GET", b"HEAD"):
                    reply, head_only = Reply(405, b"GET only (read-only)\n"), False
                else:
                    reply = await route(parts[1].decode("ascii", "replace"))
                    head_only = parts[0] == b"HEAD"
                await stream.send_all(reply.encode(head_only))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            except Exception as exc:  # a failed request must never take the node down
                log.warning("event=http_failed error=%r", f"{type(exc).__name__}: {exc}"[:300])
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    await stream.send_all(Reply(500, f"{type(exc).__name__}\n".encode()).encode())


def host_port_of(listen: str) -> tuple[str, int]:
    """("host", port) of a "HOST:PORT" setting.

    Raises:
        ConfigError: not HOST:PORT.
    """
    from peerdata.config import host_port

    got = host_port(listen)
    if got is None:
        raise ConfigError(f"{listen!r} is not HOST:PORT")
    return got


async def serve_http(host: str, port: int, route: Route, *,
                     task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED
                     ) -> None:
    """Serve `route` on host:port until cancelled; `task_status.started((host, port))` once
    bound (the real port when `port` is 0).

    Raises:
        ConfigError: the address cannot be bound.
    """
    try:
        listeners = await trio.open_tcp_listeners(port, host=host)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    name = listeners[0].socket.getsockname()
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(trio.serve_listeners, partial(_handle, route=route),
                                    listeners))
        task_status.started((name[0], name[1]))


def url_of(host: str, port: int, path: str) -> str:
    """http://host:port/path (IPv6 hosts bracketed)."""
    return f"http://{f'[{host}]' if ':' in host else host}:{port}{path}"
