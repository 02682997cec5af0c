"""Batched reports: the Reports message's bounds, and the store's one-transaction batch."""

from __future__ import annotations

from pathlib import Path

import pytest

from peerdata.errors import LocalProtocolError, RemoteProtocolError, StoreError
from peerdata.identity import Identity
from peerdata.store import SqliteStore
from peerdata.wire import Reports, decode, encode, sign_feedback, sign_vote
from peerdata.wire.messages import MAX_REPORTS

VOTER = Identity.from_private_bytes(b"\x11" * 32)  # test keys only
ORIGIN = Identity.from_private_bytes(b"\x12" * 32).peer_id
OTHER = Identity.from_private_bytes(b"\x13" * 32).peer_id


def vote(k: int, origin: str = ORIGIN):  # type: ignore[no-untyped-def]
    return sign_vote(VOTER, origin=origin, cid=bytes([k % 256, k // 256]) * 16, round_id=1,
                     novel=k % 2 == 0, score=0.5, timestamp=1_750_000_000.0)


def test_reports_round_trip_and_every_item_keeps_its_signature() -> None:
    fb = sign_feedback(VOTER, origin=ORIGIN, cid=b"\x01" * 32, round_id=1, novel_votes=1,
                       voters=(VOTER.peer_id,), timestamp=1_750_000_000.0)
    msg = Reports(origin=ORIGIN, votes=(vote(1), vote(2)), feedback=(fb,))
    back = decode(encode(msg))
    assert back == msg and isinstance(back, Reports)
    assert back.votes[0].signature == msg.votes[0].signature


@pytest.mark.parametrize(("votes", "error"), [
    ((), "1..256"),
    (tuple(vote(k) for k in range(MAX_REPORTS + 1)), "1..256"),
    ((vote(1), vote(2, OTHER)), "another origin"),
    ((vote(1), vote(1)), "twice"),
])
def test_reports_are_bounded_and_about_one_origin(votes: tuple, error: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(LocalProtocolError, match=error):
        Reports(origin=ORIGIN, votes=votes, feedback=())


def test_a_bad_vote_inside_reports_is_refused_at_the_boundary() -> None:
    one = vote(1)
    good = encode(Reports(origin=ORIGIN, votes=(one,), feedback=()))
    bad = good.replace(one.signature, b"\x00" * 64)  # still well-formed: decodes
    assert isinstance(decode(bad), Reports)  # signatures are the origin's check, not the codec's
    tampered = good.replace(ORIGIN.encode(), OTHER.encode(), 1)  # the batch's origin only
    with pytest.raises(RemoteProtocolError, match="another origin"):
        decode(tampered)


def test_store_batch_is_one_transaction_and_a_failed_write_undoes_only_itself(
        tmp_path: Path) -> None:
    with SqliteStore.open(tmp_path) as store:
        with store.batch():
            store.set_meta("a", "1")
            with pytest.raises(StoreError):
                with store._writing() as conn:
                    conn.execute("INSERT INTO meta (key, value) VALUES ('b', '2')")
                    conn.execute("INSERT INTO no_such_table VALUES (1)")
            store.set_meta("c", "3")
        assert [store.get_meta(k) for k in "abc"] == ["1", None, "3"]
        with pytest.raises(RuntimeError), store.batch():
            store.set_meta("d", "4")
            raise RuntimeError("the whole batch goes")
        assert store.get_meta("d") is None
        store.set_meta("e", "5")  # plain writes commit on their own again
    with SqliteStore.open(tmp_path) as again:
        assert again.get_meta("e") == "5" and again.get_meta("c") == "3"
