"""The SQLite schema as an ordered list of migrations, keyed by `PRAGMA user_version`.

Rule: migrations are append-only. Migration N turns a version N-1 database into version N and
runs in one transaction together with the `user_version` bump, so a crash leaves the database
at N-1 or at N, never in between. A database newer than the last migration is refused.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from peerdata.errors import StoreError

# One migration = the statements that take the schema from its index to index + 1.
Migration = Sequence[str]

_V1: Migration = (
    """
    CREATE TABLE blobs (
        cid BLOB PRIMARY KEY CHECK (length(cid) = 32),
        size INTEGER NOT NULL CHECK (size >= 0)
    ) WITHOUT ROWID
    """,
    """
    CREATE TABLE samples (
        seq INTEGER PRIMARY KEY,
        cid BLOB NOT NULL UNIQUE REFERENCES blobs (cid),
        source TEXT NOT NULL CHECK (source IN ('local', 'received')),
        label INTEGER,
        origin TEXT,
        domain TEXT,
        prediction INTEGER,
        confidence REAL,
        embedding BLOB,
        observed_round INTEGER NOT NULL,
        created_at REAL NOT NULL
    )
    """,
    "CREATE INDEX samples_by_source ON samples (source, seq)",
    "CREATE INDEX samples_by_round ON samples (observed_round)",
    """
    CREATE TABLE shared (
        seq INTEGER PRIMARY KEY,
        cid BLOB NOT NULL REFERENCES samples (cid),
        round_id INTEGER NOT NULL,
        peer_id TEXT NOT NULL,
        nbytes INTEGER NOT NULL,
        shared_at REAL NOT NULL,
        UNIQUE (cid, round_id, peer_id)
    )
    """,
    "CREATE INDEX shared_by_round ON shared (round_id, seq)",
    """
    CREATE TABLE utilities (
        cid BLOB PRIMARY KEY REFERENCES samples (cid),
        utility REAL NOT NULL,
        voters INTEGER NOT NULL,
        novel_votes INTEGER NOT NULL
    ) WITHOUT ROWID
    """,
    """
    CREATE TABLE votes (
        seq INTEGER PRIMARY KEY,
        cid BLOB NOT NULL,
        origin TEXT NOT NULL,
        voter TEXT NOT NULL,
        round_id INTEGER NOT NULL,
        novel INTEGER NOT NULL,
        score REAL NOT NULL,
        received_at REAL NOT NULL,
        late INTEGER NOT NULL,
        UNIQUE (cid, voter)
    )
    """,
    "CREATE INDEX votes_by_round ON votes (round_id, seq)",
    """
    CREATE TABLE feedback (
        seq INTEGER PRIMARY KEY,
        cid BLOB NOT NULL,
        round_id INTEGER NOT NULL,
        reporter TEXT NOT NULL,
        utility REAL NOT NULL,
        voters TEXT NOT NULL,
        novel_votes INTEGER NOT NULL,
        received_at REAL NOT NULL,
        UNIQUE (cid, reporter, round_id)
    )
    """,
    "CREATE INDEX feedback_by_round ON feedback (round_id, seq)",
    """
    CREATE TABLE peers (
        peer_id TEXT PRIMARY KEY,
        address TEXT NOT NULL,
        first_seen REAL NOT NULL,
        last_seen REAL NOT NULL,
        bytes_in INTEGER NOT NULL,
        bytes_out INTEGER NOT NULL,
        last_message_at REAL
    ) WITHOUT ROWID
    """,
    """
    CREATE TABLE rounds (
        round_id INTEGER PRIMARY KEY,
        started_at REAL NOT NULL,
        finished_at REAL,
        shared INTEGER NOT NULL,
        bytes_sent INTEGER NOT NULL,
        votes_received INTEGER NOT NULL,
        feedback_received INTEGER NOT NULL,
        mean_utility REAL,
        accuracy REAL,
        ranker_trained INTEGER NOT NULL
    )
    """,
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
)

# V2: each blob's provenance (the exit rule, `store.base.may_leave`) and the peer it came from
# (per-peer storage quotas). Existing blobs are classified from what V1 knew: received samples
# are "received"; filter outputs (a `derived.<cid>` meta key, or anything this robot shared,
# which only ever were filter outputs) are "filtered"; everything else stays raw "local".
_V2: Migration = (
    "ALTER TABLE blobs ADD COLUMN provenance TEXT NOT NULL DEFAULT 'local' "
    "CHECK (provenance IN ('local', 'filtered', 'received'))",
    "ALTER TABLE blobs ADD COLUMN received_from TEXT",
    "UPDATE blobs SET provenance = 'received', received_from = (SELECT origin FROM samples "
    "WHERE samples.cid = blobs.cid) WHERE cid IN (SELECT cid FROM samples WHERE source = "
    "'received')",
    "UPDATE blobs SET provenance = 'filtered' WHERE provenance = 'local' AND (cid IN "
    "(SELECT cid FROM shared) OR hex(cid) IN (SELECT upper(substr(key, 9)) FROM meta "
    "WHERE key LIKE 'derived.%'))",
    "CREATE INDEX blobs_by_sender ON blobs (received_from)",
)

# V3: the outbox (`store.outbox`): messages kept until their peer acknowledged them.
_V3: Migration = (
    """
    CREATE TABLE outbox (
        kind TEXT NOT NULL,
        key BLOB NOT NULL,
        peer TEXT NOT NULL,
        data BLOB NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY (kind, key)
    ) WITHOUT ROWID
    """,
)

MIGRATIONS: tuple[Migration, ...] = (_V1, _V2, _V3)
SCHEMA_VERSION = len(MIGRATIONS)


def schema_version(conn: sqlite3.Connection) -> int:
    """The database's `user_version` (0 for a new, empty database)."""
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    return int(version)


def migrate(
    conn: sqlite3.Connection, migrations: Sequence[Migration] = MIGRATIONS, *, label: str = ""
) -> int:
    """Bring the database up to `len(migrations)`; return the version it had before.

    `conn` must be in autocommit mode (`isolation_level=None`). `label` names the database in
    errors (usually its path).

    Raises StoreError if the database is newer than the migrations know.
    """
    found = schema_version(conn)
    latest = len(migrations)
    while True:
        # Re-read the version under the write lock: another process may have migrated already.
        conn.execute("BEGIN IMMEDIATE")
        try:
            current = schema_version(conn)
            if current > latest:
                raise StoreError(
                    f"store {label} has schema version {current}, but this peerdata only "
                    f"knows up to {latest}; upgrade peerdata to open it"
                )
            if current == latest:
                conn.execute("COMMIT")
                return found
            for statement in migrations[current]:
                conn.execute(statement)
            # PRAGMA takes no parameters; the version is an int computed here.
            conn.execute(f"PRAGMA user_version = {current + 1:d}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
