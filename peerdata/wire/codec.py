"""Message <-> bytes: a 2-byte envelope header followed by one canonical msgpack map.

Rule: `decode` is the receive boundary. Whatever is wrong with bytes from a peer (size, version,
type, msgpack, fields, values, a non-canonical encoding) leaves here as RemoteProtocolError and
nothing else; `encode` is deterministic, so equal messages always encode to equal bytes, and
`decode` accepts only those bytes.

Envelope layout (see proto/PROTOCOL.md):

    byte 0      protocol version (1)
    byte 1      message type tag (Message.TAG)
    bytes 2..   msgpack map {field name: value} with keys in declaration order; bytes as bin,
                text as str, floats as float 64, tuples as arrays, items as nested maps
"""

from __future__ import annotations

import typing
from typing import Any, TypeVar

import msgpack

from peerdata.config import LimitsConfig
from peerdata.errors import LocalProtocolError, RemoteProtocolError
from peerdata.wire.fields import field_hints
from peerdata.wire.messages import MESSAGES_BY_TAG, Message, Record
from peerdata.wire.versions import PROTOCOL_VERSION

HEADER_BYTES = 2
MAX_FIELDS = 32  # no record has more; bounds map sizes before they are allocated
MAX_TEXT_BYTES = 64 * 1024  # longer than any str field may be, so limits bite early

M = TypeVar("M", bound=Message)

_DEFAULT_LIMITS = LimitsConfig()


def to_wire(value: Any) -> Any:
    """The msgpack-ready form of a record or field value (records become ordered dicts)."""
    if isinstance(value, Record):
        return {name: to_wire(getattr(value, name)) for name in field_hints(type(value))}
    if isinstance(value, tuple):
        return [to_wire(item) for item in value]
    return value


def pack(obj: Any) -> bytes:
    """Canonical msgpack: bin for bytes, str for text, 64-bit floats, shortest ints."""
    return msgpack.packb(obj, use_bin_type=True, use_single_float=False, strict_types=True,
                         datetime=False)


def encode(msg: Message) -> bytes:
    """The envelope bytes of `msg`.

    Raises:
        LocalProtocolError: `msg` is not a top-level Message.
    """
    if not isinstance(msg, Message) or type(msg).TAG not in MESSAGES_BY_TAG:
        raise LocalProtocolError(f"cannot encode {type(msg).__name__}: not a top-level message")
    return bytes((PROTOCOL_VERSION, type(msg).TAG)) + pack(to_wire(msg))


def _pairs_to_dict(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise _DuplicateKeyError(sorted({str(k) for k, _ in pairs}))
    return result


class _DuplicateKeyError(Exception):
    def __init__(self, keys: list[str]) -> None:
        super().__init__(", ".join(keys))


def _unpack_body(body: bytes, limits: LimitsConfig) -> Any:
    unpacker = msgpack.Unpacker(
        raw=False,
        use_list=False,
        strict_map_key=True,
        object_pairs_hook=_pairs_to_dict,
        max_buffer_size=max(len(body), 1),
        max_bin_len=limits.max_image_bytes,
        max_str_len=min(MAX_TEXT_BYTES, limits.max_message_bytes),
        max_array_len=limits.max_list_len,
        max_map_len=MAX_FIELDS,
        max_ext_len=0,
    )
    unpacker.feed(body)
    try:
        obj = unpacker.unpack()
    except msgpack.OutOfData:
        raise RemoteProtocolError("malformed msgpack body: truncated") from None
    except _DuplicateKeyError as exc:
        raise RemoteProtocolError(f"malformed msgpack body: a map repeats keys of {exc}") from None
    except UnicodeDecodeError as exc:
        raise RemoteProtocolError(f"malformed msgpack body: text is not UTF-8: {exc}") from None
    except ValueError as exc:  # FormatError, StackError, and the Unpacker's limits
        if "exceeds max" in str(exc):
            raise RemoteProtocolError(f"message body exceeds a limit: {exc}") from None
        raise RemoteProtocolError(f"malformed msgpack body: {exc or type(exc).__name__}") from None
    except Exception as exc:  # msgpack raises a few more on hostile input; all are the peer's
        raise RemoteProtocolError(f"malformed msgpack body: {type(exc).__name__}: {exc}") from None
    if unpacker.tell() != len(body):
        raise RemoteProtocolError(
            f"malformed msgpack body: {len(body) - unpacker.tell()} trailing bytes"
        )
    return obj


def _from_wire(cls: type[Record], obj: Any) -> Record:
    """Build a record from its decoded map; LocalProtocolError on anything wrong."""
    if not isinstance(obj, dict):
        raise LocalProtocolError(f"{cls.__name__} must be a map, got {_wire_type(obj)}")
    hints = field_hints(cls)
    missing = [name for name in hints if name not in obj]
    if missing:
        raise LocalProtocolError(f"{cls.__name__} is missing field(s): {', '.join(missing)}")
    extra = sorted(str(key) for key in obj if key not in hints)
    if extra:
        raise LocalProtocolError(f"{cls.__name__} has unknown field(s): {', '.join(extra)}")
    values: dict[str, Any] = {}
    for name, hint in hints.items():
        value = obj[name]
        inner = _record_type(hint)
        if inner is not None and isinstance(value, tuple):
            value = tuple(_from_wire(inner, item) for item in value)
        values[name] = value
    return cls(**values)


def _record_type(hint: Any) -> type[Record] | None:
    if typing.get_origin(hint) is tuple:
        (inner,) = typing.get_args(hint)[:1]
        if isinstance(inner, type) and issubclass(inner, Record):
            return inner
    return None


def _wire_type(obj: Any) -> str:
    names = {dict: "map", tuple: "array", bytes: "bin", str: "str", type(None): "nil"}
    return names.get(type(obj), type(obj).__name__)


def decode(data: bytes, limits: LimitsConfig | None = None) -> Message:
    """Parse and validate one envelope received from a peer.

    Raises:
        RemoteProtocolError: oversized, unknown version or type, malformed msgpack, missing,
            extra or mistyped fields, or values out of range. Nothing else escapes.
    """
    limits = limits or _DEFAULT_LIMITS
    if len(data) > limits.max_message_bytes:
        raise RemoteProtocolError(
            f"message of {len(data)} bytes exceeds limit {limits.max_message_bytes}"
        )
    if len(data) < HEADER_BYTES + 1:
        raise RemoteProtocolError(f"message of {len(data)} bytes is shorter than an envelope")
    version, tag = data[0], data[1]
    if version != PROTOCOL_VERSION:
        raise RemoteProtocolError(
            f"unsupported protocol version {version} (this node speaks {PROTOCOL_VERSION})"
        )
    cls = MESSAGES_BY_TAG.get(tag)
    if cls is None:
        raise RemoteProtocolError(f"unknown message type tag {tag}")
    obj = _unpack_body(bytes(data[HEADER_BYTES:]), limits)
    try:
        msg = _from_wire(cls, obj)
    except LocalProtocolError as exc:
        raise RemoteProtocolError(f"invalid {cls.__name__}: {exc}") from None
    assert isinstance(msg, cls)
    # Canonical form (PROTOCOL.md section 3): a message has exactly one encoding. Re-encoding
    # the decoded message and comparing catches reordered keys, ints or float 32 for float 64,
    # over-long ints, str/bin/array/map headers longer than needed, in one check that cannot
    # drift from `encode`. It costs one more pack of the message (a memcpy for image bytes).
    if pack(to_wire(msg)) != data[HEADER_BYTES:]:
        raise RemoteProtocolError(f"invalid {cls.__name__}: not in canonical encoding "
                                  "(re-encoding it gives other bytes)")
    return msg


def decode_as(data: bytes, *expected: type[M], limits: LimitsConfig | None = None) -> M:
    """`decode`, then insist the message is one of `expected` (e.g. OfferReply, ErrorReply).

    Raises:
        RemoteProtocolError: as `decode`, or the message is of another type.
    """
    msg = decode(data, limits)
    if not isinstance(msg, expected):
        wanted = " or ".join(cls.__name__ for cls in expected)
        raise RemoteProtocolError(f"expected {wanted}, got {type(msg).__name__}")
    return msg
