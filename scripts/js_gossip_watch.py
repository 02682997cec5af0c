#!/usr/bin/env python3
"""A js-libp2p GossipSub node joins a 3-daemon swarm running GU rounds and counts the round's
votes and feedback it receives (tests/interop/gossip_peer.mjs; run `bash scripts/setup-js`).

Runs `peerdata swarm --scenario` on a tiny synthetic-3 (3 robots, tiny models), dials the js
peer into robot 0 as soon as robot 0 listens, and at the end compares what the js peer got with
the votes the daemons published (each daemon's `votes` table holds the votes it received; the
js peer, subscribed like a daemon, should see every vote the fleet gossiped). Table, then one
JSON line.

    .venv/bin/python scripts/js_gossip_watch.py --rounds 2
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import select
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from peerdata.scenario import load_scenario
from peerdata.swarmexp.files import write_scenario
from peerdata.wire.versions import FEEDBACK_TOPIC, VOTES_TOPIC

INTEROP = Path(__file__).resolve().parent.parent / "tests" / "interop"
LISTEN = re.compile(r"listening as \S+ on (/ip4/[^\s\",]+)")  # text or JSON log lines


def tiny_scenario(path: Path, rounds: int) -> Path:
    s = load_scenario("synthetic-3")
    s = s.with_overrides(
        rounds=rounds, bootstrap_images=150, images_per_round=60, calibration_images=40,
        eval_per_dataset=60, detector="energy", policies=("gu",),
        vision=dataclasses.replace(s.vision, width=4, embedding_dim=16, epochs=2,
                                   fine_tune_samples=200),
        ranker=dataclasses.replace(s.ranker, hidden=8, epochs=40),
    )
    return write_scenario(s, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    work = args.out or Path(tempfile.mkdtemp(prefix="js-gossip-"))
    work.mkdir(parents=True, exist_ok=True)
    scenario = tiny_scenario(work / "tiny.toml", args.rounds)
    out = work / "swarm"
    swarm = subprocess.Popen(
        [sys.executable, "-c", "from peerdata.cli.main import main; main()", "swarm",
         "--scenario", str(scenario), "--policy", "gu", "--out", str(out), "--format", "json",
         "--vote-deadline", "60", "--gossip-votes"], stdout=subprocess.PIPE, text=True)
    addr = None
    deadline = time.monotonic() + 300
    while addr is None and time.monotonic() < deadline and swarm.poll() is None:
        # the swarm builds its output in a hidden temp dir beside --out
        for path in [*work.glob("*/gu-0/robot-0/node.log"), *work.glob(".*/gu-0/robot-0/node.log")]:
            m = LISTEN.search(path.read_text(errors="replace"))
            if m:
                addr = m.group(1)
        time.sleep(0.2)  # a script watching another program's files: polling is the way
    if addr is None:
        swarm.kill()
        sys.exit("robot 0 never listened")
    js = subprocess.Popen(["node", str(INTEROP / "gossip_peer.mjs"),
                           f"{VOTES_TOPIC},{FEEDBACK_TOPIC}", addr],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    counts = {VOTES_TOPIC: 0, FEEDBACK_TOPIC: 0}
    senders: set[str] = set()
    topic_peers: set[tuple[str, str]] = set()
    assert js.stdout is not None
    while swarm.poll() is None:
        ready, _, _ = select.select([js.stdout], [], [], 0.5)
        if ready:
            event = json.loads(js.stdout.readline() or "{}")
            if event.get("event") == "topic_peer":
                topic_peers.add((event["topic"], event["peer"]))
            if event.get("event") == "message":
                counts[event["topic"]] += 1
                senders.add(event["from"])
    summary = json.loads(swarm.stdout.read().strip().splitlines()[-1]) if swarm.stdout else {}
    assert js.stdin is not None
    js.stdin.close()
    js.wait(timeout=30)
    received = 0
    for db in sorted(out.glob("gu-0/robot-*/store.sqlite")):
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            received += conn.execute("SELECT count(*) FROM votes").fetchone()[0]
    row = {"rounds": args.rounds, "js_topic_peers": len(topic_peers),
           "js_votes": counts[VOTES_TOPIC],
           "js_feedback": counts[FEEDBACK_TOPIC], "js_senders": len(senders),
           "daemon_votes_recorded": received,
           "rounds_completed": summary.get("rounds_completed"), "work": str(work)}
    print("| " + " | ".join(row) + " |")
    print("|---" * len(row) + "|")
    print("| " + " | ".join(str(v) for v in row.values()) + " |")
    print(json.dumps(row, sort_keys=True))


if __name__ == "__main__":
    main()
