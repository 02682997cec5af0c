"""The Store contract, on the one implementation (SqliteStore)."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from peerdata.errors import StoreError
from peerdata.store import (
    FeedbackRecord,
    NotFoundError,
    PeerRecord,
    RoundRecord,
    Sample,
    SqliteStore,
    Store,
    VoteRecord,
    content_id,
)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with SqliteStore.open(tmp_path / "home") as opened:
        yield opened


def local(cid: bytes, observed_round: int = 0, **changes: object) -> Sample:
    fields: dict[str, object] = dict(
        cid=cid,
        source="local",
        label=None,
        origin=None,
        domain=None,
        prediction=None,
        confidence=None,
        embedding=None,
        observed_round=observed_round,
        created_at=float(observed_round),
    )
    fields.update(changes)
    return Sample(**fields)  # type: ignore[arg-type]


def received(cid: bytes, origin: str = "QmPeerA", observed_round: int = 0) -> Sample:
    return Sample(cid, "received", 3, origin, "kitti", None, None, None, observed_round, 1.5)


def stored_sample(store: Store, data: bytes, observed_round: int = 0) -> Sample:
    sample = local(store.put_blob(data), observed_round)
    assert store.add_sample(sample)
    return sample


def vote(cid: bytes, voter: str, round_id: int = 1, **changes: object) -> VoteRecord:
    fields: dict[str, object] = dict(
        cid=cid,
        origin="QmOrigin",
        voter=voter,
        round_id=round_id,
        novel=True,
        score=0.75,
        received_at=10.0,
        late=False,
    )
    fields.update(changes)
    return VoteRecord(**fields)  # type: ignore[arg-type]


def feedback(cid: bytes, reporter: str, round_id: int = 1) -> FeedbackRecord:
    return FeedbackRecord(cid, round_id, reporter, 0.5, ("QmA", "QmB"), 1, 20.0)


CID_A = content_id(b"a")
CID_B = content_id(b"b")


# -- blobs ---------------------------------------------------------------------------------------
def test_store_put_blob_returns_sha256_and_round_trips(store: Store) -> None:
    cid = store.put_blob(b"jpeg bytes")
    assert cid == content_id(b"jpeg bytes") and len(cid) == 32
    assert store.has_blob(cid)
    assert store.get_blob(cid) == b"jpeg bytes"


def test_store_put_blob_is_idempotent(store: Store) -> None:
    assert store.put_blob(b"x") == store.put_blob(b"x")
    assert store.get_blob(content_id(b"x")) == b"x"


def test_store_empty_blob_is_a_blob(store: Store) -> None:
    cid = store.put_blob(b"")
    assert store.get_blob(cid) == b""


def test_store_missing_blob_is_not_found(store: Store) -> None:
    assert not store.has_blob(CID_A)
    with pytest.raises(NotFoundError):
        store.get_blob(CID_A)
    assert issubclass(NotFoundError, StoreError) and issubclass(NotFoundError, LookupError)


@pytest.mark.parametrize("bad", [b"", b"short", b"x" * 33, "ab" * 32])
def test_store_rejects_malformed_content_ids(store: Store, bad: object) -> None:
    with pytest.raises(StoreError):
        store.get_blob(bad)  # type: ignore[arg-type]
    with pytest.raises(StoreError):
        store.has_blob(bad)  # type: ignore[arg-type]


# -- samples -------------------------------------------------------------------------------------
def test_store_sample_needs_its_blob_first(store: Store) -> None:
    with pytest.raises(NotFoundError):
        store.add_sample(local(CID_A))
    assert store.count_samples() == 0


def test_store_sample_is_stored_once(store: Store) -> None:
    sample = stored_sample(store, b"a")
    assert not store.add_sample(local(sample.cid, label=7))
    assert store.get_sample(sample.cid) == sample
    assert store.count_samples() == 1


def test_store_sample_round_trips_every_field(store: Store) -> None:
    embedding = np.arange(8, dtype=np.float32).tobytes()
    cid = store.put_blob(b"a")
    sample = Sample(cid, "received", 4, "QmPeer", "cityscapes", 2, 0.25, embedding, 3, 12.5)
    assert store.add_sample(sample)
    got = store.get_sample(cid)
    assert got == sample
    assert got is not None and got.cid_hex == cid.hex()
    assert np.array_equal(np.frombuffer(got.embedding or b"", np.float32), np.arange(8))


def test_store_get_sample_absent_is_none(store: Store) -> None:
    assert store.get_sample(CID_A) is None


def test_store_list_samples_filters_and_keeps_insertion_order(store: Store) -> None:
    a = stored_sample(store, b"a", observed_round=2)
    b = stored_sample(store, b"b", observed_round=1)
    c = received(store.put_blob(b"c"), observed_round=3)
    assert store.add_sample(c)
    assert store.list_samples() == [a, b, c]
    assert store.list_samples(source="local") == [a, b]
    assert store.list_samples(source="received") == [c]
    assert store.list_samples(since_round=2) == [a, c]
    assert store.list_samples(source="local", since_round=2) == [a]
    assert store.list_samples(limit=2) == [a, b]
    assert store.list_samples(limit=0) == []
    assert store.count_samples() == 3
    assert store.count_samples("local") == 2
    assert store.count_samples("received") == 1


def test_store_update_prediction(store: Store) -> None:
    sample = stored_sample(store, b"a")
    embedding = np.ones(4, np.float32).tobytes()
    store.update_prediction(sample.cid, 5, 0.9, embedding)
    got = store.get_sample(sample.cid)
    assert got is not None
    assert (got.prediction, got.confidence, got.embedding) == (5, 0.9, embedding)
    assert got.label == sample.label and got.created_at == sample.created_at
    store.update_prediction(sample.cid, 6, 0.1, None)
    assert store.get_sample(sample.cid) == local(sample.cid, prediction=6, confidence=0.1)


def test_store_update_prediction_of_absent_sample_is_not_found(store: Store) -> None:
    with pytest.raises(NotFoundError):
        store.update_prediction(CID_A, 1, 0.5, None)


@pytest.mark.parametrize(
    "changes",
    [
        {"origin": "QmPeer"},  # local with an origin
        {"source": "received"},  # received without one
        {"source": "stolen"},
        {"cid": b"short"},
        {"observed_round": -1},
        {"confidence": float("nan")},
    ],
)
def test_store_invalid_samples_are_refused_when_built(changes: dict[str, object]) -> None:
    with pytest.raises(StoreError):
        dataclasses.replace(local(CID_A), **changes)  # type: ignore[arg-type]


# -- shared items --------------------------------------------------------------------------------
def test_store_record_shared_needs_a_sample(store: Store) -> None:
    store.put_blob(b"a")
    with pytest.raises(NotFoundError):
        store.record_shared(CID_A, 1, "QmB", 10, 1.0)
    assert store.list_shared() == []


def test_store_shared_items_dedupe_and_filter_by_round(store: Store) -> None:
    a = stored_sample(store, b"a")
    b = stored_sample(store, b"b")
    assert store.record_shared(a.cid, 1, "QmB", 100, 5.0)
    assert store.record_shared(a.cid, 1, "QmC", 100, 5.5)
    assert not store.record_shared(a.cid, 1, "QmB", 999, 9.0)
    assert store.record_shared(b.cid, 2, "QmB", 200, 6.0)
    shared = store.list_shared()
    assert [(s.cid, s.round_id, s.peer_id, s.nbytes, s.shared_at) for s in shared] == [
        (a.cid, 1, "QmB", 100, 5.0),
        (a.cid, 1, "QmC", 100, 5.5),
        (b.cid, 2, "QmB", 200, 6.0),
    ]
    assert all(s.utility is None and s.voters is None and s.novel_votes is None for s in shared)
    assert [s.cid for s in store.list_shared(round_id=2)] == [b.cid]
    assert store.list_shared(round_id=3) == []


def test_store_set_utility_shows_on_every_share_of_that_cid(store: Store) -> None:
    a = stored_sample(store, b"a")
    b = stored_sample(store, b"b")
    store.record_shared(a.cid, 1, "QmB", 100, 5.0)
    store.record_shared(b.cid, 1, "QmB", 100, 5.0)
    store.set_utility(a.cid, 0.5, 4, 2)
    store.record_shared(a.cid, 2, "QmC", 100, 6.0)  # shared again after feedback
    by_peer = {(s.cid, s.peer_id): s for s in store.list_shared()}
    assert (by_peer[a.cid, "QmB"].utility, by_peer[a.cid, "QmB"].voters) == (0.5, 4)
    assert by_peer[a.cid, "QmC"].novel_votes == 2
    assert by_peer[b.cid, "QmB"].utility is None
    store.set_utility(a.cid, 0.75, 4, 3)  # a later report replaces the value
    assert {s.utility for s in store.list_shared(round_id=2)} == {0.75}


def test_store_set_utility_of_unshared_cid_is_not_found(store: Store) -> None:
    stored_sample(store, b"a")
    with pytest.raises(NotFoundError):
        store.set_utility(CID_A, 0.5, 2, 1)


# -- votes ---------------------------------------------------------------------------------------
def test_store_votes_dedupe_on_cid_and_voter(store: Store) -> None:
    assert store.add_vote(vote(CID_A, "QmV1"))
    assert not store.add_vote(vote(CID_A, "QmV1", round_id=2, novel=False))
    assert store.add_vote(vote(CID_A, "QmV2", novel=False, late=True))
    assert store.add_vote(vote(CID_B, "QmV1", round_id=2))
    assert store.list_votes() == [
        vote(CID_A, "QmV1"),
        vote(CID_A, "QmV2", novel=False, late=True),
        vote(CID_B, "QmV1", round_id=2),
    ]


def test_store_list_votes_filters(store: Store) -> None:
    for v in (vote(CID_A, "Q1"), vote(CID_B, "Q1", round_id=2), vote(CID_B, "Q2", round_id=3)):
        store.add_vote(v)
    assert [v.voter for v in store.list_votes(cid=CID_A)] == ["Q1"]
    assert [v.round_id for v in store.list_votes(cid=CID_B)] == [2, 3]
    assert [v.voter for v in store.list_votes(round_id=3)] == ["Q2"]
    assert store.list_votes(cid=CID_A, round_id=2) == []
    got = store.list_votes(cid=CID_B, round_id=2)[0]
    assert got.novel is True and got.late is False and got.cid == CID_B


# -- feedback ------------------------------------------------------------------------------------
def test_store_feedback_dedupes_on_cid_reporter_round(store: Store) -> None:
    assert store.feedback_count() == 0
    assert store.add_feedback(feedback(CID_A, "QmR"))
    assert not store.add_feedback(feedback(CID_A, "QmR"))
    assert store.add_feedback(feedback(CID_A, "QmR", round_id=2))
    assert store.add_feedback(feedback(CID_A, "QmS"))
    assert store.feedback_count() == 3
    assert store.list_feedback() == [
        feedback(CID_A, "QmR"),
        feedback(CID_A, "QmR", round_id=2),
        feedback(CID_A, "QmS"),
    ]
    assert store.list_feedback(round_id=2) == [feedback(CID_A, "QmR", round_id=2)]


def test_store_feedback_keeps_voter_tuple(store: Store) -> None:
    empty = FeedbackRecord(CID_B, 4, "QmR", 0.0, (), 0, 1.0)
    store.add_feedback(empty)
    (got,) = store.list_feedback(round_id=4)
    assert got == empty and got.voters == ()


# -- peers ---------------------------------------------------------------------------------------
def test_store_upsert_peer_keeps_first_seen(store: Store) -> None:
    store.upsert_peer("QmB", "/ip4/1.2.3.4/tcp/1", 10.0)
    store.upsert_peer("QmA", "/ip4/5.6.7.8/tcp/2", 11.0)
    store.upsert_peer("QmB", "/ip4/1.2.3.4/tcp/9", 20.0)
    store.upsert_peer("QmB", "/ip4/1.2.3.4/tcp/9", 15.0)  # an older sighting never goes back
    assert store.list_peers() == [
        PeerRecord("QmA", "/ip4/5.6.7.8/tcp/2", 11.0, 11.0, 0, 0, None),
        PeerRecord("QmB", "/ip4/1.2.3.4/tcp/9", 10.0, 20.0, 0, 0, None),
    ]


def test_store_peer_traffic_accumulates(store: Store) -> None:
    store.upsert_peer("QmA", "/ip4/1.1.1.1/tcp/1", 1.0)
    store.add_peer_traffic("QmA", 100, 10, 2.0)
    store.add_peer_traffic("QmA", 50, 0, 3.0)
    store.add_peer_traffic("QmZ", 7, 8, 4.0)  # unknown peer: created without an address
    assert store.list_peers() == [
        PeerRecord("QmA", "/ip4/1.1.1.1/tcp/1", 1.0, 3.0, 150, 10, 3.0),
        PeerRecord("QmZ", "", 4.0, 4.0, 7, 8, 4.0),
    ]
    with pytest.raises(StoreError):
        store.add_peer_traffic("QmA", -1, 0, 5.0)


# -- rounds --------------------------------------------------------------------------------------
def test_store_rounds_start_finish_and_order(store: Store) -> None:
    assert store.last_round_id() == 0
    assert store.list_rounds() == []
    assert store.start_round(2, 100.0)
    assert not store.start_round(2, 999.0)
    assert store.start_round(1, 50.0)
    assert store.get_round(2) == RoundRecord(2, 100.0)
    assert store.get_round(7) is None
    done = RoundRecord(2, 100.0, 160.0, 12, 4096, 30, 5, 0.4, 0.81, True)
    store.finish_round(done)
    assert store.list_rounds() == [RoundRecord(1, 50.0), done]
    assert store.last_round_id() == 2


def test_store_finish_round_without_start_inserts_it(store: Store) -> None:
    done = RoundRecord(5, 1.0, 2.0, ranker_trained=False)
    store.finish_round(done)
    assert store.get_round(5) == done
    assert store.last_round_id() == 5


def test_store_finish_round_needs_finished_at(store: Store) -> None:
    store.start_round(1, 1.0)
    with pytest.raises(StoreError):
        store.finish_round(RoundRecord(1, 1.0))


# -- meta ----------------------------------------------------------------------------------------
def test_store_meta_get_set_replace(store: Store) -> None:
    assert store.get_meta("ranker_version") is None
    store.set_meta("ranker_version", "1")
    store.set_meta("ranker_version", "2")
    store.set_meta("other", "")
    assert store.get_meta("ranker_version") == "2"
    assert store.get_meta("other") == ""


# -- lifetime and threads ------------------------------------------------------------------------
def test_store_outbox_keeps_messages_until_removed(store: Store) -> None:
    from peerdata.store.outbox import OutboxRecord

    a = OutboxRecord("vote", b"k1", "peer-a", b"one", 2.0)
    b = OutboxRecord("vote", b"k2", "peer-b", b"two", 1.0)
    c = OutboxRecord("offer", b"k1", "", b"three", 3.0)
    store.put_outbox([a, b, c])
    assert store.list_outbox() == [b, a, c]  # oldest first
    assert store.list_outbox("vote") == [b, a]
    store.put_outbox([OutboxRecord("vote", b"k1", "peer-a", b"again", 2.0)])  # replaces
    assert [r.data for r in store.list_outbox("vote")] == [b"two", b"again"]
    assert store.remove_outbox("vote", [b"k1", b"nope"]) == 1
    assert store.list_outbox() == [b, c]


def test_store_closed_store_refuses_calls(store: Store) -> None:
    cid = store.put_blob(b"a")
    store.close()
    store.close()  # twice is fine
    with pytest.raises(StoreError):
        store.get_blob(cid)
    with pytest.raises(StoreError):
        store.put_blob(b"b")
    with pytest.raises(StoreError):
        store.list_samples()
    with pytest.raises(StoreError):
        store.set_meta("k", "v")


def test_store_is_safe_from_several_threads(store: Store) -> None:
    errors: list[BaseException] = []

    def write(worker: int) -> None:
        try:
            for i in range(10):
                sample = stored_sample(store, f"{worker}-{i}".encode(), observed_round=i)
                store.record_shared(sample.cid, i, f"Qm{worker}", 1, 0.0)
                store.add_vote(vote(sample.cid, f"Qm{worker}"))
        except BaseException as exc:  # surfaced below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.count_samples() == 40
    assert len(store.list_shared()) == 40
    assert len(store.list_votes()) == 40
