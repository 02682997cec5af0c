"""The fleet-fault plan is a pure function of its seed, and the home check finds each kind of
damage a crash could leave (a torn blob, a temp file, a missing blob, a corrupt checkpoint)."""

from __future__ import annotations

from pathlib import Path

from peerdata.config import load_config
from peerdata.node.home import init_home
from peerdata.node.learning import CHECKPOINT, LearnerHost, learner_config_for
from peerdata.store import FeedbackRecord, Sample, SqliteStore
from peerdata.testing.faultrounds import round_ledger
from peerdata.testing.faults import plan_faults
from peerdata.testing.storecheck import check_home


def test_plan_is_seeded_and_has_what_was_asked() -> None:
    plan = plan_faults(7, robots=10, rounds=10, round_s=20.0)
    assert plan == plan_faults(7, robots=10, rounds=10, round_s=20.0)
    assert plan != plan_faults(8, robots=10, rounds=10, round_s=20.0)
    kinds = [f.kind for f in plan.faults]
    assert (kinds.count("kill9"), kinds.count("freeze"), kinds.count("partition")) == (10, 2, 2)
    assert all(0 < f.at_s < 200 and 0 <= f.robot < 10 for f in plan.faults)
    assert [f.at_s for f in plan.faults] == sorted(f.at_s for f in plan.faults)
    assert all(f.hold_s > 20.0 for f in plan.faults if f.kind == "freeze")  # past a round
    assert len(plan.churn) == 10 and all(len(c) == 3 and 0 not in c for c in plan.churn)


def _home(tmp_path: Path) -> tuple[Path, bytes]:
    home = tmp_path / "robot-0"
    init_home(home, name="robot-0", listen=("/ip4/127.0.0.1/tcp/0",), bootstrap=())
    with SqliteStore.open(home) as store:
        cid = store.put_blob(b"\x89PNG\r\n\x1a\n" + b"x" * 100)
        store.add_sample(Sample(cid=cid, source="local", label=1, origin=None, domain=None,
                                prediction=None, confidence=None, embedding=None,
                                observed_round=0, created_at=0.0))
    return home, cid


def test_a_whole_home_passes(tmp_path: Path) -> None:
    home, _ = _home(tmp_path)
    check = check_home(home)
    assert check.ok and check.integrity == "ok" and (check.samples, check.blobs) == (1, 1)
    assert check.checkpoint == "none" and check.unpredicted_local == 1
    cfg = load_config(home / "config.toml")
    LearnerHost(cfg.name, learner_config_for(cfg.round), 0, home / CHECKPOINT).save()
    assert check_home(home).checkpoint == "ok"


def test_each_kind_of_damage_is_found(tmp_path: Path) -> None:
    home, cid = _home(tmp_path)
    blob = home / "blobs" / cid.hex()[:2] / cid.hex()
    blob.write_bytes(b"torn")
    (blob.parent / ".tmp.999999.abcd").write_bytes(b"half")
    (home / ".learner.ckpt.123.tmp").write_bytes(b"half")
    (home / "learner.ckpt").write_bytes(b"not a checkpoint")
    check = check_home(home)
    assert (check.blob_mismatches, check.temp_files) == (1, 2)
    assert check.checkpoint.startswith("DataError") and not check.ok
    blob.unlink()
    assert check_home(home).missing_blobs == 1


def test_a_fault_on_a_down_or_busy_robot_is_redrawn_onto_a_free_one() -> None:
    import random
    import time
    from types import SimpleNamespace

    from peerdata.testing.faults import Fault, FaultReport, _Fleet, _take

    swarm = SimpleNamespace(robots=[SimpleNamespace(index=i) for i in range(3)])
    fleet = _Fleet(swarm, FaultReport(plan_faults(1, 3, 1, 1.0)))  # type: ignore[arg-type]
    fleet.mark(1, True)  # robot 1 is down
    assert fleet.locks[2].acquire()  # robot 2 is busy with another fault
    fault = Fault(0.0, "kill9", 1, 1.0)
    assert _take(fleet, fault, random.Random(0), time.monotonic() + 5) == 0
    assert fleet.locks[0].locked()
    # nobody free: given up at `until`, not applied twice to one robot
    assert _take(fleet, fault, random.Random(0), time.monotonic() + 0.3) is None
    fleet.locks[2].release()
    assert _take(fleet, Fault(0.0, "kill9", 2, 1.0), random.Random(0), 0.0) == 2


def test_round_ledger_counts_chains_rare_precision_and_duplicate_feedback(tmp_path: Path
                                                                          ) -> None:
    """One origin's store: two images, each out on two chains; one bars, one rings."""
    me, heads = "origin", ("h1", "h2")
    with SqliteStore.open(tmp_path) as store:
        cids = []
        for k, domain in enumerate(("synthetic-bars", "synthetic-rings")):
            cid = store.put_blob(bytes([k]) * 64)
            store.add_sample(Sample(cid, "local", 1, None, domain, None, None, None, 1, 0.0))
            for head in heads:
                store.record_shared(cid, 1, head, 64, 0.0)
            cids.append(cid)
        for head in heads:  # bars: one Feedback per chain, as it should be
            store.add_feedback(FeedbackRecord(cids[0], 1, head, 0.0, (head,), 0, 1.0))
        for reporter in ("h1", "x1", "x2"):  # rings: three Feedbacks for two chains
            store.add_feedback(FeedbackRecord(cids[1], 1, reporter, 1.0, (reporter,), 1, 1.0))
    led = round_ledger([(me, tmp_path)])
    assert (led.images_shared, led.images_with_feedback, led.feedback_duplicates) == (2, 2, 1)
    assert led.rare_shared == 1 and led.rare_precision == 0.5
