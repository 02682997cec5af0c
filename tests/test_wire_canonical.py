"""PROTOCOL.md section 3: one encoding per message; every other encoding is refused."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import msgpack
import pytest

from peerdata.errors import RemoteProtocolError

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
                    FUZZ.decode_any(data)
    assert kinds_seen == set(FUZZ.DEVIATIONS)


def test_golden_vectors_still_round_trip_through_the_canonical_check() -> None:
    for envelope in VECTORS:
        assert FUZZ.encode_any(FUZZ.decode_any(envelope)) == envelope


def test_the_writer_without_deviation_is_the_canonical_encoder() -> None:
    for envelope in VECTORS:
        body = msgpack.unpackb(envelope[2:], raw=False, use_list=False)
        assert envelope[:2] + FUZZ.Writer("none", 0).write(body) == envelope


def test_fuzzing_finds_no_crash_and_no_accepted_noncanonical_input() -> None:
    result = FUZZ.run(3000, seed=7)
    assert result["crashes"] == 0, result["crash_examples"]
    assert result["noncanonical_accepted"] == 0
    assert result["refused"] > 0 and result["structured_variants"] > len(VECTORS)


def test_a_model_update_has_one_encoding() -> None:
    """Federation's ModelUpdate (its own envelope) gets the same canonical check."""
    import torch

    from peerdata.federated.tensors import BlobOptions, blobs_from_state
    from peerdata.identity import Identity
    from peerdata.wire.model_update import (
        decode_model_update,
        encode_model_update,
        sign_model_update,
    )

    state = {"fc.bias": torch.tensor([0.5, -0.25])}
    good = encode_model_update(sign_model_update(
        Identity.from_private_bytes(bytes(range(32))), round_id=3, base_version=2,
        kind="update", is_delta=False, num_samples=10, label_counts=(6, 4), tag="",
        tensors=blobs_from_state(state, BlobOptions(), None)))
    assert encode_model_update(decode_model_update(good, 1 << 20)) == good
    body = msgpack.unpackb(good[2:], raw=False)
    reordered = good[:2] + msgpack.packb(dict(reversed(list(body.items()))), use_bin_type=True)
    wide = good[:2] + msgpack.packb({**body, "num_samples": 10.0}, use_bin_type=True)
    for bad in (reordered, wide):
        assert bad != good
        with pytest.raises(RemoteProtocolError):
            decode_model_update(bad, 1 << 20)
