"""The CLI's side of the control endpoint: a small blocking client, one request per call.

Rule: every failure to reach or understand the daemon is a ControlError (exit code
UNREACHABLE); an error the daemon reports travels back as a ControlError too, with the
daemon's error type in the message. The CLI is synchronous, so this client blocks, with a timeout.
"""

from __future__ import annotations

import itertools
import socket
from pathlib import Path
from typing import Any

from peerdata.control.protocol import (
    MAX_LINE_BYTES,
    ControlRequest,
    decode_response,
    encode_request,
)
from peerdata.errors import (
    ConfigError,
    ControlError,
    DataError,
    IdentityError,
    PeerdataError,
    TransportError,
)

CONTROL_SOCKET = "control.sock"

_ids = itertools.count(1)


class DaemonError(ControlError):
    """The daemon understood the request and answered with an error."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(f"{message} ({error_type})")
        self.error_type = error_type


def socket_path(home: Path) -> Path:
    """Where the daemon of `home` listens."""
    return home / CONTROL_SOCKET


def call(home: Path, cmd: str, args: dict[str, Any] | None = None,
         *, timeout_s: float = 30.0) -> dict[str, Any]:
    """Send one command to the daemon of `home` and return its `result` object.

    Raises:
        ControlError: no daemon is listening, it did not answer within `timeout_s`, or the
            answer is malformed.
        DataError, ConfigError, IdentityError, TransportError: the daemon reported one.
        DaemonError (a ControlError): the daemon reported any other error.
    """
    path = socket_path(home)
    req = ControlRequest(id=next(_ids), cmd=cmd, args=args or {})
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout_s)
    try:
        try:
            sock.connect(str(path))
        except FileNotFoundError:
            raise ControlError(
                f"no daemon is running for {home} ({path} is missing; start `peerdata run`)"
            ) from None
        except ConnectionRefusedError:
            raise ControlError(f"no daemon is listening on {path} (stale socket)") from None
        except PermissionError:
            raise ControlError(f"{path}: permission denied (owned by another user?)") from None
        except OSError as exc:
            raise ControlError(f"cannot connect to {path}: {exc.strerror}") from None
        sock.sendall(encode_request(req))
        line = _read_line(sock)
    except TimeoutError:
        raise ControlError(f"the daemon for {home} did not answer within {timeout_s}s") from None
    except OSError as exc:
        raise ControlError(f"control connection to {path} failed: {exc.strerror}") from None
    finally:
        sock.close()
    resp = decode_response(line)
    if resp.id != req.id:
        raise ControlError(f"control answer for request {resp.id}, expected {req.id}")
    if not resp.ok:
        raise daemon_error(resp.error_type or "Error", resp.error_message or "")
    return resp.result or {}


# Daemon-side errors that keep their own class (and so their exit code) in the CLI.
_PASSED_THROUGH: dict[str, type[PeerdataError]] = {
    cls.__name__: cls for cls in (ConfigError, DataError, IdentityError, TransportError)
}


def daemon_error(error_type: str, message: str) -> PeerdataError:
    """The exception to raise for an error the daemon reported.

    DataError, ConfigError, IdentityError and TransportError keep their class (a missing image
    exits 4, an unreachable peer 5); anything else becomes a DaemonError naming the type.
    """
    cls = _PASSED_THROUGH.get(error_type)
    return cls(message) if cls is not None else DaemonError(error_type, message)


def _read_line(sock: socket.socket) -> bytes:
    buf = bytearray()
    while b"\n" not in buf:
        if len(buf) > MAX_LINE_BYTES:
            raise ControlError("the daemon's answer is too long")
        chunk = sock.recv(65536)
        if not chunk:
            raise ControlError("the daemon closed the control connection without answering")
        buf += chunk
    return bytes(buf[: buf.index(b"\n")])
