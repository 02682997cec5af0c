"""The round bookkeeping tables of the durable Store: shared images, utilities, votes,
feedback, peers, rounds, node state and the outbox.

Rule: as `peerdata.store.sqlite` (one transaction per change, validated records only); these
rows name samples by content ID and never touch the blob directory.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from peerdata.errors import StoreError
from peerdata.store.base import (
    FeedbackRecord,
    NotFoundError,
    PeerRecord,
    RoundRecord,
    SharedRecord,
    VoteRecord,
    check_cid,
    check_count,
    check_finite,
)
from peerdata.store.outbox import OutboxRecord
from peerdata.store.sqlite_db import Database, values, where

_ROUND_COLUMNS = (
    "round_id, started_at, finished_at, shared, bytes_sent, votes_received, feedback_received, "
    "mean_utility, accuracy, ranker_trained"
)
_ROUND_QMARKS = ", ".join("?" * len(_ROUND_COLUMNS.split(",")))


def _round(row: tuple[Any, ...]) -> RoundRecord:
    return RoundRecord(*row[:-1], ranker_trained=bool(row[-1]))


class RecordTables(Database):
    """Shared images, votes, feedback, peers, rounds, meta and outbox rows (the module rule)."""

    # -- shared items --------------------------------------------------------------------------
    def record_shared(
        self, cid: bytes, round_id: int, peer_id: str, nbytes: int, at: float
    ) -> bool:
        """Record that sample `cid` was sent to `peer_id` in `round_id`.

        Returns False if that (cid, round_id, peer_id) was recorded already.
        Raises NotFoundError unless `cid` is a stored sample.
        """
        record = SharedRecord(cid, round_id, peer_id, nbytes, at)  # validates
        with self._writing() as conn:
            if conn.execute("SELECT 1 FROM samples WHERE cid = ?", (cid,)).fetchone() is None:
                raise NotFoundError(f"cannot record sharing {cid.hex()}: not a stored sample")
            cursor = conn.execute(
                "INSERT INTO shared (cid, round_id, peer_id, nbytes, shared_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (record.cid, record.round_id, record.peer_id, record.nbytes, record.shared_at),
            )
            return cursor.rowcount == 1

    def list_shared(self, round_id: int | None = None) -> list[SharedRecord]:
        """Shared items (of one round), each carrying its cid's utility if known."""
        sql = (
            "SELECT s.cid, s.round_id, s.peer_id, s.nbytes, s.shared_at, "
            "u.utility, u.voters, u.novel_votes "
            "FROM shared AS s LEFT JOIN utilities AS u ON u.cid = s.cid"
        )
        clause, params = where(("s.round_id = ?", round_id))
        with self._reading() as conn:
            return [SharedRecord(*row)
                    for row in conn.execute(sql + clause + " ORDER BY s.seq", params)]

    def set_utility(self, cid: bytes, utility: float, voters: int, novel_votes: int) -> None:
        """Set the utility feedback for a shared cid (replaces an earlier value).

        Raises NotFoundError if `cid` was never shared.
        """
        check_cid(cid)
        check_finite("utility", utility)
        check_count("voters", voters)
        check_count("novel_votes", novel_votes)
        with self._writing() as conn:
            if conn.execute("SELECT 1 FROM shared WHERE cid = ?", (cid,)).fetchone() is None:
                raise NotFoundError(f"cannot set utility of {cid.hex()}: it was never shared")
            conn.execute(
                "INSERT INTO utilities (cid, utility, voters, novel_votes) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (cid) DO UPDATE SET utility = excluded.utility, "
                "voters = excluded.voters, novel_votes = excluded.novel_votes",
                (cid, utility, voters, novel_votes),
            )

    # -- votes and feedback --------------------------------------------------------------------
    def add_vote(self, vote: VoteRecord) -> bool:
        """Add a vote; return False if this voter already voted on this cid."""
        with self._writing() as conn:
            cursor = conn.execute(
                "INSERT INTO votes (cid, origin, voter, round_id, novel, score, received_at, late) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                values(vote),
            )
            return cursor.rowcount == 1

    def list_votes(self, cid: bytes | None = None, round_id: int | None = None) -> list[VoteRecord]:
        """Votes, optionally only for one cid and/or one round."""
        clause, params = where(("cid = ?", cid if cid is None else check_cid(cid)),
                               ("round_id = ?", round_id))
        sql = (
            "SELECT cid, origin, voter, round_id, novel, score, received_at, late "
            f"FROM votes{clause} ORDER BY seq"
        )
        with self._reading() as conn:
            return [
                VoteRecord(c, o, v, r, bool(novel), s, at, bool(late))
                for c, o, v, r, novel, s, at, late in conn.execute(sql, params)
            ]

    def add_feedback(self, record: FeedbackRecord) -> bool:
        """Add feedback; return False on a duplicate (cid, reporter, round_id)."""
        with self._writing() as conn:
            cursor = conn.execute(
                "INSERT INTO feedback "
                "(cid, round_id, reporter, utility, voters, novel_votes, received_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (
                    record.cid,
                    record.round_id,
                    record.reporter,
                    record.utility,
                    json.dumps(list(record.voters)),
                    record.novel_votes,
                    record.received_at,
                ),
            )
            return cursor.rowcount == 1

    def list_feedback(self, round_id: int | None = None) -> list[FeedbackRecord]:
        """Feedback records, optionally of one round."""
        sql = (
            "SELECT cid, round_id, reporter, utility, voters, novel_votes, received_at "
            "FROM feedback"
        )
        clause, params = where(("round_id = ?", round_id))
        with self._reading() as conn:
            return [
                FeedbackRecord(c, r, rep, u, tuple(json.loads(voters)), n, at)
                for c, r, rep, u, voters, n, at
                in conn.execute(sql + clause + " ORDER BY seq", params)
            ]

    def feedback_count(self) -> int:
        """How many feedback records are stored."""
        with self._reading() as conn:
            (n,) = conn.execute("SELECT count(*) FROM feedback").fetchone()
        return int(n)

    # -- peers ---------------------------------------------------------------------------------
    def upsert_peer(self, peer_id: str, address: str, at: float) -> None:
        """Remember a peer at `address`, seen at `at` (first_seen is kept on updates)."""
        check_finite("at", at)
        with self._writing() as conn:
            conn.execute(
                "INSERT INTO peers VALUES (?, ?, ?, ?, 0, 0, NULL) ON CONFLICT (peer_id) "
                "DO UPDATE SET address = excluded.address, "
                "last_seen = max(last_seen, excluded.last_seen)",
                (peer_id, address, at, at),
            )

    def add_peer_traffic(self, peer_id: str, bytes_in: int, bytes_out: int, at: float) -> None:
        """Add traffic counters for a peer (created with an empty address if unknown)."""
        check_count("bytes_in", bytes_in)
        check_count("bytes_out", bytes_out)
        check_finite("at", at)
        with self._writing() as conn:
            conn.execute(
                "INSERT INTO peers VALUES (?, '', ?, ?, ?, ?, ?) ON CONFLICT (peer_id) "
                "DO UPDATE SET bytes_in = bytes_in + excluded.bytes_in, "
                "bytes_out = bytes_out + excluded.bytes_out, "
                "last_seen = max(last_seen, excluded.last_seen), "
                "last_message_at = max(coalesce(last_message_at, excluded.last_message_at), "
                "excluded.last_message_at)",
                (peer_id, at, at, bytes_in, bytes_out, at),
            )

    def list_peers(self) -> list[PeerRecord]:
        """All known peers, ordered by peer ID."""
        with self._reading() as conn:
            return [
                PeerRecord(*row) for row in conn.execute("SELECT * FROM peers ORDER BY peer_id")
            ]

    # -- rounds --------------------------------------------------------------------------------
    def start_round(self, round_id: int, at: float) -> bool:
        """Record that a round started; return False (change nothing) if it exists already."""
        record = RoundRecord(round_id, at)  # validates
        with self._writing() as conn:
            cursor = conn.execute(
                "INSERT INTO rounds (round_id, started_at, shared, bytes_sent, votes_received, "
                "feedback_received, ranker_trained) VALUES (?, ?, 0, 0, 0, 0, 0) "
                "ON CONFLICT DO NOTHING",
                (record.round_id, record.started_at),
            )
            return cursor.rowcount == 1

    def finish_round(self, record: RoundRecord) -> None:
        """Store the final record of a round (inserted if `start_round` was never called)."""
        if record.finished_at is None:
            raise StoreError(f"finish_round: round {record.round_id} has no finished_at")
        with self._writing() as conn:
            conn.execute(f"INSERT OR REPLACE INTO rounds ({_ROUND_COLUMNS}) "
                         f"VALUES ({_ROUND_QMARKS})", values(record))

    def get_round(self, round_id: int) -> RoundRecord | None:
        """The record of one round, or None."""
        with self._reading() as conn:
            row = conn.execute(
                f"SELECT {_ROUND_COLUMNS} FROM rounds WHERE round_id = ?", (round_id,)
            ).fetchone()
        return None if row is None else _round(row)

    def list_rounds(self) -> list[RoundRecord]:
        """All rounds, ordered by round_id."""
        with self._reading() as conn:
            return [
                _round(row)
                for row in conn.execute(f"SELECT {_ROUND_COLUMNS} FROM rounds ORDER BY round_id")
            ]

    def last_round_id(self) -> int:
        """The highest round_id recorded, 0 if none."""
        with self._reading() as conn:
            (n,) = conn.execute("SELECT coalesce(max(round_id), 0) FROM rounds").fetchone()
        return int(n)

    # -- node state ----------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        """A small node-state value, or None."""
        with self._reading() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        """Set a small node-state value (replaces an earlier one)."""
        with self._writing() as conn:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    # -- outbox --------------------------------------------------------------------------------
    def put_outbox(self, records: Sequence[OutboxRecord]) -> None:
        """Keep messages until `remove_outbox` (one transaction; same kind+key: replaced)."""
        with self._writing() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO outbox (kind, key, peer, data, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                [values(r) for r in records])

    def list_outbox(self, kind: str | None = None) -> list[OutboxRecord]:
        """Messages waiting, oldest first (by created_at, then kind and key)."""
        clause, params = where(("kind = ?", kind))
        sql = f"SELECT kind, key, peer, data, created_at FROM outbox{clause}"
        with self._reading() as conn:
            return [OutboxRecord(k, bytes(key), p, bytes(d), at) for k, key, p, d, at
                    in conn.execute(sql + " ORDER BY created_at, kind, key", params)]

    def remove_outbox(self, kind: str, keys: Sequence[bytes]) -> int:
        """Forget delivered messages; returns how many were there."""
        with self._writing() as conn:
            return sum(conn.execute("DELETE FROM outbox WHERE kind = ? AND key = ?",
                                    (kind, key)).rowcount for key in keys)
