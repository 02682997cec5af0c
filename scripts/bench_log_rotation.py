"""Drive the daemon's logger through N rounds of synthetic events and report how big node.log
and its rotated copies get against `[log] max_bytes` (the figure in the issue #15 note).

Usage: .venv/bin/python scripts/bench_log_rotation.py [--rounds 10000] [--max-bytes 65536]
Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

from peerdata.node.logs import configure_logging, event, remove_handlers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10_000)
    parser.add_argument("--max-bytes", type=int, default=64 * 1024)
    parser.add_argument("--backups", type=int, default=2)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="peerdata-logbench-"))
    handlers = configure_logging(home, logging.INFO, max_bytes=args.max_bytes,
                                 backups=args.backups)
    handlers[0].setLevel(logging.CRITICAL)  # stderr quiet: the file is measured
    log = logging.getLogger("peerdata.node.rounds")
    peak = events = 0
    started = time.perf_counter()
    for rnd in range(1, args.rounds + 1):
        event(log, logging.INFO, "round_started", round_id=rnd, policy="gu", selected=10,
              shared=3, dropped_by_privacy=0, over_budget=0, peers=2)
        event(log, logging.INFO, "image_arrived", round_id=rnd, peer=f"12D3KooW{rnd:040d}",
              cid=f"{rnd:064x}", nbytes=1234 + rnd)
        event(log, logging.WARNING, "vote_late", round_id=rnd, peer="12D3KooWlate" * 3)
        event(log, logging.INFO, "round_finished", round_id=rnd, shared=3, feedback=3,
              recovered=0, mismatched=0, complete=True)
        events += 4
        peak = max(peak, (home / "node.log").stat().st_size)
    seconds = time.perf_counter() - started
    remove_handlers(handlers)
    files = {f.name: f.stat().st_size for f in sorted(home.glob("node.log*"))}
    for name, size in files.items():
        print(f"{name:<12} {size:>10} B")
    result = {"rounds": args.rounds, "events": events, "max_bytes": args.max_bytes,
              "backups": args.backups, "peak_node_log": peak, "total": sum(files.values()),
              "bound": (args.backups + 1) * args.max_bytes, "seconds": round(seconds, 2),
              "under_limit": peak <= args.max_bytes}
    print(f"peak node.log {peak} B <= max_bytes {args.max_bytes} B: {result['under_limit']}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
