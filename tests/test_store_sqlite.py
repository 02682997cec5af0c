"""What only the SQLite store promises: files on disk, reopening, schema versions, corruption."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from peerdata.errors import StoreError
from peerdata.store import (
    FeedbackRecord,
    NotFoundError,
    RoundRecord,
    Sample,
    SqliteStore,
    VoteRecord,
    content_id,
)
from peerdata.store.schema import MIGRATIONS, SCHEMA_VERSION, migrate, schema_version
from peerdata.store.sqlite import BLOBS_DIR, DB_NAME


def fill(store: SqliteStore) -> None:
    """Put one of everything into `store`."""
    cid = store.put_blob(b"image")
    store.add_sample(Sample(cid, "local", 1, None, "kitti", 2, 0.5, b"\0" * 8, 1, 1.0))
    other = store.put_blob(b"other")
    store.add_sample(Sample(other, "received", None, "QmA", None, None, None, None, 2, 2.0))
    store.record_shared(cid, 1, "QmA", 5, 3.0)
    store.set_utility(cid, 0.5, 2, 1)
    store.add_vote(VoteRecord(cid, "QmMe", "QmA", 1, True, 0.9, 4.0, False))
    store.add_feedback(FeedbackRecord(cid, 1, "QmA", 0.5, ("QmA", "QmB"), 1, 5.0))
    store.upsert_peer("QmA", "/ip4/127.0.0.1/tcp/4001", 0.5)
    store.add_peer_traffic("QmA", 10, 20, 6.0)
    store.start_round(1, 0.0)
    store.finish_round(RoundRecord(1, 0.0, 7.0, 1, 5, 1, 1, 0.5, 0.9, True))
    store.start_round(2, 8.0)
    store.set_meta("ranker", "v3")


def snapshot(store: SqliteStore) -> tuple[object, ...]:
    return (
        store.list_samples(),
        store.list_shared(),
        store.list_votes(),
        store.list_feedback(),
        store.list_peers(),
        store.list_rounds(),
        store.get_meta("ranker"),
        [store.get_blob(s.cid) for s in store.list_samples()],
    )


def test_store_sqlite_reopen_keeps_everything(tmp_path: Path) -> None:
    with SqliteStore.open(tmp_path) as store:
        fill(store)
        before = snapshot(store)
    with SqliteStore.open(tmp_path) as store:
        assert snapshot(store) == before
        assert store.last_round_id() == 2
        assert store.feedback_count() == 1


def test_store_sqlite_layout_and_pragmas(tmp_path: Path) -> None:
    home = tmp_path / "new" / "home"
    with SqliteStore.open(home) as store:
        cid = store.put_blob(b"pixels")
        assert store.path == home / DB_NAME
    assert (home / BLOBS_DIR / cid.hex()[:2] / cid.hex()).read_bytes() == b"pixels"
    conn = sqlite3.connect(home / DB_NAME)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert schema_version(conn) == SCHEMA_VERSION
    finally:
        conn.close()


def test_store_sqlite_uses_full_sync_and_foreign_keys(tmp_path: Path) -> None:
    with SqliteStore.open(tmp_path) as store:
        conn = store._conn  # the settings are per connection, so look at ours
        assert conn is not None
        assert conn.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL
        assert conn.execute("PRAGMA foreign_keys").fetchone() == (1,)


def test_store_sqlite_migrations_run_in_order_and_keep_data(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "m.sqlite", isolation_level=None)
    try:
        assert migrate(conn) == 0
        conn.execute("INSERT INTO meta VALUES ('k', 'v')")
        v2 = ("ALTER TABLE meta ADD COLUMN note TEXT", "UPDATE meta SET note = 'from v2'")
        v3 = ("CREATE TABLE later (x INTEGER)",)
        assert migrate(conn, (*MIGRATIONS, v2, v3)) == SCHEMA_VERSION
        assert schema_version(conn) == SCHEMA_VERSION + 2
        assert conn.execute("SELECT key, value, note FROM meta").fetchall() == [
            ("k", "v", "from v2")
        ]
        assert migrate(conn, (*MIGRATIONS, v2, v3)) == SCHEMA_VERSION + 2  # nothing left to do
    finally:
        conn.close()


def test_store_sqlite_failed_migration_leaves_previous_version(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "m.sqlite", isolation_level=None)
    try:
        migrate(conn)
        broken = ("CREATE TABLE half (x INTEGER)", "THIS IS NOT SQL")
        with pytest.raises(sqlite3.OperationalError):
            migrate(conn, (*MIGRATIONS, broken))
        assert schema_version(conn) == SCHEMA_VERSION
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        assert "half" not in tables
    finally:
        conn.close()


def test_store_sqlite_refuses_a_newer_schema(tmp_path: Path) -> None:
    SqliteStore.open(tmp_path).close()
    conn = sqlite3.connect(tmp_path / DB_NAME)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="schema version") as info:
        SqliteStore.open(tmp_path)
    assert str(tmp_path / DB_NAME) in str(info.value)


@pytest.mark.parametrize("garbage", [b"not a database at all\n" * 200, b"\xff" * 4096])
def test_store_sqlite_corrupt_database_file_is_a_store_error(
    tmp_path: Path, garbage: bytes
) -> None:
    (tmp_path / DB_NAME).write_bytes(garbage)
    with pytest.raises(StoreError) as info:
        SqliteStore.open(tmp_path)
    assert str(tmp_path / DB_NAME) in str(info.value)


def test_store_sqlite_tampered_blob_fails_on_read(tmp_path: Path) -> None:
    with SqliteStore.open(tmp_path) as store:
        cid = store.put_blob(b"original pixels")
        path = tmp_path / BLOBS_DIR / cid.hex()[:2] / cid.hex()
        path.write_bytes(b"tampered pixels")
        with pytest.raises(StoreError, match="corrupt") as info:
            store.get_blob(cid)
        assert not isinstance(info.value, NotFoundError)
        store.put_blob(b"original pixels")  # storing it again repairs the file
        assert store.get_blob(cid) == b"original pixels"


def test_store_sqlite_recorded_blob_with_missing_file_is_an_error(tmp_path: Path) -> None:
    with SqliteStore.open(tmp_path) as store:
        cid = store.put_blob(b"pixels")
        (tmp_path / BLOBS_DIR / cid.hex()[:2] / cid.hex()).unlink()
        with pytest.raises(StoreError, match="missing") as info:
            store.get_blob(cid)
        assert not isinstance(info.value, NotFoundError)


def test_store_sqlite_blob_file_without_row_is_not_a_blob(tmp_path: Path) -> None:
    """A crash between the rename and the commit leaves a file nobody names; it is harmless."""
    cid = content_id(b"orphan")
    path = tmp_path / BLOBS_DIR / cid.hex()[:2] / cid.hex()
    path.parent.mkdir(parents=True)
    path.write_bytes(b"orphan")
    with SqliteStore.open(tmp_path) as store:
        assert not store.has_blob(cid)
        with pytest.raises(NotFoundError):
            store.get_blob(cid)
        assert store.put_blob(b"orphan") == cid
        assert store.get_blob(cid) == b"orphan"


def test_store_sqlite_open_removes_leftover_temp_files(tmp_path: Path) -> None:
    with SqliteStore.open(tmp_path) as store:
        cid = store.put_blob(b"kept")
    fan_out = tmp_path / BLOBS_DIR / cid.hex()[:2]
    leftover = fan_out / ".tmp.999999999.deadbeef"  # writer PID beyond pid_max: long gone
    leftover.write_bytes(b"half an ima")
    with SqliteStore.open(tmp_path) as store:
        assert not leftover.exists()
        assert store.get_blob(cid) == b"kept"


def test_store_sqlite_two_stores_on_one_home_see_each_other(tmp_path: Path) -> None:
    """A CLI may read the daemon's store while it runs."""
    with SqliteStore.open(tmp_path) as daemon, SqliteStore.open(tmp_path) as reader:
        daemon.set_meta("k", "v")
        cid = daemon.put_blob(b"x")
        assert reader.get_meta("k") == "v"
        assert reader.get_blob(cid) == b"x"
