"""The SQLite connection under the durable Store: opening, migrating, transactions.

Rule: every change is one IMMEDIATE transaction (`_writing`), committed if the block returns and
rolled back if it raises; every read and write holds the store's one lock. SQLite errors become
StoreError here, nowhere else.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import Any, Self

from peerdata.errors import StoreError
from peerdata.store.schema import migrate

BUSY_TIMEOUT_S = 5.0


def values(record: Any) -> tuple[Any, ...]:
    """A record's fields in declaration order: the column order of its table."""
    return tuple(getattr(record, f.name) for f in fields(record))


def where(*conditions: tuple[str, object]) -> tuple[str, list[object]]:
    """A WHERE clause of the `(sql, value)` conditions whose value is not None, and its
    parameters ("" and [] when there is none)."""
    kept = [(sql, value) for sql, value in conditions if value is not None]
    clause = f" WHERE {' AND '.join(sql for sql, _ in kept)}" if kept else ""
    return clause, [value for _, value in kept]


def connect(path: Path) -> sqlite3.Connection:
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


class Database:
    """One serialised SQLite connection (see the module rule)."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        """Wrap an open connection; use `SqliteStore.open` instead."""
        self.path = path
        self._conn: sqlite3.Connection | None = conn
        self._lock = threading.Lock()

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
        """Release the store's resources; closing twice is allowed."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
