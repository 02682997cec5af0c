"""ModelUpdate: a signed, versioned, size-limited model (or model delta) on /peerdata/model/1.0.0.

Rule: pure like the rest of `peerdata.wire` (no torch, no numpy, no trio): tensors travel as
little-endian bytes with a dtype name and a shape, dense or top-k sparse, and `decode_model_update`
is the one receive boundary where anything wrong with a peer's bytes becomes RemoteProtocolError.
Whether the numbers are finite and the shapes match our model is checked one layer up
(`peerdata.federated.validate`), because only that layer knows the model.

Envelope: byte 0 protocol version, byte 1 tag 16, then one canonical msgpack map in field order.
Signature: Ed25519 by `sender` over b"peerdata-sig\\x00" + version + tag + msgpack(every field but
`signature`), the same scheme as Votes (see `peerdata.wire.signing`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import msgpack

from peerdata.errors import LocalProtocolError, RemoteProtocolError
from peerdata.identity import Identity, verify
from peerdata.wire.codec import pack, to_wire
from peerdata.wire.fields import SIGNATURE_BYTES, Record, _fail, _peer_id, field_hints
from peerdata.wire.messages import Message
from peerdata.wire.signing import SIGNING_DOMAIN
from peerdata.wire.versions import MODEL_PROTOCOL, PROTOCOL_VERSION

MODEL_UPDATE_TAG = 16  # outside the image-sharing tags 1..9; only MODEL_PROTOCOL carries it
DTYPE_BYTES = {"float32": 4, "float16": 2, "int64": 8}
ENCODINGS = ("dense", "topk")
KINDS = ("update", "global", "seed", "gossip", "plan")  # plan: label counts only (multi-tier)
INDEX_BYTES = 4  # top-k indices are uint32 little-endian offsets into the flattened tensor
MAX_TENSORS = 512
MAX_DIMS = 8
MAX_NAME_CHARS = 200
MAX_CLASSES = 1000
MAX_TAG_CHARS = 64
_PLACEHOLDER = b"\x00" * SIGNATURE_BYTES

__all__ = [
    "DTYPE_BYTES", "ENCODINGS", "KINDS", "MODEL_PROTOCOL", "MODEL_UPDATE_TAG", "ModelUpdate",
    "TensorBlob", "decode_model_update", "encode_model_update", "sign_model_update",
    "verify_model_update",
]


@dataclasses.dataclass(frozen=True)
class TensorBlob(Record):
    """One named tensor: dense bytes, or the top-k (index, value) pairs of a flattened delta."""

    name: str
    dtype: str  # a DTYPE_BYTES key
    shape: tuple[int, ...]
    encoding: str  # "dense" | "topk"
    data: bytes  # values, little-endian
    indices: bytes  # topk: uint32 little-endian flat indices, strictly increasing; dense: b""

    @property
    def numel(self) -> int:
        """Elements of the full (dense) tensor."""
        return math.prod(self.shape)

    def _check(self) -> None:
        cls = type(self)
        if not 0 < len(self.name) <= MAX_NAME_CHARS:
            _fail(cls, "name", f"must have 1..{MAX_NAME_CHARS} chars")
        if self.dtype not in DTYPE_BYTES:
            _fail(cls, "dtype", f"must be one of {tuple(DTYPE_BYTES)}, got {self.dtype[:20]!r}")
        if len(self.shape) > MAX_DIMS or any(d < 0 for d in self.shape):
            _fail(cls, "shape", f"must have <= {MAX_DIMS} non-negative dims, got {self.shape}")
        if self.encoding not in ENCODINGS:
            _fail(cls, "encoding", f"must be one of {ENCODINGS}, got {self.encoding[:20]!r}")
        width = DTYPE_BYTES[self.dtype]
        if self.encoding == "dense":
            if self.indices:
                _fail(cls, "indices", "must be empty for a dense tensor")
            if len(self.data) != self.numel * width:
                _fail(cls, "data", f"has {len(self.data)} bytes, shape {self.shape} of "
                                   f"{self.dtype} needs {self.numel * width}")
            return
        if len(self.indices) % INDEX_BYTES or len(self.data) % width:
            _fail(cls, "data", "top-k indices/values are not whole elements")
        count = len(self.indices) // INDEX_BYTES
        if len(self.data) // width != count or count > self.numel:
            _fail(cls, "data", f"top-k needs one value per index and at most {self.numel}")
        offsets = [int.from_bytes(self.indices[i:i + INDEX_BYTES], "little")
                   for i in range(0, len(self.indices), INDEX_BYTES)]
        if any(b <= a for a, b in zip(offsets, offsets[1:], strict=False)) or (
            offsets and offsets[-1] >= self.numel
        ):
            _fail(cls, "indices", "must be strictly increasing offsets inside the tensor")


@dataclasses.dataclass(frozen=True)
class ModelUpdate(Message):
    """A peer's model for one federated round, signed by `sender`.

    `base_version` is the global model version the sender started from; when `is_delta` the
    tensors are `trained - base` and the receiver adds them to its copy of that version.
    """

    TAG: ClassVar[int] = MODEL_UPDATE_TAG
    sender: str
    round_id: int
    base_version: int
    kind: str  # update (to the aggregator) | global | seed (multi-tier) | gossip | plan
    is_delta: bool
    num_samples: int
    label_counts: tuple[int, ...]  # label histogram for multi-tier planning; may be empty
    tag: str  # task tag for clustered FL; may be empty
    tensors: tuple[TensorBlob, ...]
    signature: bytes

    def _check(self) -> None:
        cls = type(self)
        _peer_id(cls, "sender", self.sender)
        for name in ("round_id", "base_version", "num_samples"):
            if getattr(self, name) < 0:
                _fail(cls, name, f"must be >= 0, got {getattr(self, name)}")
        if self.kind not in KINDS:
            _fail(cls, "kind", f"must be one of {KINDS}, got {self.kind[:20]!r}")
        if len(self.label_counts) > MAX_CLASSES or any(c < 0 for c in self.label_counts):
            _fail(cls, "label_counts", f"must be <= {MAX_CLASSES} counts, each >= 0")
        if len(self.tag) > MAX_TAG_CHARS:
            _fail(cls, "tag", f"has more than {MAX_TAG_CHARS} chars")
        if not 0 < len(self.tensors) <= MAX_TENSORS:
            _fail(cls, "tensors", f"must hold 1..{MAX_TENSORS} tensors, got {len(self.tensors)}")
        names = [t.name for t in self.tensors]
        if len(set(names)) != len(names):
            _fail(cls, "tensors", "repeat a tensor name")
        if len(self.signature) != SIGNATURE_BYTES:
            _fail(cls, "signature", f"must be {SIGNATURE_BYTES} bytes, got {len(self.signature)}")


def signing_payload(msg: ModelUpdate) -> bytes:
    """The bytes the sender signs: every field but `signature`, canonically encoded."""
    body = {name: to_wire(getattr(msg, name))
            for name in field_hints(ModelUpdate) if name != "signature"}
    return SIGNING_DOMAIN + bytes((PROTOCOL_VERSION, MODEL_UPDATE_TAG)) + pack(body)


def sign_model_update(identity: Identity, **fields: Any) -> ModelUpdate:
    """Build a ModelUpdate from `fields` (all but sender and signature) and sign it.

    Raises:
        LocalProtocolError: a field is invalid.
    """
    unsigned = ModelUpdate(sender=identity.peer_id, signature=_PLACEHOLDER, **fields)
    return dataclasses.replace(unsigned, signature=identity.sign(signing_payload(unsigned)))


def verify_model_update(msg: ModelUpdate) -> None:
    """Check `msg` was signed by `msg.sender` and not altered since.

    Raises:
        SignatureError: it was not.
    """
    verify(msg.sender, signing_payload(msg), msg.signature)


def encode_model_update(msg: ModelUpdate) -> bytes:
    """Envelope bytes of `msg` (deterministic)."""
    if not isinstance(msg, ModelUpdate):
        raise LocalProtocolError(f"cannot encode {type(msg).__name__} as a ModelUpdate")
    return bytes((PROTOCOL_VERSION, MODEL_UPDATE_TAG)) + pack(to_wire(msg))


def _record(cls: type[Record], obj: Any) -> Any:
    if not isinstance(obj, dict):
        raise LocalProtocolError(f"{cls.__name__} must be a map")
    hints = field_hints(cls)
    if set(obj) != set(hints):
        raise LocalProtocolError(
            f"{cls.__name__} fields differ: missing {sorted(set(hints) - set(obj))}, "
            f"unknown {sorted(str(k) for k in set(obj) - set(hints))}"
        )
    values = dict(obj)
    if cls is ModelUpdate:
        if not isinstance(values["tensors"], tuple):
            raise LocalProtocolError("ModelUpdate.tensors must be an array")
        values["tensors"] = tuple(_record(TensorBlob, t) for t in values["tensors"])
    return cls(**values)


def decode_model_update(data: bytes, max_bytes: int) -> ModelUpdate:
    """Parse one ModelUpdate envelope from a peer, refusing anything over `max_bytes`.

    Raises:
        RemoteProtocolError: oversized, wrong version or tag, malformed msgpack, or any field
            missing, extra, mistyped or out of range. Nothing else escapes.
    """
    if len(data) > max_bytes:
        raise RemoteProtocolError(f"model update of {len(data)} bytes exceeds limit {max_bytes}")
    if len(data) < 3:
        raise RemoteProtocolError(f"model update of {len(data)} bytes is shorter than an envelope")
    if data[0] != PROTOCOL_VERSION:
        raise RemoteProtocolError(f"unsupported protocol version {data[0]}")
    if data[1] != MODEL_UPDATE_TAG:
        raise RemoteProtocolError(f"expected a ModelUpdate (tag {MODEL_UPDATE_TAG}), got {data[1]}")
    try:
        obj = msgpack.unpackb(
            bytes(data[2:]), raw=False, use_list=False, strict_map_key=True,
            max_bin_len=max_bytes, max_str_len=64 * 1024, max_array_len=max(MAX_TENSORS,
                                                                              MAX_CLASSES),
            max_map_len=32, max_ext_len=0,
        )
    except Exception as exc:  # msgpack raises many types on hostile input; all are the peer's
        raise RemoteProtocolError(f"malformed model update: {type(exc).__name__}: {exc}") from None
    try:
        msg = _record(ModelUpdate, obj)
    except LocalProtocolError as exc:
        raise RemoteProtocolError(f"invalid ModelUpdate: {exc}") from None
    assert isinstance(msg, ModelUpdate)
    # Canonical form, as `codec.decode` checks for every other message (PROTOCOL.md section 3):
    # one encoding per update, so a signed update cannot travel in several byte forms.
    if encode_model_update(msg) != data:
        raise RemoteProtocolError("invalid ModelUpdate: not in canonical encoding "
                                  "(re-encoding it gives other bytes)")
    return msg
