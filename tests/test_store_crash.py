"""A writer killed with SIGKILL at an arbitrary point leaves a consistent, reopenable store.

The child reports each finished iteration on its stdout pipe; the parent kills it right after
reading the N-th report, while it is somewhere inside iteration N+1. The assertions hold for
any kill point, so the test is deterministic even though the exact point is not.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from peerdata.store import SqliteStore, content_id
from peerdata.store.blobs import TEMP_PREFIX
from peerdata.store.sqlite import BLOBS_DIR, DB_NAME

CHILD = r"""
import sys
from pathlib import Path
from peerdata.store import Sample, SqliteStore, VoteRecord

store = SqliteStore.open(Path(sys.argv[1]))
# resume after the last finished iteration: redoing a half-done one is idempotent, while
# skipping it (e.g. starting at count_samples()) would leave its round missing for good
i = int(store.get_meta("progress") or -1) + 1
while True:
    data = i.to_bytes(4, "big") * 16384  # 64 KiB, distinct per iteration
    cid = store.put_blob(data)
    store.add_sample(Sample(cid, "local", i % 10, None, None, None, None, None, i, float(i)))
    store.start_round(i + 1, float(i))
    store.record_shared(cid, i + 1, "QmPeer", len(data), float(i))
    store.add_vote(VoteRecord(cid, "QmMe", "QmPeer", i + 1, True, 0.5, float(i), False))
    store.set_meta("progress", str(i))
    print(i, flush=True)
    i += 1
"""


def blob_for(i: int) -> bytes:
    return i.to_bytes(4, "big") * 16384


def run_and_kill(home: Path, reports: int) -> int:
    """Run the child until it reported `reports` more iterations, SIGKILL it; return the last."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(home)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        last = -1
        for _ in range(reports):
            line = child.stdout.readline()
            assert line, f"child exited early with {child.wait()}"
            last = int(line)
    finally:
        child.kill()  # SIGKILL, by PID
        child.wait()
        if child.stdout is not None:
            child.stdout.close()
    return last


def assert_consistent(home: Path, finished: int) -> None:
    """Everything up to iteration `finished` is there, and nothing is half-written."""
    with SqliteStore.open(home) as store:
        samples = store.list_samples()
        assert [s.observed_round for s in samples] == list(range(len(samples)))
        assert len(samples) >= finished + 1
        for s in samples:
            assert store.get_blob(s.cid) == blob_for(s.observed_round)  # hash verified
        assert {r.round_id for r in store.list_rounds()} >= set(range(1, finished + 2))
        assert len(store.list_shared()) >= finished + 1
        assert len(store.list_votes()) >= finished + 1
        assert int(store.get_meta("progress") or -1) >= finished
        # every blob row names a complete file
        for i in range(len(samples) + 1):
            if store.has_blob(content_id(blob_for(i))):
                assert store.get_blob(content_id(blob_for(i))) == blob_for(i)
    assert not list((home / BLOBS_DIR).glob(f"*/{TEMP_PREFIX}*"))
    conn = sqlite3.connect(home / DB_NAME)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        conn.execute("PRAGMA foreign_keys = ON")
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    finally:
        conn.close()


@pytest.mark.parametrize("reports", [1, 7])
def test_store_crash_sigkill_mid_write_leaves_a_consistent_store(
    tmp_path: Path, reports: int
) -> None:
    finished = run_and_kill(tmp_path, reports)
    assert_consistent(tmp_path, finished)
    # a second writer picks up where the first died, and is killed in turn
    finished = run_and_kill(tmp_path, reports)
    assert_consistent(tmp_path, finished)
