"""The durable Store: SQLite metadata in `home/store.sqlite`, image bytes in `home/blobs/`.

Rule: a row that names a blob is committed only after the blob file is durable, and every
change is one transaction, so a SIGKILL or power cut at any instant leaves a consistent store.

Durability choices:
- WAL journal: readers (e.g. a CLI reading stats) never block the daemon's writer.
- `synchronous=FULL`: a robot loses power without warning; with NORMAL a power cut may roll
  back the last commits, and a received image could then be voted on twice or a round's
  feedback lost. Our write rate (a few transactions a second) makes the fsync cost irrelevant.
- One connection per Store, opened with `check_same_thread=False` and guarded by a lock: the
  node calls in via `trio.to_thread.run_sync` from varying worker threads; a single serialised
  connection is simpler than a pool and fast enough. Blob file writes happen outside the lock.
- Other processes may open the same home at the same time (SQLite locks; busy timeout 5 s).
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from peerdata.errors import StoreError
from peerdata.store.base import (
    FeedbackRecord,
    NotFoundError,
    PeerRecord,
    Provenance,
    RoundRecord,
    Sample,
    SampleSource,
    SharedRecord,
    Store,
    VoteRecord,
    check_cid,
    check_count,
    check_finite,
    merge_provenance,
)
from peerdata.store.blobs import BlobDirectory
from peerdata.store.schema import migrate

DB_NAME = "store.sqlite"
BLOBS_DIR = "blobs"
BUSY_TIMEOUT_S = 5.0

_SAMPLE_COLUMNS = (
    "cid, source, label, origin, domain, prediction, confidence, embedding, observed_round, "
    "created_at"
)
_ROUND_COLUMNS = (
    "round_id, started_at, finished_at, shared, bytes_sent, votes_received, feedback_received, "
    "mean_utility, accuracy, ranker_trained"
)
_ROUND_QMARKS = ", ".join("?" * len(_ROUND_COLUMNS.split(",")))


def _connect(path: Path) -> sqlite3.Connection:
    """Open and configure the database at `path`, migrating it to the current schema."""
    try:
        conn = sqlite3.connect(
            path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open store database {path}: {exc}") from exc
    try:
        (mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
        if str(mode).lower() != "wal":
            raise StoreError(f"store database {path} refused WAL mode (got {mode!r})")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        migrate(conn, label=str(path))
    except sqlite3.Error as exc:
        conn.close()
        raise StoreError(_open_error(path, exc)) from exc
    except BaseException:
        conn.close()
        raise
    return conn


# SQLite's words for "the disk refused the write"; anything else is a damaged database.
_WRITE_FAILURES = ("disk i/o error", "database or disk is full", "readonly database",
                   "unable to open database file", "read-only")


def _open_error(path: Path, exc: sqlite3.Error) -> str:
    """A message that says whether the disk or the database is at fault."""
    if any(w in str(exc).lower() for w in _WRITE_FAILURES):
        return (f"cannot write the store database {path}: {exc} (is the disk full or the "
                "home read-only?)")
    return f"store database {path} is unreadable or not SQLite: {exc}"


def _sample(row: tuple[Any, ...]) -> Sample:
    return Sample(*row)


def _round(row: tuple[Any, ...]) -> RoundRecord:
    (round_id, started, finished, shared, sent, votes, feedback, utility, accuracy, trained) = row
    return RoundRecord(
        round_id, started, finished, shared, sent, votes, feedback, utility, accuracy, bool(trained)
    )


class SqliteStore(Store):
    """The Store kept in a node's home directory. Thread-safe; calls are serialised."""

    def __init__(self, conn: sqlite3.Connection, blobs: BlobDirectory, path: Path) -> None:
        """Wrap an open connection; use `SqliteStore.open` instead."""
        self.path = path
        self._conn: sqlite3.Connection | None = conn
        self._blobs = blobs
        self._lock = threading.Lock()

    @classmethod
    def open(cls, home: Path) -> SqliteStore:
        """Open (creating if needed) the store in `home` and clean up after a crash.

        Raises StoreError if the database is unreadable, not SQLite, or from a newer peerdata.
        """
        home = Path(home)
        try:
            home.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create store home {home}: {exc}") from exc
        blobs = BlobDirectory(home / BLOBS_DIR)
        blobs.remove_stale_temp_files()
        path = home / DB_NAME
        return cls(_connect(path), blobs, path)

    # -- plumbing ------------------------------------------------------------------------------
    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self._open_connection()
            try:
                yield conn
            except sqlite3.Error as exc:
                raise StoreError(f"store {self.path}: {exc}") from exc

    @contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction: committed if the block returns, rolled back if it raises."""
        with self._lock:
            conn = self._open_connection()
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StoreError(f"store {self.path}: {exc}") from exc

    def _open_connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"store {self.path} is closed")
        return self._conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # -- blobs ---------------------------------------------------------------------------------
    def put_blob(self, data: bytes, provenance: Provenance = "local",
                 received_from: str | None = None) -> bytes:
        merge_provenance(None, provenance)  # validates before anything is written
        with self._lock:
            self._open_connection()
        cid = self._blobs.write(bytes(data))  # durable before any row names it
        with self._writing() as conn:
            row = conn.execute("SELECT provenance FROM blobs WHERE cid = ?", (cid,)).fetchone()
            if row is None:
                conn.execute(
                    "INSERT INTO blobs (cid, size, provenance, received_from) VALUES (?, ?, ?, ?)",
                    (cid, len(data), provenance, received_from),
                )
            else:
                conn.execute("UPDATE blobs SET provenance = ? WHERE cid = ?",
                             (merge_provenance(row[0], provenance), cid))
        return cid

    def blob_provenance(self, cid: bytes) -> Provenance | None:
        check_cid(cid)
        with self._reading() as conn:
            row = conn.execute("SELECT provenance FROM blobs WHERE cid = ?", (cid,)).fetchone()
        return None if row is None else row[0]  # type: ignore[no-any-return]

    def stored_bytes(self, received_from: str | None = None) -> int:
        with self._reading() as conn:
            if received_from is None:
                (n,) = conn.execute("SELECT coalesce(sum(size), 0) FROM blobs").fetchone()
            else:
                (n,) = conn.execute(
                    "SELECT coalesce(sum(size), 0) FROM blobs WHERE received_from = ?",
                    (received_from,)).fetchone()
        return int(n)

    def free_bytes(self) -> int | None:
        try:
            return shutil.disk_usage(self._blobs.root).free
        except OSError as exc:
            raise StoreError(f"cannot read free space under {self._blobs.root}: {exc}") from exc

    def get_blob(self, cid: bytes) -> bytes:
        if not self.has_blob(cid):
            raise NotFoundError(f"no blob {cid.hex()} in store {self.path}")
        try:
            return self._blobs.read(cid)
        except NotFoundError:
            raise StoreError(
                f"blob {cid.hex()} is recorded in {self.path} but its file is missing"
            ) from None

    def has_blob(self, cid: bytes) -> bool:
        check_cid(cid)
        with self._reading() as conn:
            return conn.execute("SELECT 1 FROM blobs WHERE cid = ?", (cid,)).fetchone() is not None

    # -- samples -------------------------------------------------------------------------------
    def add_sample(self, sample: Sample) -> bool:
        with self._writing() as conn:
            if conn.execute("SELECT 1 FROM blobs WHERE cid = ?", (sample.cid,)).fetchone() is None:
                raise NotFoundError(f"sample {sample.cid_hex}: put_blob its bytes first")
            cursor = conn.execute(
                f"INSERT INTO samples ({_SAMPLE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (cid) DO NOTHING",
                (
                    sample.cid,
                    sample.source,
                    sample.label,
                    sample.origin,
                    sample.domain,
                    sample.prediction,
                    sample.confidence,
                    sample.embedding,
                    sample.observed_round,
                    sample.created_at,
                ),
            )
            return cursor.rowcount == 1

    def get_sample(self, cid: bytes) -> Sample | None:
        check_cid(cid)
        with self._reading() as conn:
            row = conn.execute(
                f"SELECT {_SAMPLE_COLUMNS} FROM samples WHERE cid = ?", (cid,)
            ).fetchone()
        return None if row is None else _sample(row)

    def list_samples(
        self,
        source: SampleSource | None = None,
        since_round: int | None = None,
        limit: int | None = None,
    ) -> list[Sample]:
        clauses: list[str] = []
        params: list[object] = []
        if source is not None:
            clauses.append("source = ?")
            params.append(source)
        if since_round is not None:
            clauses.append("observed_round >= ?")
            params.append(since_round)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = f"SELECT {_SAMPLE_COLUMNS} FROM samples {where} ORDER BY seq"
        if limit is not None:
            check_count("limit", limit)
            sql += " LIMIT ?"
            params.append(limit)
        with self._reading() as conn:
            return [_sample(row) for row in conn.execute(sql, params)]

    def count_samples(self, source: SampleSource | None = None) -> int:
        with self._reading() as conn:
            if source is None:
                (n,) = conn.execute("SELECT count(*) FROM samples").fetchone()
            else:
                (n,) = conn.execute(
                    "SELECT count(*) FROM samples WHERE source = ?", (source,)
                ).fetchone()
        return int(n)

    def update_prediction(
        self, cid: bytes, prediction: int, confidence: float, embedding: bytes | None
    ) -> None:
        check_cid(cid)
        check_finite("confidence", confidence)
        with self._writing() as conn:
            cursor = conn.execute(
                "UPDATE samples SET prediction = ?, confidence = ?, embedding = ? WHERE cid = ?",
                (prediction, confidence, embedding, cid),
            )
            if cursor.rowcount == 0:
                raise NotFoundError(f"no sample {cid.hex()} in store {self.path}")

    # -- shared items --------------------------------------------------------------------------
    def record_shared(
        self, cid: bytes, round_id: int, peer_id: str, nbytes: int, at: float
    ) -> bool:
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
        sql = (
            "SELECT s.cid, s.round_id, s.peer_id, s.nbytes, s.shared_at, "
            "u.utility, u.voters, u.novel_votes "
            "FROM shared AS s LEFT JOIN utilities AS u ON u.cid = s.cid"
        )
        params: tuple[int, ...] = ()
        if round_id is not None:
            sql += " WHERE s.round_id = ?"
            params = (round_id,)
        with self._reading() as conn:
            return [SharedRecord(*row) for row in conn.execute(sql + " ORDER BY s.seq", params)]

    def set_utility(self, cid: bytes, utility: float, voters: int, novel_votes: int) -> None:
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
        with self._writing() as conn:
            cursor = conn.execute(
                "INSERT INTO votes (cid, origin, voter, round_id, novel, score, received_at, late) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (
                    vote.cid,
                    vote.origin,
                    vote.voter,
                    vote.round_id,
                    int(vote.novel),
                    vote.score,
                    vote.received_at,
                    int(vote.late),
                ),
            )
            return cursor.rowcount == 1

    def list_votes(self, cid: bytes | None = None, round_id: int | None = None) -> list[VoteRecord]:
        clauses: list[str] = []
        params: list[object] = []
        if cid is not None:
            clauses.append("cid = ?")
            params.append(check_cid(cid))
        if round_id is not None:
            clauses.append("round_id = ?")
            params.append(round_id)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = (
            "SELECT cid, origin, voter, round_id, novel, score, received_at, late "
            f"FROM votes {where} ORDER BY seq"
        )
        with self._reading() as conn:
            return [
                VoteRecord(c, o, v, r, bool(novel), s, at, bool(late))
                for c, o, v, r, novel, s, at, late in conn.execute(sql, params)
            ]

    def add_feedback(self, record: FeedbackRecord) -> bool:
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
        sql = (
            "SELECT cid, round_id, reporter, utility, voters, novel_votes, received_at "
            "FROM feedback"
        )
        params: tuple[int, ...] = ()
        if round_id is not None:
            sql += " WHERE round_id = ?"
            params = (round_id,)
        with self._reading() as conn:
            return [
                FeedbackRecord(c, r, rep, u, tuple(json.loads(voters)), n, at)
                for c, r, rep, u, voters, n, at in conn.execute(sql + " ORDER BY seq", params)
            ]

    def feedback_count(self) -> int:
        with self._reading() as conn:
            (n,) = conn.execute("SELECT count(*) FROM feedback").fetchone()
        return int(n)

    # -- peers ---------------------------------------------------------------------------------
    def upsert_peer(self, peer_id: str, address: str, at: float) -> None:
        check_finite("at", at)
        with self._writing() as conn:
            conn.execute(
                "INSERT INTO peers VALUES (?, ?, ?, ?, 0, 0, NULL) ON CONFLICT (peer_id) "
                "DO UPDATE SET address = excluded.address, "
                "last_seen = max(last_seen, excluded.last_seen)",
                (peer_id, address, at, at),
            )

    def add_peer_traffic(self, peer_id: str, bytes_in: int, bytes_out: int, at: float) -> None:
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
        with self._reading() as conn:
            return [
                PeerRecord(*row) for row in conn.execute("SELECT * FROM peers ORDER BY peer_id")
            ]

    # -- rounds --------------------------------------------------------------------------------
    def start_round(self, round_id: int, at: float) -> bool:
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
        if record.finished_at is None:
            raise StoreError(f"finish_round: round {record.round_id} has no finished_at")
        values = (
            record.round_id,
            record.started_at,
            record.finished_at,
            record.shared,
            record.bytes_sent,
            record.votes_received,
            record.feedback_received,
            record.mean_utility,
            record.accuracy,
            int(record.ranker_trained),
        )
        with self._writing() as conn:
            conn.execute(
                f"INSERT OR REPLACE INTO rounds ({_ROUND_COLUMNS}) VALUES ({_ROUND_QMARKS})", values
            )

    def get_round(self, round_id: int) -> RoundRecord | None:
        with self._reading() as conn:
            row = conn.execute(
                f"SELECT {_ROUND_COLUMNS} FROM rounds WHERE round_id = ?", (round_id,)
            ).fetchone()
        return None if row is None else _round(row)

    def list_rounds(self) -> list[RoundRecord]:
        with self._reading() as conn:
            return [
                _round(row)
                for row in conn.execute(f"SELECT {_ROUND_COLUMNS} FROM rounds ORDER BY round_id")
            ]

    def last_round_id(self) -> int:
        with self._reading() as conn:
            (n,) = conn.execute("SELECT coalesce(max(round_id), 0) FROM rounds").fetchone()
        return int(n)

    # -- node state ----------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        with self._reading() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self._writing() as conn:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )
