"""Votes in the outbox: delivered to their origin and removed only on its acknowledgement;
kept while it is unreachable (one frozen origin holds up no other), delivered by the next run
from the same store after a kill, expired once the origin would refuse them as too old, and
drained before a graceful stop."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import trio
import trio.testing

from peerdata.identity import Identity
from peerdata.node.delivery import KIND, VoteDelivery, vote_records
from peerdata.store import SqliteStore
from peerdata.wire.codec import encode
from peerdata.wire.messages import Vote
from peerdata.wire.signing import sign_vote

ME = Identity.generate()
ORIGINS = ["A" * 46, "B" * 46]


def votes(origin: str, n: int, at: float = 0.0) -> list[tuple[Vote, bytes]]:
    out = []
    for k in range(n):
        v = sign_vote(ME, origin=origin, cid=bytes([k + 1]) * 32, round_id=1, novel=k % 2 == 0,
                      score=0.5, timestamp=at)
        out.append((v, encode(v)))
    return out


class Origins:
    """Origins that acknowledge, or are unreachable (`down`), or hang (`frozen`)."""

    def __init__(self) -> None:
        self.down: set[str] = set()
        self.frozen: set[str] = set()
        self.got: dict[str, list[bytes]] = {o: [] for o in ORIGINS}
        self.attempts = 0
        self.requests: list[tuple[str, int]] = []  # (origin, votes) per acknowledged request
        self.changed = trio.Event()

    async def send(self, origin: str, data: Sequence[bytes]) -> bool | None:
        self.attempts += 1
        await trio.lowlevel.checkpoint()
        if origin in self.frozen:
            await trio.sleep_forever()
        if origin in self.down:
            return None
        self.requests.append((origin, len(data)))
        self.got[origin].extend(data)
        self.changed.set()
        self.changed = trio.Event()
        return True


def delivery(store: SqliteStore, origins: Origins, now: list[float], per_request: int = 64
             ) -> VoteDelivery:
    async def offload(fn, *args):  # type: ignore[no-untyped-def]
        return fn(*args)

    return VoteDelivery(store, offload, origins.send, lambda: now[0], expire_s=240.0,
                        retry_initial_s=1.0, retry_max_s=8.0, send_timeout_s=5.0,
                        per_request=per_request)


async def test_kept_until_acknowledged_and_resent_by_the_next_run(
        tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    now = [0.0]
    origins = Origins()
    origins.down.add(ORIGINS[0])
    origins.frozen.add(ORIGINS[1])
    with trio.fail_after(600), SqliteStore.open(tmp_path) as store:
        store.put_outbox(vote_records(votes(ORIGINS[0], 3) + votes(ORIGINS[1], 2), 0.0))
        first = delivery(store, origins, now)
        async with trio.open_nursery() as nursery:
            await nursery.start(first.run)
            await trio.sleep(30)  # the origin stays unreachable: retried with back-off
            assert len(store.list_outbox(KIND)) == 5 and first.counts["votes_retried"] >= 3
            assert await first.drain(5.0) == 5  # a stop that cannot deliver keeps them all
            nursery.cancel_scope.cancel()  # the daemon is killed
    origins.down.clear()
    with trio.fail_after(600), SqliteStore.open(tmp_path) as store:  # the restart
        second = delivery(store, origins, now)
        async with trio.open_nursery() as nursery:
            await nursery.start(second.run)
            # origin B still hangs: A's votes go through regardless
            with trio.move_on_after(20):
                while len(origins.got[ORIGINS[0]]) < 3:
                    await origins.changed.wait()
            assert len(origins.got[ORIGINS[0]]) == 3
            assert [r.peer for r in store.list_outbox(KIND)] == [ORIGINS[1]] * 2
            origins.frozen.clear()  # B thaws: its sends time out, and the retry delivers
            assert await second.drain(60.0) == 0
            assert len(origins.got[ORIGINS[1]]) == 2
            nursery.cancel_scope.cancel()


async def test_drain_delivers_then_returns_and_old_votes_expire(
        tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    now = [0.0]
    origins = Origins()
    with trio.fail_after(600), SqliteStore.open(tmp_path) as store:
        d = delivery(store, origins, now)
        async with trio.open_nursery() as nursery:
            await nursery.start(d.run)
            store.put_outbox(vote_records(votes(ORIGINS[0], 4), 0.0))
            d.kick()
            assert await d.drain(10.0) == 0
            assert len(origins.got[ORIGINS[0]]) == 4 and store.list_outbox() == []
            origins.down.add(ORIGINS[1])
            store.put_outbox(vote_records(votes(ORIGINS[1], 2), 0.0))
            d.kick()
            await trio.sleep(10)
            now[0] = 300.0  # older than the origin's replay window: it would refuse them
            assert await d.drain(60.0) == 0
            assert d.counts["votes_expired"] == 2 and d.counts["votes_delivered"] == 4
            nursery.cancel_scope.cancel()


async def test_an_origins_votes_leave_in_requests_of_at_most_per_request(
        tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    now = [0.0]
    origins = Origins()
    with trio.fail_after(60), SqliteStore.open(tmp_path) as store:
        store.put_outbox(vote_records(votes(ORIGINS[0], 5) + votes(ORIGINS[1], 2), 0.0))
        d = delivery(store, origins, now, per_request=2)
        async with trio.open_nursery() as nursery:
            await nursery.start(d.run)
            assert await d.drain(30.0) == 0
            nursery.cancel_scope.cancel()
        assert sorted(origins.requests) == sorted(
            [(ORIGINS[0], 2), (ORIGINS[0], 2), (ORIGINS[0], 1), (ORIGINS[1], 2)])
        assert len(origins.got[ORIGINS[0]]) == 5 and d.counts["votes_delivered"] == 7
        assert store.list_outbox() == []
