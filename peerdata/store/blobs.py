"""A content-addressed directory of image bytes: `blobs/ab/abcdef...` (hex SHA-256).

Rule: a blob file appears under its final name only once its bytes are durable (temp file,
fsync, rename, fsync of the directory), so a SIGKILL or power cut leaves either no file or a
complete one. The directory knows nothing of SQLite; the store records a blob only after
`write` returned.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from peerdata.errors import StoreError
from peerdata.files import fsync_dir
from peerdata.store.base import NotFoundError, check_cid, content_id

# Temp files are named `.tmp.<writer pid>.<random hex>` inside the fan-out directory.
TEMP_PREFIX = ".tmp."


def _writer_is_gone(temp_name: str) -> bool:
    """Whether the process that wrote this temp file no longer exists (or the name is odd)."""
    try:
        pid = int(temp_name[len(TEMP_PREFIX) :].split(".", 1)[0])
    except ValueError:
        return True
    if pid <= 0:
        return True
    if pid == os.getpid():
        # This process cleans up after every failed write, so a file of ours is either being
        # written right now by another thread or is stale from a reused PID; keep it.
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, owned by someone else
    return False


class BlobDirectory:
    """Image bytes on disk, named by their SHA-256. Safe for concurrent writers."""

    def __init__(self, root: Path) -> None:
        self.root = root
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create blob directory {root}: {exc}") from exc

    def path_for(self, cid: bytes) -> Path:
        """Where the blob `cid` lives (whether or not it exists)."""
        name = check_cid(cid).hex()
        return self.root / name[:2] / name

    def write(self, data: bytes) -> bytes:
        """Write `data` durably under its content ID and return that ID.

        An existing file with the right bytes is kept; one with wrong bytes is replaced.
        """
        cid = content_id(data)
        final = self.path_for(cid)
        if final.exists() and self._matches(final, cid):
            return cid
        fan_out = final.parent
        try:
            if not fan_out.is_dir():
                fan_out.mkdir(exist_ok=True)
                fsync_dir(self.root)
            temp = fan_out / f"{TEMP_PREFIX}{os.getpid()}.{secrets.token_hex(8)}"
            try:
                with open(temp, "xb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(temp, final)
            except BaseException:
                temp.unlink(missing_ok=True)
                raise
            fsync_dir(fan_out)
        except OSError as exc:
            raise StoreError(f"cannot write blob {cid.hex()} under {self.root}: {exc}") from exc
        return cid

    def read(self, cid: bytes) -> bytes:
        """Return the verified bytes of `cid`.

        Raises NotFoundError if there is no file, StoreError if its bytes do not hash to `cid`.
        """
        path = self.path_for(cid)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise NotFoundError(f"blob {cid.hex()} is missing from {self.root}") from None
        except OSError as exc:
            raise StoreError(f"cannot read blob {path}: {exc}") from exc
        if content_id(data) != cid:
            raise StoreError(f"blob {path} is corrupt: its bytes do not match its content ID")
        return data

    def remove_stale_temp_files(self) -> int:
        """Delete temp files left by writers that died mid-write; return how many."""
        removed = 0
        try:
            for temp in self.root.glob(f"*/{TEMP_PREFIX}*"):
                if _writer_is_gone(temp.name):
                    temp.unlink(missing_ok=True)
                    removed += 1
        except OSError as exc:
            raise StoreError(f"cannot clean temp files under {self.root}: {exc}") from exc
        return removed

    def _matches(self, path: Path, cid: bytes) -> bool:
        try:
            return content_id(path.read_bytes()) == cid
        except OSError:
            return False
