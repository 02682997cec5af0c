"""GU rounds for a fleet-fault run (`run_faults(..., work="gu")`): every present robot learns,
observes a fresh synthetic feed and starts a round while the fault plan hits the fleet; after
the run, a ledger of votes cast against votes their origins recorded, of shared images
against those that ended with a utility, and the GU rare precision (the share of shared images
from a rare family: every robot bootstraps on bars only; each round's feed holds 8 rings or
spots among 32 bars). The feeds depend on robot and round only, so a run with an empty plan
(`fault_free`) is the same fleet's reference.

Rule: the robots are driven only through their control sockets (a robot killed in the middle
of a command is counted, never waited for); the ledger is read from the stores after every
daemon stopped, so it shows what survived, not what a process believed.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from peerdata.errors import PeerdataError
from peerdata.testing.daemons import Settings
from peerdata.testing.swarm import Swarm

FAMILIES = {"bars": 0, "rings": 10, "spots": 20}  # label offsets, as in synthetic-3
DEADLINE_S = 10.0


def round_settings(deadline_s: float = DEADLINE_S) -> Callable[[int], Settings]:
    """config.toml settings for small, fast GU robots (synthetic-3)."""
    return lambda _i: {"round": {
        "interval_s": 0.0, "vote_deadline_s": deadline_s, "budget_fraction": 0.25,
        "calibration_images": 20, "vision_width": 2, "vision_epochs": 1,
        "scenario": "synthetic-3"}}


def write_feed(path: Path, mix: dict[str, int], seed: int) -> Path:
    """An npz of synthetic images (`x`, `y`, `domain`) with `mix` images per family."""
    from peerdata.datasets.synthetic import generate

    xs, ys, ds = [], [], []
    for k, (family, n) in enumerate(sorted(mix.items())):
        data = generate(family, n, seed * 10 + k)
        xs.append(data.images)
        ys.append(data.labels + FAMILIES[family])
        ds.append(np.full(n, f"synthetic-{family}"))
    np.savez(path, x=np.concatenate(xs), y=np.concatenate(ys), domain=np.concatenate(ds))
    return path


def bootstrap(swarm: Swarm, out: Path) -> None:
    """Every robot observes its bootstrap images (one familiar family for all)."""
    for r in swarm.robots:
        feed = write_feed(out / f"boot-{r.index}.npz", {"bars": 60}, 100 + r.index)
        swarm.call(r.index, "observe", {"npz": str(feed), "bootstrap": True, "seed": r.index},
                   timeout_s=300.0)


def gu_round(swarm: Swarm, present: Sequence[int], round_no: int, out: Path,
             failures: Callable[[str], None]) -> None:
    """Each present robot, on its own thread: learn, observe a feed with a rare family, start
    a GU round. A command that fails (its robot was hit) is counted through `failures`."""
    rare = ["rings", "spots"]

    def one(i: int) -> None:
        feed = write_feed(out / f"r{round_no}-{i}.npz",
                          {"bars": 32, rare[(i + round_no) % 2]: 8}, 1000 * round_no + i)
        for cmd, args in (("learn", {}), ("observe", {"npz": str(feed)}),
                          ("round_now", {"policy": "gu"})):
            try:
                swarm.call(i, cmd, args, timeout_s=120.0)
            except (PeerdataError, OSError):
                failures(cmd)
                return

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in present]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


@dataclass(frozen=True)
class RoundLedger:
    """Votes and utilities over all homes after a GU fault run."""

    votes_cast: int  # by a robot on another's image, in the voter's store
    votes_recorded: int  # of those, recorded by the origin
    votes_unknown: int  # recorded by an origin, cast by no voter's store (0 expected)
    votes_pending: int  # still in an outbox (undelivered) when the run ended
    images_shared: int
    images_with_utility: int  # feedback, corrected or recovered
    images_with_feedback: int  # from a peer's Feedback (not recovered)
    feedback_duplicates: int  # images with more accepted peer Feedback than chains
    rare_shared: int  # shared images of a rare family (not bars)

    @property
    def lost_votes(self) -> int:
        return self.votes_cast - self.votes_recorded

    @property
    def rare_precision(self) -> float | None:
        return self.rare_shared / self.images_shared if self.images_shared else None

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "lost_votes": self.lost_votes,
                "rare_precision": self.rare_precision}


def round_ledger(homes: Sequence[tuple[str, Path]]) -> RoundLedger:
    """Read every home (peer ID, path) read-only and count (see `RoundLedger`)."""
    cast: set[tuple[bytes, str, str, int]] = set()
    recorded: set[tuple[bytes, str, str, int]] = set()
    pending = shared = with_utility = with_feedback = duplicates = rare = 0
    for me, home in homes:
        with sqlite3.connect(f"file:{home / 'store.sqlite'}?mode=ro", uri=True) as db:
            for cid, origin, voter, rid in db.execute(
                    "SELECT cid, origin, voter, round_id FROM votes"):
                key = (bytes(cid), origin, voter, rid)
                if voter == me and origin != me:
                    cast.add(key)
                elif origin == me and voter != me:
                    recorded.add(key)
            pending += db.execute(
                "SELECT count(*) FROM outbox WHERE kind = 'vote'").fetchone()[0]
            shared += db.execute("SELECT count(DISTINCT cid) FROM shared").fetchone()[0]
            with_utility += db.execute("SELECT count(DISTINCT s.cid) FROM shared s JOIN "
                                       "utilities u ON u.cid = s.cid").fetchone()[0]
            rare += db.execute(
                "SELECT count(DISTINCT s.cid) FROM shared s JOIN samples m ON m.cid = s.cid "
                "WHERE m.domain != 'synthetic-bars'").fetchone()[0]
            per_image = db.execute(  # accepted peer Feedback vs the chains it went out on
                "SELECT f.cid, f.round_id, count(*), (SELECT count(*) FROM shared s WHERE "
                "s.cid = f.cid AND s.round_id = f.round_id) FROM feedback f WHERE "
                "f.reporter != ? GROUP BY f.cid, f.round_id", (me,)).fetchall()
        with_feedback += len(per_image)
        duplicates += sum(n > max(1, chains) for _, _, n, chains in per_image)
    return RoundLedger(len(cast), len(cast & recorded), len(recorded - cast), pending, shared,
                       with_utility, with_feedback, duplicates, rare)


def pending_votes(home: Path) -> int:
    """Votes in the home's outbox (read-only; the daemon may be running)."""
    with sqlite3.connect(f"file:{home / 'store.sqlite'}?mode=ro", uri=True) as db:
        return int(db.execute("SELECT count(*) FROM outbox WHERE kind = 'vote'").fetchone()[0])


def wait_delivered(homes: Sequence[Path], timeout_s: float) -> bool:
    """Until no home has a vote left to deliver, or `timeout_s`; whether none is left."""
    deadline = time.monotonic() + timeout_s
    while any(pending_votes(h) for h in homes):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True
