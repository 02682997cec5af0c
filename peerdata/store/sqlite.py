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

import shutil
import sqlite3
from pathlib import Path

from peerdata.errors import StoreError
from peerdata.store.base import (
    NotFoundError,
    Provenance,
    Sample,
    SampleSource,
    check_cid,
    check_count,
    check_finite,
    may_leave,
    merge_provenance,
)
from peerdata.store.blobs import BlobDirectory
from peerdata.store.sqlite_db import BUSY_TIMEOUT_S, connect, values, where
from peerdata.store.sqlite_records import RecordTables

__all__ = ["BLOBS_DIR", "BUSY_TIMEOUT_S", "DB_NAME", "SqliteStore"]

DB_NAME = "store.sqlite"
BLOBS_DIR = "blobs"

_SAMPLE_COLUMNS = (
    "cid, source, label, origin, domain, prediction, confidence, embedding, observed_round, "
    "created_at"
)


class SqliteStore(RecordTables):
    """A node's durable memory (the Store): image blobs plus everything it learned about them,
    kept in its home directory.

    Safe to call from several threads (e.g. via `trio.to_thread.run_sync`); calls are
    serialised. Lists come back in insertion order unless said otherwise. Every method raises
    StoreError once `close()` was called.
    """

    def __init__(self, conn: sqlite3.Connection, blobs: BlobDirectory, path: Path) -> None:
        """Wrap an open connection; use `SqliteStore.open` instead."""
        super().__init__(conn, path)
        self._blobs = blobs

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
        return cls(connect(path), blobs, path)

    # -- blobs ---------------------------------------------------------------------------------
    def put_blob(self, data: bytes, provenance: Provenance = "local",
                 received_from: str | None = None) -> bytes:
        """Store `data` durably and return its content ID.

        `provenance` says where the bytes came from (default "local": raw, never leaves);
        storing them again only merges it (`merge_provenance`). `received_from` names the
        peer that sent them (for its storage quota; kept from the first time).
        """
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
        """Where the blob `cid` came from, or None if it is not stored."""
        check_cid(cid)
        with self._reading() as conn:
            row = conn.execute("SELECT provenance FROM blobs WHERE cid = ?", (cid,)).fetchone()
        return None if row is None else row[0]  # type: ignore[no-any-return]

    def stored_bytes(self, received_from: str | None = None) -> int:
        """Bytes of all blobs, or of those first received from one peer."""
        clause, params = where(("received_from = ?", received_from))
        with self._reading() as conn:
            (n,) = conn.execute(f"SELECT coalesce(sum(size), 0) FROM blobs{clause}",
                                params).fetchone()
        return int(n)

    def may_leave(self, cid: bytes) -> bool:
        """Whether the bytes of `cid` may be served, offered or relayed (`base.may_leave`)."""
        return may_leave(self.blob_provenance(cid))

    def free_bytes(self) -> int:
        """Free space on the file system the blobs are written to."""
        try:
            return shutil.disk_usage(self._blobs.root).free
        except OSError as exc:
            raise StoreError(f"cannot read free space under {self._blobs.root}: {exc}") from exc

    def get_blob(self, cid: bytes) -> bytes:
        """Return the bytes stored under `cid`, verified against it.

        Raises NotFoundError if absent, StoreError if the stored bytes do not match `cid`.
        """
        if not self.has_blob(cid):
            raise NotFoundError(f"no blob {cid.hex()} in store {self.path}")
        try:
            return self._blobs.read(cid)
        except NotFoundError:
            raise StoreError(
                f"blob {cid.hex()} is recorded in {self.path} but its file is missing"
            ) from None

    def has_blob(self, cid: bytes) -> bool:
        """Whether a blob with this content ID is stored."""
        check_cid(cid)
        with self._reading() as conn:
            return conn.execute("SELECT 1 FROM blobs WHERE cid = ?", (cid,)).fetchone() is not None

    # -- samples -------------------------------------------------------------------------------
    def add_sample(self, sample: Sample) -> bool:
        """Add `sample`; return False (and change nothing) if its cid is already a sample.

        Raises NotFoundError unless the sample's blob was stored first with `put_blob`.
        """
        with self._writing() as conn:
            if conn.execute("SELECT 1 FROM blobs WHERE cid = ?", (sample.cid,)).fetchone() is None:
                raise NotFoundError(f"sample {sample.cid_hex}: put_blob its bytes first")
            cursor = conn.execute(
                f"INSERT INTO samples ({_SAMPLE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (cid) DO NOTHING",
                values(sample),
            )
            return cursor.rowcount == 1

    def get_sample(self, cid: bytes) -> Sample | None:
        """The sample with this cid, or None."""
        check_cid(cid)
        with self._reading() as conn:
            row = conn.execute(
                f"SELECT {_SAMPLE_COLUMNS} FROM samples WHERE cid = ?", (cid,)
            ).fetchone()
        return None if row is None else Sample(*row)

    def list_samples(
        self,
        source: SampleSource | None = None,
        since_round: int | None = None,
        limit: int | None = None,
    ) -> list[Sample]:
        """Samples in insertion order, filtered by source and `observed_round >= since_round`."""
        clause, params = where(("source = ?", source), ("observed_round >= ?", since_round))
        sql = f"SELECT {_SAMPLE_COLUMNS} FROM samples{clause} ORDER BY seq"
        if limit is not None:
            check_count("limit", limit)
            sql += " LIMIT ?"
            params.append(limit)
        with self._reading() as conn:
            return [Sample(*row) for row in conn.execute(sql, params)]

    def count_samples(self, source: SampleSource | None = None) -> int:
        """How many samples (of this source) are stored."""
        clause, params = where(("source = ?", source))
        with self._reading() as conn:
            (n,) = conn.execute(f"SELECT count(*) FROM samples{clause}", params).fetchone()
        return int(n)

    def update_prediction(
        self, cid: bytes, prediction: int, confidence: float, embedding: bytes | None
    ) -> None:
        """Replace the model's prediction for a sample. Raises NotFoundError if absent."""
        check_cid(cid)
        check_finite("confidence", confidence)
        with self._writing() as conn:
            cursor = conn.execute(
                "UPDATE samples SET prediction = ?, confidence = ?, embedding = ? WHERE cid = ?",
                (prediction, confidence, embedding, cid),
            )
            if cursor.rowcount == 0:
                raise NotFoundError(f"no sample {cid.hex()} in store {self.path}")
