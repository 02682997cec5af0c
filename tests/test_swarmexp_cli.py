"""`peerdata swarm --scenario`: the experiment as real daemons, asserted through the CLI's output.

A tiny synthetic-3 (3 robots, 2 rounds, tiny models) runs as subprocesses on 127.0.0.1; the
CLI starts the daemons (readiness on a pipe, port 0) and stops them; the fixture kills by PID
whatever a failed test left running.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from peerdata.exit_codes import ExitCode
from peerdata.scenario import Scenario, load_scenario
from peerdata.sharing import budget_count
from peerdata.swarmexp.files import write_scenario

pytestmark = [pytest.mark.swarm, pytest.mark.slow]

_ENTRY = "from peerdata.cli.main import main; main()"
TIMEOUT = 300.0


def tiny() -> Scenario:
    s = load_scenario("synthetic-3")
    return s.with_overrides(
        rounds=2, bootstrap_images=150, images_per_round=60, calibration_images=40,
        eval_per_dataset=60, detector="energy",
        vision=dataclasses.replace(s.vision, width=4, embedding_dim=16, epochs=2,
                                   fine_tune_samples=200),
        ranker=dataclasses.replace(s.ranker, hidden=8, epochs=40),
    )


def _daemon_pids(root: Path) -> list[int]:
    pids = []
    for pid_file in root.rglob("node.pid"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            pids.append(int(pid_file.read_text().split()[0]))
    return pids


@pytest.fixture
def launched(tmp_path: Path) -> Iterator[list[subprocess.Popen[str]]]:
    """CLI processes a test starts; afterwards each, and any daemon left behind, is killed."""
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()  # reaps it and closes its pipes
    for pid in _daemon_pids(tmp_path):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def start_cli(procs: list[subprocess.Popen[str]], *args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", _ENTRY, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    procs.append(proc)
    return proc


def test_tiny_swarm_experiment_writes_the_experiment_schema(
    tmp_path: Path, launched: list[subprocess.Popen[str]]
) -> None:
    s = tiny()
    scenario = write_scenario(s, tmp_path / "tiny.toml")
    out = tmp_path / "o"
    proc = start_cli(launched, "swarm", "--scenario", str(scenario), "--policy", "gu,oracle",
                     "--seed", "0", "--out", str(out), "--format", "json")
    stdout, stderr = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0, stderr
    summary: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    for key in ("gu_rare_precision", "gu_accuracy", "oracle_accuracy", "gu_oracle_accuracy_gap",
                "seconds", "vote_latency_p50_s", "vote_latency_p99_s"):
        assert summary[key] is not None, key
    assert summary["rounds_completed"] == 2
    assert summary["oracle_rare_precision"] == 1.0
    assert set(summary["feedback_received"]) == {"A", "B", "C"}
    assert all(n > 0 for n in summary["feedback_received"].values())
    # the same seed through the in-process simulator, compared round by round
    assert isinstance(summary["swarm_vs_inprocess_same_shares"], bool)
    assert 0.0 <= summary["swarm_vs_inprocess_max_accuracy_diff"] <= 1.0

    results = json.loads((out / "results.json").read_text())
    assert results["mode"] == "swarm" and results["policies"] == ["gu", "oracle"]
    assert results["rounds"] == 2 and results["seeds"] == [0]
    assert {"scenario", "per_policy", "auroc", "summary", "swarm", "data_notes"} <= set(results)
    limit = budget_count(s.budget, s.images_per_round)
    for policy, per_robot in results["per_policy"].items():
        assert set(per_robot) == {"A", "B", "C"}
        for robot, rec in per_robot.items():
            assert len(rec["accuracy"]["all"]) == 3  # round 0 (bootstrap) + 2 rounds
            assert set(rec["accuracy"]) == {*s.datasets, "all"}
            assert all(0 <= c["mean"] <= 1 for c in rec["accuracy"]["all"])
            assert all(c["mean"] <= limit for c in rec["shared"]), (policy, robot)
            if policy == "oracle" and robot in ("B", "C"):
                assert [c["mean"] for c in rec["rare_precision"]] == [1.0, 1.0]
        run = results["swarm"][policy][0]
        assert run["rounds_completed"] == 2 and run["notes"] == []
    assert results["per_policy"]["oracle"]["A"]["shared"][0]["mean"] == 0  # nothing rare
    for name in ("results.md", "accuracy.png", "precision.png"):
        assert (out / name).stat().st_size > 0
    assert "## Swarm (real daemons" in (out / "results.md").read_text()
    # every daemon stopped gracefully (pid files and sockets removed), no temp dir left beside
    assert _daemon_pids(out) == [] and not list(out.rglob("control.sock"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o", "tiny.toml"]


def test_sigterm_stops_every_daemon_and_leaves_no_output(
    tmp_path: Path, launched: list[subprocess.Popen[str]]
) -> None:
    scenario = write_scenario(tiny().with_overrides(rounds=8), tmp_path / "tiny.toml")
    out = tmp_path / "o"
    proc = start_cli(launched, "swarm", "--scenario", str(scenario), "--policy", "random",
                     "--out", str(out))
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:  # progress lines: the daemons are up once the bootstrap is done
        seen.append(line)
        if "random bootstrap" in line:
            break
    assert "random bootstrap" in seen[-1], "".join(seen)
    pids = _daemon_pids(tmp_path)
    assert len(pids) == 3
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == ExitCode.INTERRUPTED
    for pid in pids:  # reaped by the CLI, so gone, not zombies
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.toml"]
