"""PROTOCOL.md section 3: one encoding per message; every other encoding is refused."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import msgpack
import pytest

from peerdata.errors import RemoteProtocolError
from peerdata.wire import decode, encode

ROOT = Path(__file__).resolve().parent.parent


def load_fuzzer() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fuzz_wire", ROOT / "scripts" / "fuzz_wire.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


FUZZ = load_fuzzer()
VECTORS = FUZZ.load_vectors()


def test_every_deviation_kind_is_produced_and_refused() -> None:
    kinds_seen = set()
    for envelope in VECTORS:
        body = msgpack.unpackb(envelope[2:], raw=False, use_list=False)
        for deviation in FUZZ.DEVIATIONS:
            for target in range(8):
                w = FUZZ.Writer(deviation, target)
                data = envelope[:2] + w.write(body)
                if not w.applied or data == envelope:
                    continue
                kinds_seen.add(deviation)
                with pytest.raises(RemoteProtocolError, match="canonical"):
                    decode(data)
    assert kinds_seen == set(FUZZ.DEVIATIONS)


def test_golden_vectors_still_round_trip_through_the_canonical_check() -> None:
    for envelope in VECTORS:
        assert encode(decode(envelope)) == envelope


def test_the_writer_without_deviation_is_the_canonical_encoder() -> None:
    for envelope in VECTORS:
        body = msgpack.unpackb(envelope[2:], raw=False, use_list=False)
        assert envelope[:2] + FUZZ.Writer("none", 0).write(body) == envelope


def test_fuzzing_finds_no_crash_and_no_accepted_noncanonical_input() -> None:
    result = FUZZ.run(3000, seed=7)
    assert result["crashes"] == 0, result["crash_examples"]
    assert result["noncanonical_accepted"] == 0
    assert result["refused"] > 0 and result["structured_variants"] > len(VECTORS)
