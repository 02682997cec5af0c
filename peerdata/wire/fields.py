"""What a valid wire field is: size limits, type and range checks, and the `Record` base that
runs them when any message or item is built.

Rule: a check here raises LocalProtocolError naming the class and field; the codec turns the
same failure on received bytes into RemoteProtocolError. Messages are in `wire.messages`.
"""

from __future__ import annotations

import hashlib
import math
import re
import types
import typing
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Union

from peerdata.errors import LocalProtocolError

CID_BYTES = 32  # SHA-256 of the image bytes
NONCE_BYTES = 16
SIGNATURE_BYTES = 64
MAX_UINT = 2**63 - 1  # every integer on the wire fits a signed 64-bit int
MAX_LABEL = 2**31 - 1
MAX_NAME_CHARS = 64
MAX_AGENT_CHARS = 128
MAX_ADDR_CHARS = 256
MAX_LISTEN_ADDRS = 32
MAX_MEDIA_TYPE_CHARS = 64
MAX_ERROR_MESSAGE_CHARS = 1024
UTILITY_TOLERANCE = 1e-9

_PEER_ID_RE = re.compile(r"[1-9A-HJ-NP-Za-km-z]{32,128}")  # base58btc, any key type
_MEDIA_TYPE_RE = re.compile(r"[a-z0-9][a-z0-9.+-]*/[a-z0-9][a-z0-9.+-]*")
_ERROR_CODE_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")

ERROR_CODES = ("bad_request", "not_found", "busy", "unsupported", "internal")
"""ErrorReply codes a version-1 node sends; receivers must accept any well-formed code."""


def content_id(data: bytes) -> bytes:
    """The content ID of image bytes: their SHA-256 digest."""
    return hashlib.sha256(data).digest()


# --- field checks ---------------------------------------------------------------------------

def _fail(cls: type, name: str, why: str) -> typing.NoReturn:
    raise LocalProtocolError(f"{cls.__name__}.{name} {why}")


def type_name(hint: Any) -> str:
    """The schema spelling of a field's type hint, e.g. `list[bytes]` or `int|null`."""
    origin = typing.get_origin(hint)
    if origin is tuple:
        return f"list[{type_name(typing.get_args(hint)[0])}]"
    if origin in (Union, types.UnionType):
        args = typing.get_args(hint)
        return "|".join("null" if a is type(None) else type_name(a) for a in args)
    return str(hint.__name__)


def _check_type(cls: type, name: str, hint: Any, value: Any) -> Any:
    """Return `value` (ints coerced for float fields) or raise LocalProtocolError."""
    origin = typing.get_origin(hint)
    if origin is tuple:
        if not isinstance(value, tuple):
            _fail(cls, name, f"must be {type_name(hint)} (a tuple), got {type(value).__name__}")
        inner = typing.get_args(hint)[0]
        for i, item in enumerate(value):
            _check_type(cls, f"{name}[{i}]", inner, item)
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in typing.get_args(hint):
            return value
        (inner,) = [a for a in typing.get_args(hint) if a is not type(None)]
        return _check_type(cls, name, inner, value)
    if hint is float:
        if isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, float):
            _fail(cls, name, f"must be float, got {type(value).__name__}")
        if not math.isfinite(value):
            _fail(cls, name, f"must be finite, got {value}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            _fail(cls, name, f"must be int, got {type(value).__name__}")
        if not -MAX_UINT - 1 <= value <= MAX_UINT:
            _fail(cls, name, "does not fit a signed 64-bit integer")
        return value
    if not isinstance(value, hint) or (hint is not bool and isinstance(value, bool)):
        _fail(cls, name, f"must be {type_name(hint)}, got {type(value).__name__}")
    return value


_HINTS: dict[type, dict[str, Any]] = {}


def field_hints(cls: type) -> dict[str, Any]:
    """Field name -> resolved type hint, in wire order."""
    hints = _HINTS.get(cls)
    if hints is None:
        resolved = typing.get_type_hints(cls)
        hints = {f.name: resolved[f.name] for f in fields(cls)}
        _HINTS[cls] = hints
    return hints


def _non_negative(cls: type, name: str, value: int) -> None:
    if value < 0:
        _fail(cls, name, f"must be >= 0, got {value}")


def _peer_id(cls: type, name: str, value: str) -> None:
    if not _PEER_ID_RE.fullmatch(value):
        _fail(cls, name, f"is not a base58 peer ID: {value[:80]!r}")


def _text(cls: type, name: str, value: str, max_chars: int, *, empty: bool = False) -> None:
    if not empty and not value:
        _fail(cls, name, "must not be empty")
    if len(value) > max_chars:
        _fail(cls, name, f"has {len(value)} chars, limit {max_chars}")


def _fixed_bytes(cls: type, name: str, value: bytes, size: int) -> None:
    if len(value) != size:
        _fail(cls, name, f"must be {size} bytes, got {len(value)}")


def _cids(cls: type, name: str, values: tuple[bytes, ...]) -> None:
    for i, cid in enumerate(values):
        _fixed_bytes(cls, f"{name}[{i}]", cid, CID_BYTES)
    if len(set(values)) != len(values):
        _fail(cls, name, "holds duplicate content IDs")


def _vote_state(cls: type, origin: str, novel_votes: int, voters: tuple[str, ...],
                hops: int) -> None:
    """The relay invariants shared by OfferItem, RelayState and Feedback."""
    _peer_id(cls, "origin", origin)
    for i, voter in enumerate(voters):
        _peer_id(cls, f"voters[{i}]", voter)
    if len(set(voters)) != len(voters):
        _fail(cls, "voters", "holds a peer twice")
    if origin in voters:
        _fail(cls, "voters", "must not hold the origin (it does not vote on its own image)")
    if not 0 <= novel_votes <= len(voters):
        _fail(cls, "novel_votes", f"must be in [0, {len(voters)}] (len(voters)), got {novel_votes}")
    _non_negative(cls, "hops", hops)


# --- base classes -------------------------------------------------------------------------

@dataclass(frozen=True)
class Record:
    """A validated value carried on the wire (a message or an item inside one)."""

    def __post_init__(self) -> None:
        cls = type(self)
        for name, hint in field_hints(cls).items():
            value = getattr(self, name)
            checked = _check_type(cls, name, hint, value)
            if checked is not value:
                object.__setattr__(self, name, checked)
        self._check()

    def _check(self) -> None:
        """Range and consistency checks beyond types; raise LocalProtocolError."""


@dataclass(frozen=True)
class Message(Record):
    """A top-level message: what one envelope carries; TAG is its envelope type byte."""

    TAG: ClassVar[int] = 0
