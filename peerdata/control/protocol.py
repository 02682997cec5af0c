"""The control protocol: newline-delimited JSON between the CLI and a running daemon.

Rule: this module is pure (no sockets, no trio). A request is one JSON object on one line,
`{"id": N, "cmd": NAME, "args": {...}}`; the answer is one line, either
`{"id": N, "ok": true, "result": {...}}` or `{"id": N, "ok": false, "error": {"type", "message"}}`.
Anything else a client sends is a ControlError raised by `decode_request`, and only there.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from peerdata.errors import ControlError

# One line is at most this long; a longer one is refused before it is parsed.
MAX_LINE_BYTES = 1024 * 1024
# Commands a daemon answers today; later issues append theirs (rounds, shared, votes, ...).
COMMANDS: frozenset[str] = frozenset({"status", "peers", "send", "wait", "stop",
                                      "fleet_revocations"})


@dataclass(frozen=True)
class ControlRequest:
    """One command sent to the daemon."""

    id: int
    cmd: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ControlResponse:
    """The daemon's answer to one request."""

    id: int
    ok: bool
    result: dict[str, Any] | None = None
    error_type: str | None = None
    error_message: str | None = None


def _line(obj: dict[str, Any]) -> bytes:
    data = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode() + b"\n"
    if len(data) > MAX_LINE_BYTES:
        raise ControlError(f"control message of {len(data)} bytes exceeds {MAX_LINE_BYTES}")
    return data


def _parse(line: bytes) -> dict[str, Any]:
    if len(line) > MAX_LINE_BYTES:
        raise ControlError(f"control line of {len(line)} bytes exceeds {MAX_LINE_BYTES}")
    try:
        obj = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ControlError(f"control line is not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ControlError("control line must be a JSON object")
    return obj


def encode_request(req: ControlRequest) -> bytes:
    """Return the request as one newline-terminated line."""
    return _line({"id": req.id, "cmd": req.cmd, "args": req.args})


def decode_request(line: bytes, commands: frozenset[str] = COMMANDS) -> ControlRequest:
    """Parse and check one request line.

    Raises:
        ControlError: not JSON, not an object, a bad id/args, or an unknown command.
    """
    obj = _parse(line)
    rid, cmd, args = obj.get("id", 0), obj.get("cmd"), obj.get("args", {})
    if isinstance(rid, bool) or not isinstance(rid, int):
        raise ControlError("request id must be an integer")
    if not isinstance(cmd, str):
        raise ControlError("request needs a string 'cmd'")
    if cmd not in commands:
        raise ControlError(f"unknown command {cmd!r} (known: {', '.join(sorted(commands))})")
    if not isinstance(args, dict):
        raise ControlError("request 'args' must be an object")
    return ControlRequest(id=rid, cmd=cmd, args=args)


def encode_response(resp: ControlResponse) -> bytes:
    """Return the response as one newline-terminated line."""
    obj: dict[str, Any] = {"id": resp.id, "ok": resp.ok}
    if resp.ok:
        obj["result"] = resp.result or {}
    else:
        obj["error"] = {"type": resp.error_type or "Error", "message": resp.error_message or ""}
    return _line(obj)


def decode_response(line: bytes) -> ControlResponse:
    """Parse one response line.

    Raises:
        ControlError: the daemon answered with something that is not a response.
    """
    obj = _parse(line)
    rid, ok = obj.get("id"), obj.get("ok")
    if isinstance(rid, bool) or not isinstance(rid, int) or not isinstance(ok, bool):
        raise ControlError("malformed control response (needs integer id and boolean ok)")
    if ok:
        result = obj.get("result", {})
        if not isinstance(result, dict):
            raise ControlError("malformed control response: result must be an object")
        return ControlResponse(id=rid, ok=True, result=result)
    err = obj.get("error")
    if not isinstance(err, dict):
        raise ControlError("malformed control response: error must be an object")
    return ControlResponse(
        id=rid,
        ok=False,
        error_type=str(err.get("type", "Error")),
        error_message=str(err.get("message", "")),
    )


def error_response(rid: int, exc: BaseException) -> ControlResponse:
    """Build the failure answer for `exc` (its class name travels as the error type)."""
    return ControlResponse(
        id=rid, ok=False, error_type=type(exc).__name__, error_message=str(exc)
    )
