"""Swarm vs in-process results of the same scenario and seeds, side by side.

Rule: reads two `results.json` objects (the shared schema) and compares per-round figures of
the policies both ran; gaps are in percentage points, absolute.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def _gap(a: Mapping[str, float | None], b: Mapping[str, float | None]) -> float | None:
    x, y = a["mean"], b["mean"]
    return None if x is None or y is None else abs(x - y) * 100


def _max(values: list[float | None]) -> float | None:
    finite = [v for v in values if v is not None]
    return round(max(finite), 2) if finite else None


def _fleet_mean(per_robot: Mapping[str, Any], robots: list[str], get: Any) -> list[float | None]:
    """Per round, the mean over `robots` of one series (None where no robot has a value)."""
    series = [get(per_robot[r]) for r in robots]
    out: list[float | None] = []
    for cells in zip(*series, strict=True):
        values = [c["mean"] for c in cells if c["mean"] is not None]
        out.append(sum(values) / len(values) if values else None)
    return out


def _mean_gap(a: list[float | None], b: list[float | None]) -> float | None:
    gaps = [abs(x - y) * 100 for x, y in zip(a, b, strict=True) if x is not None and y is not None]
    return _max(list(gaps))


def compare(inprocess: Mapping[str, Any], swarm: Mapping[str, Any]) -> dict[str, Any]:
    """Per policy: final figures of both, and the largest per-round gaps (points).

    `max_round_*` gaps are per robot and round; `max_mean_*` gaps compare, round by round, the
    mean over robots (accuracy) or over rare robots (precision), as the summary does.
    """
    rare = list(swarm["scenario"]["rare_robots"])
    out: dict[str, Any] = {}
    for policy in [p for p in swarm["policies"] if p in inprocess["policies"]]:
        a, b = inprocess["per_policy"][policy], swarm["per_policy"][policy]
        robots = list(b)
        acc_gaps = [_gap(x, y) for r in robots
                    for x, y in zip(a[r]["accuracy"]["all"], b[r]["accuracy"]["all"], strict=True)]
        prec_gaps = [_gap(x, y) for r in rare
                     for x, y in zip(a[r]["rare_precision"], b[r]["rare_precision"], strict=True)]
        def accuracy_series(rec: Any) -> Any:
            return rec["accuracy"]["all"]

        def precision_series(rec: Any) -> Any:
            return rec["rare_precision"]

        out[policy] = {
            "max_mean_accuracy_gap_pts": _mean_gap(_fleet_mean(a, robots, accuracy_series),
                                                   _fleet_mean(b, robots, accuracy_series)),
            "max_mean_precision_gap_pts": _mean_gap(
                _fleet_mean(a, rare, precision_series), _fleet_mean(b, rare, precision_series)
            ) if rare else None,
            "inprocess_accuracy": inprocess["summary"].get(f"{policy}_accuracy"),
            "swarm_accuracy": swarm["summary"].get(f"{policy}_accuracy"),
            "inprocess_rare_precision": inprocess["summary"].get(f"{policy}_rare_precision"),
            "swarm_rare_precision": swarm["summary"].get(f"{policy}_rare_precision"),
            "inprocess_megabytes": inprocess["summary"].get(f"{policy}_megabytes"),
            "swarm_megabytes": swarm["summary"].get(f"{policy}_megabytes"),
            "max_round_accuracy_gap_pts": _max(acc_gaps),
            "max_round_precision_gap_pts": _max(prec_gaps),
        }
    acc = _max([p["max_mean_accuracy_gap_pts"] for p in out.values()])
    prec = _max([p["max_mean_precision_gap_pts"] for p in out.values()])
    return {
        "policies": out,
        "max_round_accuracy_gap_pts": _max([p["max_round_accuracy_gap_pts"]
                                            for p in out.values()]),
        "max_round_precision_gap_pts": _max([p["max_round_precision_gap_pts"]
                                             for p in out.values()]),
        "max_mean_accuracy_gap_pts": acc,
        "max_mean_precision_gap_pts": prec,
        "within_2_pts": acc is not None and acc <= 2.0 and (prec is None or prec <= 2.0),
    }


def table(result: Mapping[str, Any]) -> str:
    """The comparison as a markdown table (accuracy and precision in %)."""

    def pct(v: float | None) -> str:
        return "n/a" if v is None else f"{v * 100:.1f}"

    lines = [
        "| policy | accuracy in-process | accuracy swarm | rare precision in-process | "
        "rare precision swarm | MB in-process | MB swarm | max gap acc / prec, fleet mean "
        "(pts) | max gap acc / prec, any robot (pts) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for policy, p in result["policies"].items():
        lines.append(
            f"| {policy} | {pct(p['inprocess_accuracy'])} | {pct(p['swarm_accuracy'])} | "
            f"{pct(p['inprocess_rare_precision'])} | {pct(p['swarm_rare_precision'])} | "
            f"{p['inprocess_megabytes']} | {p['swarm_megabytes']} | "
            f"{p['max_mean_accuracy_gap_pts']} / {p['max_mean_precision_gap_pts']} | "
            f"{p['max_round_accuracy_gap_pts']} / {p['max_round_precision_gap_pts']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """`python -m peerdata.swarmexp.compare INPROCESS_DIR SWARM_DIR`: table, then a JSON line."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        raise SystemExit("usage: python -m peerdata.swarmexp.compare INPROCESS_DIR SWARM_DIR")
    inproc, swarm = (json.loads((Path(a) / "results.json").read_text()) for a in args)
    result = compare(inproc, swarm)
    print(table(result))
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main()
