"""After a fleet run: is every robot's home whole? SQLite integrity, every blob matching its
content ID, every sample's blob present, no temp files left, the learner checkpoint loading.

Rule: read only; every check is counted, never raised, so one bad home does not hide the
others (`HomeCheck.ok` says whether it is whole).
"""

from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from peerdata.store.blobs import TEMP_PREFIX

DB = "store.sqlite"


@dataclass(frozen=True)
class HomeCheck:
    """What one home holds and what is wrong with it."""

    home: str
    integrity: str  # PRAGMA integrity_check's answer ("ok" when whole)
    samples: int
    blobs: int
    blob_mismatches: int  # files whose SHA-256 is not their name
    missing_blobs: int  # samples whose bytes are not on disk
    temp_files: int  # blob or checkpoint temp files left behind
    checkpoint: str  # "none", "ok" or the error loading it
    unpredicted_local: int  # local samples with prediction NULL (informational)

    @property
    def ok(self) -> bool:
        return (self.integrity == "ok" and not self.blob_mismatches and not self.missing_blobs
                and not self.temp_files and self.checkpoint in ("none", "ok"))

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def _check_db(path: Path) -> tuple[str, int, set[str], int]:
    """(integrity_check, sample count, sample cids (hex), local samples without prediction)."""
    if not path.exists():
        return "no store", 0, set(), 0
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            rows = db.execute("PRAGMA integrity_check").fetchall()
            integrity = "; ".join(str(r[0]) for r in rows)
            cids = {bytes(r[0]).hex() for r in db.execute("SELECT cid FROM samples")}
            (unpredicted,) = db.execute(
                "SELECT count(*) FROM samples WHERE source = 'local' AND prediction IS NULL"
            ).fetchone()
    except sqlite3.Error as exc:
        return f"error: {exc}", 0, set(), 0
    return integrity, len(cids), cids, int(unpredicted)


def _check_checkpoint(home: Path) -> str:
    from peerdata.node.learning import CHECKPOINT

    path = home / CHECKPOINT
    if not path.exists():
        return "none"
    try:
        from peerdata.config import load_config
        from peerdata.node.learning import LearnerHost, learner_config_for

        cfg = load_config(home / "config.toml")
        LearnerHost.load(cfg.name, learner_config_for(cfg.round), cfg.round.learner_seed, path)
    except Exception as exc:  # noqa: BLE001 - any failure to load is the finding
        return f"{type(exc).__name__}: {exc}"[:300]
    return "ok"


def check_home(home: Path, *, checkpoint: bool = True) -> HomeCheck:
    """Check one home (its daemon must be stopped)."""
    integrity, samples, cids, unpredicted = _check_db(home / DB)
    blobs = mismatches = temps = 0
    on_disk: set[str] = set()
    root = home / "blobs"
    for path in root.glob("*/*") if root.exists() else ():
        if path.name.startswith(TEMP_PREFIX):
            temps += 1
            continue
        blobs += 1
        on_disk.add(path.name)
        if hashlib.sha256(path.read_bytes()).hexdigest() != path.name:
            mismatches += 1
    temps += sum(1 for p in home.glob(".*.tmp"))  # checkpoint temp files
    return HomeCheck(
        home=str(home), integrity=integrity, samples=samples, blobs=blobs,
        blob_mismatches=mismatches, missing_blobs=len(cids - on_disk), temp_files=temps,
        checkpoint=_check_checkpoint(home) if checkpoint else "none",
        unpredicted_local=unpredicted,
    )
