"""MemoryStore and SqliteStore answer random operation sequences identically."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from peerdata.store import (
    FeedbackRecord,
    MemoryStore,
    RoundRecord,
    Sample,
    SampleSource,
    SqliteStore,
    Store,
    VoteRecord,
    content_id,
)

BLOBS = [bytes([k]) * (k + 1) for k in range(4)]
CIDS = [content_id(b) for b in BLOBS]
PEERS = ["QmA", "QmB", "QmC"]

k = st.integers(0, len(BLOBS) - 1)
peer = st.sampled_from(PEERS)
round_id = st.integers(0, 3)
at = st.integers(0, 100).map(float)

Op = Callable[[Store], object]


def _sample(i: int, received: bool, observed: int) -> Sample:
    origin = PEERS[i % len(PEERS)] if received else None
    source: SampleSource = "received" if received else "local"
    return Sample(CIDS[i], source, i, origin, None, None, None, None, observed, float(i))


def _round(r: int, start: float, end: float) -> RoundRecord:
    return RoundRecord(r, start, end, r, r * 10, 1, 2, 0.5, None, r % 2 == 0)


OPS: st.SearchStrategy[Op] = st.one_of(
    st.builds(lambda i: lambda s: s.put_blob(BLOBS[i]), k),
    st.builds(lambda i, r, o: lambda s: s.add_sample(_sample(i, r, o)), k, st.booleans(), round_id),
    st.builds(
        lambda i, p, c: lambda s: s.update_prediction(CIDS[i], p, c, None),
        k,
        st.integers(0, 9),
        st.floats(0, 1),
    ),
    st.builds(
        lambda i, r, p, t: lambda s: s.record_shared(CIDS[i], r, p, 10, t), k, round_id, peer, at
    ),
    st.builds(lambda i, u: lambda s: s.set_utility(CIDS[i], u, 3, 1), k, st.floats(0, 1)),
    st.builds(
        lambda i, v, r, n: lambda s: s.add_vote(VoteRecord(CIDS[i], "QmO", v, r, n, 0.1, 1.0, n)),
        k,
        peer,
        round_id,
        st.booleans(),
    ),
    st.builds(
        lambda i, p, r: lambda s: s.add_feedback(FeedbackRecord(CIDS[i], r, p, 0.5, (p,), 1, 2.0)),
        k,
        peer,
        round_id,
    ),
    st.builds(lambda p, t: lambda s: s.upsert_peer(p, f"/addr/{t}", t), peer, at),
    st.builds(
        lambda p, n, t: lambda s: s.add_peer_traffic(p, n, 2 * n, t), peer, st.integers(0, 9), at
    ),
    st.builds(lambda r, t: lambda s: s.start_round(r, t), round_id, at),
    st.builds(lambda r, t: lambda s: s.finish_round(_round(r, t, t + 1)), round_id, at),
    st.builds(lambda key, v: lambda s: s.set_meta(key, v), st.sampled_from("ab"), st.text()),
)


def outcome(op: Op, store: Store) -> object:
    try:
        return op(store)
    except Exception as exc:
        return type(exc)


def snapshot(store: Store) -> tuple[object, ...]:
    return (
        store.list_samples(),
        store.list_samples(source="received", since_round=1, limit=2),
        store.count_samples("local"),
        [store.has_blob(c) for c in CIDS],
        store.list_shared(),
        store.list_shared(round_id=1),
        store.list_votes(),
        store.list_votes(cid=CIDS[0], round_id=2),
        store.list_feedback(),
        store.feedback_count(),
        store.list_peers(),
        store.list_rounds(),
        store.last_round_id(),
        store.get_meta("a"),
        store.get_meta("b"),
    )


@settings(max_examples=100, deadline=None)
@given(st.lists(OPS, max_size=25))
def test_store_memory_and_sqlite_agree(ops: list[Op]) -> None:
    with tempfile.TemporaryDirectory() as home:
        with SqliteStore.open(Path(home)) as sqlite, MemoryStore() as memory:
            for op in ops:
                assert outcome(op, sqlite) == outcome(op, memory)
            assert snapshot(sqlite) == snapshot(memory)
