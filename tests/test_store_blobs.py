"""The content-addressed blob directory on its own."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from peerdata.errors import StoreError
from peerdata.store import NotFoundError, content_id
from peerdata.store.blobs import TEMP_PREFIX, BlobDirectory


def test_store_blobs_fan_out_layout(tmp_path: Path) -> None:
    blobs = BlobDirectory(tmp_path / "blobs")
    cid = blobs.write(b"pixels")
    name = content_id(b"pixels").hex()
    assert cid == content_id(b"pixels")
    assert blobs.path_for(cid) == tmp_path / "blobs" / name[:2] / name
    assert blobs.path_for(cid).read_bytes() == b"pixels"
    assert blobs.read(cid) == b"pixels"


def test_store_blobs_write_leaves_no_temp_files(tmp_path: Path) -> None:
    blobs = BlobDirectory(tmp_path)
    for i in range(5):
        blobs.write(bytes([i]) * 100)
        blobs.write(bytes([i]) * 100)
    assert not list(tmp_path.glob(f"*/{TEMP_PREFIX}*"))
    assert len(list(tmp_path.glob("*/*"))) == 5


def test_store_blobs_read_verifies_hash(tmp_path: Path) -> None:
    blobs = BlobDirectory(tmp_path)
    cid = blobs.write(b"good")
    blobs.path_for(cid).write_bytes(b"evil")
    with pytest.raises(StoreError, match="corrupt"):
        blobs.read(cid)
    assert blobs.write(b"good") == cid  # rewriting replaces the bad file
    assert blobs.read(cid) == b"good"


def test_store_blobs_missing_is_not_found(tmp_path: Path) -> None:
    blobs = BlobDirectory(tmp_path)
    with pytest.raises(NotFoundError):
        blobs.read(content_id(b"never"))
    assert not blobs.path_for(content_id(b"never")).exists()


def test_store_blobs_stale_temp_files_are_removed_live_ones_kept(tmp_path: Path) -> None:
    blobs = BlobDirectory(tmp_path)
    fan_out = tmp_path / "ab"
    fan_out.mkdir()
    dead = fan_out / f"{TEMP_PREFIX}999999999.00ff"  # beyond pid_max: its writer is gone
    odd = fan_out / f"{TEMP_PREFIX}not-a-pid"
    live = fan_out / f"{TEMP_PREFIX}{os.getppid()}.00ff"  # our parent is alive, mid-write maybe
    ours = fan_out / f"{TEMP_PREFIX}{os.getpid()}.00ff"  # another thread of ours may be writing
    for path in (dead, odd, live, ours):
        path.write_bytes(b"partial")
    assert blobs.remove_stale_temp_files() == 2
    assert not dead.exists() and not odd.exists()
    assert live.exists() and ours.exists()


def test_store_blobs_rejects_bad_cid(tmp_path: Path) -> None:
    with pytest.raises(StoreError):
        BlobDirectory(tmp_path).path_for(b"\0" * 31)
