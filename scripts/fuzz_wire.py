#!/usr/bin/env python3
"""Fuzz the wire decoders (`peerdata.wire.decode`, the receive boundary, and
`decode_model_update` for envelopes with the ModelUpdate tag) and print one table and ONE JSON
line: {"inputs", "crashes", "noncanonical_accepted", "slowest_ms", ...}.

Rule: every input is judged by one oracle. Anything but a Message or RemoteProtocolError from
the decoder is a crash; an accepted input whose bytes differ from its re-encoding is a
non-canonical encoding accepted (PROTOCOL.md section 3 allows exactly one encoding per message).

Inputs, seeded and reproducible (`--seed`):
- non-canonical re-encodings of every golden vector: one deviation each (map keys reordered, an
  int in a wider format than needed, a float as float 32 or as an int, str/bin/array/map
  headers longer than needed), written by a small msgpack writer below;
- byte mutations of golden vectors and of those variants: bit flips, byte sets, inserts,
  deletions, truncations, splices of two vectors, random tails.

    .venv/bin/python scripts/fuzz_wire.py --inputs 100000
"""

from __future__ import annotations

import argparse
import json
import random
import struct
import sys
import time
from pathlib import Path
from typing import Any

import msgpack

from peerdata.errors import RemoteProtocolError
from peerdata.wire import decode, encode
from peerdata.wire.model_update import (
    MODEL_UPDATE_TAG,
    ModelUpdate,
    TensorBlob,
    decode_model_update,
    encode_model_update,
    sign_model_update,
)

VECTORS_DIR = Path(__file__).resolve().parent.parent / "proto" / "vectors"
MODEL_MAX_BYTES = 1 << 20  # the fuzzed updates are tiny; the real limit is a config value
DEVIATIONS = ("reorder_keys", "wide_int", "float32", "float_as_int", "wide_str", "wide_bin",
              "wide_array", "wide_map")


def load_vectors() -> list[bytes]:
    """The golden envelopes, in file order, plus a signed Vote whose floats are integral (so
    that "float written as an int" has something to deviate on) and two signed ModelUpdates
    (dense and top-k tensors; decoded by `decode_model_update`, their own boundary)."""
    from peerdata.identity import Identity
    from peerdata.wire import sign_vote

    test_key = Identity.from_private_bytes(b"\x04" * 32)  # a fixed TEST key, never a node's
    origin = Identity.from_private_bytes(b"\x05" * 32).peer_id
    vote = sign_vote(test_key, origin=origin, cid=b"\x07" * 32, round_id=2, novel=True,
                     score=2.0, timestamp=1_750_000_000.0)
    dense = TensorBlob(name="fc.weight", dtype="float32", shape=(2, 3), encoding="dense",
                       data=bytes(range(24)), indices=b"")
    topk = TensorBlob(name="fc.bias", dtype="float16", shape=(8,), encoding="topk",
                      data=b"\x00\x3c\x00\xbc", indices=(1).to_bytes(4, "little")
                      + (6).to_bytes(4, "little"))
    updates = [sign_model_update(test_key, round_id=3, base_version=2, kind=kind,
                                 is_delta=delta, num_samples=40, label_counts=(30, 10),
                                 tag="t", tensors=tensors)
               for kind, delta, tensors in (("update", False, (dense,)),
                                            ("gossip", True, (dense, topk)))]
    return [bytes.fromhex(p.read_text(encoding="ascii").strip())
            for p in sorted(VECTORS_DIR.glob("*.hex"))] + [encode(vote)] + [
                encode_model_update(u) for u in updates]


class Writer:
    """A msgpack writer that can deviate from the canonical form once, at a chosen place.

    `deviation` names what to change; `target` is the index (in visiting order) of the value
    of that kind to change. `applied` says whether it happened.
    """

    def __init__(self, deviation: str, target: int) -> None:
        self.deviation, self.target = deviation, target
        self.seen = 0
        self.applied = False

    def _hit(self, kind: str) -> bool:
        if self.deviation != kind or self.applied:
            return False
        hit = self.seen == self.target
        self.seen += 1
        self.applied = hit
        return hit

    def write(self, obj: Any) -> bytes:
        if isinstance(obj, bool) or obj is None:
            return msgpack.packb(obj)
        if isinstance(obj, int):
            if self._hit("wide_int"):
                return b"\xd3" + struct.pack(">q", obj) if obj < 2**63 else \
                    b"\xcf" + struct.pack(">Q", obj)
            return msgpack.packb(obj)
        if isinstance(obj, float):
            if self._hit("float32") and struct.unpack(">f", struct.pack(">f", obj))[0] == obj:
                return b"\xca" + struct.pack(">f", obj)
            if self._hit("float_as_int") and obj.is_integer() and abs(obj) < 2**62:
                return msgpack.packb(int(obj))
            return msgpack.packb(obj, use_single_float=False)
        if isinstance(obj, str):
            raw = obj.encode()
            if self._hit("wide_str"):
                return b"\xdb" + struct.pack(">I", len(raw)) + raw
            return msgpack.packb(obj)
        if isinstance(obj, bytes):
            if self._hit("wide_bin"):
                return b"\xc6" + struct.pack(">I", len(obj)) + obj
            return msgpack.packb(obj, use_bin_type=True)
        if isinstance(obj, tuple | list):
            head = (b"\xdd" + struct.pack(">I", len(obj))) if self._hit("wide_array") else \
                _array_header(len(obj))
            return head + b"".join(self.write(v) for v in obj)
        if isinstance(obj, dict):
            items = list(obj.items())
            if len(items) > 1 and self._hit("reorder_keys"):
                items = items[1:] + items[:1]
            head = (b"\xdf" + struct.pack(">I", len(items))) if self._hit("wide_map") else \
                _map_header(len(items))
            return head + b"".join(self.write(k) + self.write(v) for k, v in items)
        raise TypeError(type(obj))


def _array_header(n: int) -> bytes:
    return bytes((0x90 | n,)) if n < 16 else (b"\xdc" + struct.pack(">H", n) if n < 2**16 else
                                               b"\xdd" + struct.pack(">I", n))


def _map_header(n: int) -> bytes:
    return bytes((0x80 | n,)) if n < 16 else (b"\xde" + struct.pack(">H", n) if n < 2**16 else
                                               b"\xdf" + struct.pack(">I", n))


def noncanonical_variants(envelope: bytes, rng: random.Random) -> list[bytes]:
    """Every single-deviation re-encoding of `envelope` that differs from it (a few per kind)."""
    body = msgpack.unpackb(envelope[2:], raw=False, use_list=False, strict_map_key=False)
    out = []
    for deviation in DEVIATIONS:
        for target in range(8):
            w = Writer(deviation, target)
            data = envelope[:2] + w.write(body)
            if w.applied and data != envelope:
                out.append(data)
    rng.shuffle(out)
    return out


def mutate(data: bytes, rng: random.Random, pool: list[bytes]) -> bytes:
    """One random byte-level mutation of `data`."""
    b = bytearray(data)
    op = rng.randrange(7)
    if op == 0 and b:
        i = rng.randrange(len(b))
        b[i] ^= 1 << rng.randrange(8)
    elif op == 1 and b:
        b[rng.randrange(len(b))] = rng.choice((0x00, 0x7F, 0x80, 0xC0, 0xC1, 0xCA, 0xCB, 0xCC,
                                               0xCF, 0xD3, 0xD9, 0xDB, 0xDC, 0xDE, 0xFF))
    elif op == 2:
        i = rng.randrange(len(b) + 1)
        b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 5)))
    elif op == 3 and len(b) > 1:
        i = rng.randrange(len(b))
        del b[i:i + rng.randrange(1, 5)]
    elif op == 4:
        b = b[:rng.randrange(len(b) + 1)]
    elif op == 5:
        other = rng.choice(pool)
        b = b[:rng.randrange(len(b) + 1)] + other[rng.randrange(len(other) + 1):]
    else:
        b += bytes(rng.randrange(256) for _ in range(rng.randrange(1, 9)))
    return bytes(b)


def decode_any(data: bytes) -> Any:
    """Decode with the boundary the envelope's tag belongs to (ModelUpdate or the rest)."""
    if len(data) > 1 and data[1] == MODEL_UPDATE_TAG:
        return decode_model_update(data, MODEL_MAX_BYTES)
    return decode(data)


def encode_any(msg: Any) -> bytes:
    return encode_model_update(msg) if isinstance(msg, ModelUpdate) else encode(msg)


def judge(data: bytes) -> tuple[str, float]:
    """('refused' | 'accepted' | 'noncanonical' | 'crash:<type>', seconds)."""
    t0 = time.perf_counter()
    try:
        msg = decode_any(data)
    except RemoteProtocolError:
        return "refused", time.perf_counter() - t0
    except Exception as exc:  # the oracle: nothing else may leave the boundary
        return f"crash:{type(exc).__name__}", time.perf_counter() - t0
    dt = time.perf_counter() - t0
    return ("accepted" if encode_any(msg) == data else "noncanonical"), dt


def run(n: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    vectors = load_vectors()
    variants = [v for env in vectors for v in noncanonical_variants(env, rng)]
    pool = vectors + variants
    counts: dict[str, int] = {}
    crashes: list[str] = []
    slowest = 0.0
    structured_accepted = model_inputs = 0
    for i in range(n):
        if i < len(variants):
            data, structured = variants[i], True
        else:
            data = pool[rng.randrange(len(pool))]
            for _ in range(rng.randrange(1, 4)):
                data = mutate(data, rng, pool)
            structured = False
        model_inputs += len(data) > 1 and data[1] == MODEL_UPDATE_TAG
        verdict, dt = judge(data)
        slowest = max(slowest, dt)
        kind = verdict.split(":")[0]
        counts[kind] = counts.get(kind, 0) + 1
        if kind == "crash" and len(crashes) < 5:
            crashes.append(f"{verdict} on {data[:64].hex()}")
        if structured and verdict != "refused":
            structured_accepted += 1
    return {"inputs": n, "crashes": counts.get("crash", 0),
            "noncanonical_accepted": counts.get("noncanonical", 0) + structured_accepted,
            "slowest_ms": round(slowest * 1000, 3), "refused": counts.get("refused", 0),
            "accepted_canonical": counts.get("accepted", 0),
            "structured_variants": min(len(variants), n), "seed": seed,
            "model_update_inputs": model_inputs,
            "crash_examples": crashes}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=int, default=100_000, help="how many inputs to decode")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    result = run(args.inputs, args.seed)
    result["wall_s"] = round(time.perf_counter() - t0, 2)
    rows = [("inputs", result["inputs"]), ("structured non-canonical variants",
                                           result["structured_variants"]),
            ("ModelUpdate inputs", result["model_update_inputs"]),
            ("refused", result["refused"]), ("accepted (canonical)",
                                             result["accepted_canonical"]),
            ("non-canonical accepted", result["noncanonical_accepted"]),
            ("crashes", result["crashes"]), ("slowest decode (ms)", result["slowest_ms"]),
            ("wall (s)", result["wall_s"])]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    for example in result["crash_examples"]:
        print("crash:", example)
    print(json.dumps(result, sort_keys=True))
    return 0 if result["crashes"] == 0 and result["noncanonical_accepted"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
