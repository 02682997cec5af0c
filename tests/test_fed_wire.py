"""ModelUpdate on the wire, and the receive boundary: bad updates never reach the model."""

from __future__ import annotations

import dataclasses
import logging

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from peerdata.errors import LocalProtocolError, RemoteProtocolError, SignatureError
from peerdata.federated.tensors import BlobOptions, blobs_from_state, state_from_blobs
from peerdata.federated.validate import Expectation, UpdateValidator
from peerdata.identity import Identity
from peerdata.wire.model_update import (
    ModelUpdate,
    TensorBlob,
    decode_model_update,
    encode_model_update,
    sign_model_update,
    signing_payload,
    verify_model_update,
)

ALICE = Identity.from_private_bytes(bytes(range(32)))
MALLORY = Identity.from_private_bytes(bytes(range(1, 33)))
LIMIT = 1 << 20
EXPECT = Expectation(round_id=3, base_version=2, kinds=frozenset({"update"}), max_bytes=LIMIT)


def model() -> dict[str, torch.Tensor]:
    return {
        "conv.weight": torch.arange(12, dtype=torch.float32).reshape(2, 2, 3) / 10,
        "fc.bias": torch.tensor([0.5, -0.25]),
        "bn.num_batches_tracked": torch.tensor(4, dtype=torch.int64),
    }


def update_bytes(identity: Identity = ALICE, *, state: dict[str, torch.Tensor] | None = None,
                 round_id: int = 3, options: BlobOptions | None = None,
                 base: dict[str, torch.Tensor] | None = None, **overrides: object) -> bytes:
    fields: dict[str, object] = dict(
        round_id=round_id, base_version=2, kind="update", is_delta=base is not None,
        num_samples=10, label_counts=(6, 4), tag="",
        tensors=blobs_from_state(state or model(), options or BlobOptions(), base),
    )
    fields.update(overrides)
    return encode_model_update(sign_model_update(identity, **fields))


def test_roundtrip_sign_verify() -> None:
    payload = update_bytes()
    msg = decode_model_update(payload, LIMIT)
    verify_model_update(msg)
    assert encode_model_update(msg) == payload
    got = UpdateValidator(model()).check(ALICE.peer_id, payload, EXPECT)
    assert all(torch.equal(got.state[k], v) for k, v in model().items())
    assert got.num_samples == 10 and got.label_counts == (6, 4)


def test_float16_and_topk_delta() -> None:
    base = model()
    trained = {k: v + (0.5 if v.is_floating_point() else 0) for k, v in base.items()}
    trained["conv.weight"][0, 0, 0] += 5.0
    half = UpdateValidator(base).check(
        ALICE.peer_id, update_bytes(state=trained, options=BlobOptions("float16"), base=base),
        EXPECT)
    assert torch.allclose(half.state["conv.weight"], trained["conv.weight"], atol=1e-2)
    sparse_payload = update_bytes(state=trained, options=BlobOptions(topk_fraction=0.1),
                                  base=base)
    assert len(sparse_payload) < len(update_bytes(state=trained, base=base))
    sparse = UpdateValidator(base).check(ALICE.peer_id, sparse_payload, EXPECT)
    # only the largest delta of conv.weight travelled; the rest stayed at the base value
    assert float(sparse.state["conv.weight"][0, 0, 0]) == pytest.approx(5.5)
    assert float(sparse.state["conv.weight"][1, 1, 2]) == pytest.approx(1.1)
    with pytest.raises(LocalProtocolError, match="base"):
        blobs_from_state(trained, BlobOptions(topk_fraction=0.5))


def test_error_feedback_sends_what_top_k_left_out_in_later_rounds() -> None:
    from peerdata.federated.tensors import ErrorFeedback

    base = {"w": torch.zeros(4), "steps": torch.tensor(3, dtype=torch.int64)}
    trained = {"w": torch.tensor([4.0, -3.0, 2.0, 1.0]), "steps": torch.tensor(3)}
    half = BlobOptions(topk_fraction=0.5)
    memory = ErrorFeedback()
    first = state_from_blobs(memory.blobs(trained, half, base), base, base)
    assert first["w"].tolist() == [4.0, -3.0, 0.0, 0.0]  # the two largest changes
    assert memory.norm() == pytest.approx(5.0 ** 0.5)
    # next round the robot did not move: what was left out travels now
    second = state_from_blobs(memory.blobs(first, half, first), first, first)
    assert second["w"].tolist() == [4.0, -3.0, 2.0, 1.0]
    assert memory.norm() == 0.0
    # without the memory, those two coordinates would never have been sent
    assert state_from_blobs(blobs_from_state(first, half, first), first, first)["w"].tolist() == [
        4.0, -3.0, 0.0, 0.0]


def test_the_exchange_sends_top_k_deltas_with_memory() -> None:
    from peerdata.config import FederationConfig
    from peerdata.federated import FederatedPeer, LocalModel
    from peerdata.ml.aggregate import FedAvg

    base = {"w": torch.zeros(4)}
    trained = {"w": torch.tensor([4.0, -3.0, 2.0, 1.0])}
    peer = FederatedPeer(ALICE, FederationConfig(enabled=True, topk_fraction=0.5), FedAvg(),
                         base)

    def sent(state: dict[str, torch.Tensor], start: dict[str, torch.Tensor]) -> list[float]:
        payload = peer.encode_update(3, "update", state, LocalModel(state, 10), base=start,
                                     base_version=2, options=peer.options)
        return UpdateValidator(start).check(ALICE.peer_id, payload, EXPECT).state["w"].tolist()

    first = sent(trained, base)
    assert first == [4.0, -3.0, 0.0, 0.0]
    held = {"w": torch.tensor(first)}
    assert sent(held, held) == [4.0, -3.0, 2.0, 1.0]  # the rest, one round later


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(-1e4, 1e4, width=32), min_size=1, max_size=40),
       st.sampled_from(["float32", "float16"]))
def test_dense_blob_roundtrip(values: list[float], dtype: str) -> None:
    state = {"w": torch.tensor(values)}
    out = state_from_blobs(blobs_from_state(state, BlobOptions(dtype)), state)
    assert torch.allclose(out["w"], state["w"], rtol=1e-3 if dtype == "float16" else 0,
                          atol=10.0 if dtype == "float16" else 0)


def test_blob_refuses_inconsistent_sizes() -> None:
    with pytest.raises(LocalProtocolError, match="bytes"):
        TensorBlob("w", "float32", (2, 2), "dense", b"\x00" * 15, b"")
    with pytest.raises(LocalProtocolError, match="increasing"):
        TensorBlob("w", "float32", (4,), "topk", b"\x00" * 8, b"\x02\0\0\0\x01\0\0\0")
    with pytest.raises(LocalProtocolError, match="dtype"):
        TensorBlob("w", "float64", (1,), "dense", b"\x00" * 8, b"")


def rejects(validator: UpdateValidator, peer: str, payload: bytes, match: str,
            expect: Expectation = EXPECT) -> None:
    with pytest.raises(RemoteProtocolError, match=match):
        validator.check(peer, payload, expect)


def test_wrong_shapes_names_and_dtypes_are_rejected() -> None:
    v = UpdateValidator(model())
    wrong_shape = {**model(), "fc.bias": torch.zeros(3)}
    rejects(v, ALICE.peer_id, update_bytes(state=wrong_shape), "shape")
    renamed = {("fc.b" if k == "fc.bias" else k): t for k, t in model().items()}
    rejects(v, ALICE.peer_id, update_bytes(state=renamed), "names differ")
    float_counter = {**model(), "bn.num_batches_tracked": torch.tensor(4.0)}
    rejects(v, ALICE.peer_id, update_bytes(state=float_counter), "dtype")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_nan_and_inf_are_rejected(bad: float) -> None:
    poisoned = model()
    poisoned["fc.bias"] = torch.tensor([bad, 0.0])
    rejects(UpdateValidator(model()), ALICE.peer_id, update_bytes(state=poisoned), "NaN")


def test_oversize_and_garbage_are_rejected() -> None:
    v = UpdateValidator(model())
    payload = update_bytes()
    small = dataclasses.replace(EXPECT, max_bytes=len(payload) - 1)
    rejects(v, ALICE.peer_id, payload, "exceeds limit", small)
    rejects(v, ALICE.peer_id, payload[:-3], "malformed")
    rejects(v, ALICE.peer_id, b"\x01\x05" + payload[2:], "tag")
    rejects(v, ALICE.peer_id, b"\x02" + payload[1:], "version")


def test_bad_signatures_and_spoofed_senders_are_rejected() -> None:
    v = UpdateValidator(model())
    msg = decode_model_update(update_bytes(), LIMIT)
    tampered = dataclasses.replace(msg, num_samples=10_000)
    with pytest.raises(SignatureError):
        verify_model_update(tampered)
    rejects(v, ALICE.peer_id, encode_model_update(tampered), "bad signature")
    # Mallory relays Alice's genuine update as her own: the transport sender must match
    rejects(v, MALLORY.peer_id, update_bytes(), "but .* sent it")
    forged = dataclasses.replace(msg, signature=MALLORY.sign(signing_payload(msg)))
    rejects(v, ALICE.peer_id, encode_model_update(forged), "bad signature")


def test_wrong_round_kind_version_and_sample_claims_are_rejected() -> None:
    v = UpdateValidator(model())
    rejects(v, ALICE.peer_id, update_bytes(round_id=2), "round 2")
    rejects(v, ALICE.peer_id, update_bytes(kind="global"), "kind")
    rejects(v, ALICE.peer_id, update_bytes(base=model(), base_version=1), "version 1")
    rejects(v, ALICE.peer_id, update_bytes(num_samples=0), "num_samples")
    rejects(v, ALICE.peer_id, update_bytes(num_samples=10**9), "num_samples")


def test_screen_logs_reasons_and_keeps_only_valid_updates(
    caplog: pytest.LogCaptureFixture,
) -> None:
    v = UpdateValidator(model())
    poisoned = {**model(), "fc.bias": torch.tensor([float("nan"), 0.0])}
    received = [
        (ALICE.peer_id, update_bytes()),
        (ALICE.peer_id, update_bytes()),
        (MALLORY.peer_id, update_bytes(MALLORY, state=poisoned)),
        ("stranger", b"junk"),
    ]
    with caplog.at_level(logging.WARNING, logger="peerdata.federated"):
        accepted, rejected = v.screen(received, EXPECT,
                                      allowed=frozenset({ALICE.peer_id, MALLORY.peer_id}))
    assert [u.peer for u in accepted] == [ALICE.peer_id]
    reasons = {r.reason for r in rejected}
    assert any("second update" in r for r in reasons)
    assert any("NaN" in r for r in reasons)
    assert any("not a participant" in r for r in reasons)
    assert len(caplog.records) == 3
    assert "rejected" in caplog.records[0].getMessage()


def test_model_update_refuses_bad_fields() -> None:
    blobs = blobs_from_state(model(), BlobOptions())
    with pytest.raises(LocalProtocolError, match="kind"):
        sign_model_update(ALICE, round_id=0, base_version=0, kind="weights", is_delta=False,
                          num_samples=1, label_counts=(), tag="", tensors=blobs)
    with pytest.raises(LocalProtocolError, match="tensors"):
        sign_model_update(ALICE, round_id=0, base_version=0, kind="update", is_delta=False,
                          num_samples=1, label_counts=(), tag="", tensors=blobs + blobs[:1])
    assert isinstance(decode_model_update(update_bytes(), LIMIT), ModelUpdate)


def test_golden_encoding_is_stable() -> None:
    """Byte-for-byte pin of one signed update: any change to field order, msgpack options or the
    signing payload breaks interoperability between peer versions and must bump the protocol."""
    import hashlib

    state = {"w": torch.tensor([[0.5, -1.0], [2.0, 0.25]]), "n": torch.tensor(3)}
    msg = sign_model_update(
        ALICE, round_id=7, base_version=6, kind="update", is_delta=False, num_samples=42,
        label_counts=(40, 2), tag="kitchen",
        tensors=blobs_from_state(state, BlobOptions("float16")))
    payload = encode_model_update(msg)
    assert len(payload) == 374
    assert hashlib.sha256(payload).hexdigest() == (
        "193a3fca9a4f5da4980a5879102bb9dc69f667a237d0e2067b6c72f8701a1f07")
    assert decode_model_update(payload, LIMIT) == msg


@settings(max_examples=40, deadline=None)
@given(
    round_id=st.integers(0, 2**40), num_samples=st.integers(1, 10**6),
    counts=st.lists(st.integers(0, 10**6), max_size=12), tag=st.text(max_size=20),
    kind=st.sampled_from(["update", "global", "seed", "gossip"]),
    shapes=st.lists(st.lists(st.integers(0, 4), max_size=3), min_size=1, max_size=4),
    dtype=st.sampled_from(["float32", "float16"]),
)
def test_model_update_roundtrip(round_id: int, num_samples: int, counts: list[int], tag: str,
                                kind: str, shapes: list[list[int]], dtype: str) -> None:
    state = {f"t{i}": torch.ones(shape) for i, shape in enumerate(shapes)}
    msg = sign_model_update(
        ALICE, round_id=round_id, base_version=0, kind=kind, is_delta=False,
        num_samples=num_samples, label_counts=tuple(counts), tag=tag,
        tensors=blobs_from_state(state, BlobOptions(dtype)))
    again = decode_model_update(encode_model_update(msg), LIMIT)
    assert again == msg
    verify_model_update(again)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_garbage_only_ever_raises_remote_protocol_error(data: bytes) -> None:
    for payload in (data, b"\x01\x10" + data):
        try:
            decode_model_update(payload, LIMIT)
        except RemoteProtocolError:
            pass


def test_delta_sends_only_what_changed_and_rejects_a_bad_subset() -> None:
    base = model()
    trained = {k: v.clone() for k, v in base.items()}
    trained["fc.bias"] = trained["fc.bias"] + 0.5  # only the head moved (a frozen backbone)
    blobs = blobs_from_state(trained, BlobOptions(), base)
    floats = [k for k, v in base.items() if v.is_floating_point()]
    ints = [k for k, v in base.items() if not v.is_floating_point()]
    assert [b.name for b in blobs] == [k for k in base if k == "fc.bias" or k in ints]
    assert len(floats) > 1
    decoded = state_from_blobs(blobs, base, base)
    assert all(torch.equal(decoded[k], trained[k]) for k in base)
    # nothing changed at all: still a valid message of one zero delta
    assert len(blobs_from_state(base, BlobOptions(), base)) >= 1
    # a full model must name every tensor; a delta's names must stay in order
    with pytest.raises(RemoteProtocolError, match="names"):
        state_from_blobs(blobs, base)
    reordered = tuple(reversed(blobs_from_state(
        {k: v + 1 if v.is_floating_point() else v for k, v in base.items()}, BlobOptions(),
        base)))
    with pytest.raises(RemoteProtocolError, match="in-order subset"):
        state_from_blobs(reordered, base, base)


def test_an_update_one_round_early_is_held_not_refused() -> None:
    v = UpdateValidator(model())
    held: list[tuple[str, bytes]] = []
    early, late = update_bytes(round_id=4), update_bytes(MALLORY, round_id=2)
    accepted, rejected = v.screen([(ALICE.peer_id, early), (MALLORY.peer_id, late)], EXPECT,
                                  allowed=frozenset({MALLORY.peer_id}),
                                  hold=lambda p, b: held.append((p, b)))
    # early (even from a peer this phase does not listen to) is kept for its round; late is not
    assert accepted == [] and held == [(ALICE.peer_id, early)]
    assert [r.peer for r in rejected] == [MALLORY.peer_id]
    assert "round 2" in rejected[0].reason
    # without a place to hold it, an early update is refused like any other wrong round
    _, refused = v.screen([(ALICE.peer_id, early)], EXPECT)
    assert "one ahead" in refused[0].reason
    # the next round accepts it
    nxt = dataclasses.replace(EXPECT, round_id=4)
    assert [u.peer for u in v.screen(held, nxt)[0]] == [ALICE.peer_id]


async def test_inbox_hands_out_held_updates_after_release() -> None:
    import trio

    from peerdata.federated.inbox import ModelInbox

    inbox = ModelInbox(LIMIT, capacity=2)
    for i in range(3):
        inbox.hold(f"p{i}", b"x")
    with trio.fail_after(5):
        assert await inbox.collect(trio.current_time(), frozenset()) == []
        inbox.release()  # bounded: the oldest of three went
        got = await inbox.collect(trio.current_time() + 0.01, frozenset({"p1", "p2"}))
    assert got == [("p1", b"x"), ("p2", b"x")]
