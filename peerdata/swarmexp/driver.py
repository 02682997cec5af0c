"""One policy's rounds over running daemons: observe, round_now, wait_round, learn, evaluate.

Rule: the daemons are reached only through an injected `RobotCall` (the swarm's control client,
or an in-process stand-in in tests), and every step goes to all robots at once, each robot's call
on its own thread, so the daemons' CPU-heavy steps overlap as they would on separate robots.
What the daemons report becomes the in-process runner's per-robot records, field for field.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from peerdata.scenario import Scenario
from peerdata.swarmexp.files import RobotFiles

RobotCall = Callable[[int, str, dict[str, Any], float], dict[str, Any]]
"""Sends one control command to robot `index`: (index, cmd, args, timeout_s) -> result."""

Progress = Callable[[str], None]
MAX_WAIT_S = 600.0  # the daemons' longest wait


@dataclass(frozen=True)
class DriverSettings:
    """How long one command (training, evaluation) may take, and the rounds' vote deadline.

    `vote_timeout_s` is also each daemon's `round.vote_deadline_s`: a round whose feedback has
    not all come back by then is finished by the daemon, and `wait_round` returns it.
    """

    command_timeout_s: float = 600.0
    vote_timeout_s: float = 60.0


@dataclass
class PolicyRun:
    """One policy's run: the runner's per-robot records plus what only a swarm measures."""

    policy: str
    per_robot: dict[str, dict[str, list[Any]]]
    round_seconds: list[float] = field(default_factory=list)
    vote_latencies_s: list[float] = field(default_factory=list)
    feedback_received: dict[str, int] = field(default_factory=dict)
    bytes_sent: dict[str, list[int]] = field(default_factory=dict)
    dropped_by_privacy: dict[str, int] = field(default_factory=dict)
    network_bytes_sent: dict[str, int] = field(default_factory=dict)  # all traffic, at the end
    rounds_completed: int = 0
    notes: list[str] = field(default_factory=list)
    # per robot, per round: the local images it shared (source cids, hex, sorted)
    shared_cids: dict[str, list[list[str]]] = field(default_factory=dict)


def sharing_record(
    shared: Sequence[Mapping[str, Any]], round_domains: Sequence[str], novel: frozenset[str]
) -> dict[str, float]:
    """`peerdata.experiment.metrics.sharing_stats` from a daemon's `shared` list.

    An image offered to several peers is listed once per peer; it counts once, as in-process.
    """
    unique = {str(item["cid"]): item for item in shared}
    rare_available = sum(d in novel for d in round_domains)
    rare_shared = sum(str(item.get("domain")) in novel for item in unique.values())
    n = len(unique)
    return {
        "shared": n,
        "rare_shared": rare_shared,
        "rare_available": rare_available,
        "rare_precision": rare_shared / n if n else float("nan"),
        "rare_recall": rare_shared / rare_available if rare_available else float("nan"),
        "bytes": sum(int(item.get("nbytes", 0)) for item in unique.values()),
    }


def vote_latency(item: Mapping[str, Any]) -> float | None:
    """Seconds from a `shared` item going out to its feedback coming back (None if not
    recorded)."""
    start, end = item.get("shared_at"), item.get("feedback_at")
    return None if start is None or end is None else float(end) - float(start)


def accuracy_record(result: Mapping[str, Any], scenario: Scenario) -> dict[str, float]:
    """An `evaluate` answer as the runner's accuracy record (every dataset, then `all`)."""
    acc = result["accuracy"]
    return {d: float(acc[d]) for d in (*scenario.datasets, "all")}


class _Fleet:
    """Calls all robots at once, one thread each; the first failure is raised."""

    def __init__(self, call: RobotCall, count: int) -> None:
        self.call, self.count = call, count
        self.pool = ThreadPoolExecutor(max_workers=count, thread_name_prefix="swarmexp")

    def each(
        self, cmd: str, args: Callable[[int], dict[str, Any]], timeout_s: float
    ) -> list[dict[str, Any]]:
        futures: list[Future[dict[str, Any]]] = [
            self.pool.submit(self.call, i, cmd, args(i), timeout_s) for i in range(self.count)
        ]
        try:
            return [f.result() for f in futures]
        except BaseException:
            for f in futures:
                f.cancel()
            raise

    def close(self) -> None:
        # never wait: on Ctrl-C the threads end when the daemons are stopped under them
        self.pool.shutdown(wait=False, cancel_futures=True)


def run_policy(
    scenario: Scenario,
    files: Mapping[str, RobotFiles],
    policy: str,
    call: RobotCall,
    *,
    settings: DriverSettings = DriverSettings(),
    progress: Progress | None = None,
) -> PolicyRun:
    """Bootstrap every robot, then run `scenario.rounds` rounds of `policy`; robot i = index i."""
    tick = progress or (lambda _msg: None)
    names = [r.name for r in scenario.robots]
    novel = {name: scenario.novel_domains(name) for name in names}
    run = PolicyRun(
        policy,
        {name: {"accuracy": [], "sharing": [], "utility": []} for name in names},
        feedback_received=dict.fromkeys(names, 0),
        bytes_sent={name: [] for name in names},
        dropped_by_privacy=dict.fromkeys(names, 0),
    )
    fleet = _Fleet(call, len(names))
    long = settings.command_timeout_s
    try:
        fleet.each("observe",  # the learner's seed is in each robot's config.toml
                   lambda i: {"npz": str(files[names[i]].bootstrap), "bootstrap": True}, long)
        for i, ev in enumerate(fleet.each("evaluate", lambda i: _eval_args(files, names[i]), long)):
            run.per_robot[names[i]]["accuracy"].append(accuracy_record(ev, scenario))
        tick(f"{policy} bootstrap")
        for r in range(scenario.rounds):
            _one_round(scenario, files, policy, fleet, run, r, novel, settings)
            tick(f"{policy} round {r + 1}")
        for i, st in enumerate(fleet.each("status", lambda _i: {}, 60.0)):
            run.network_bytes_sent[names[i]] = int(st.get("bytes_sent", 0))
    finally:
        fleet.close()
    return run


def _eval_args(files: Mapping[str, RobotFiles], name: str) -> dict[str, Any]:
    return {"npz": str(files[name].evaluation)}


def _one_round(
    scenario: Scenario,
    files: Mapping[str, RobotFiles],
    policy: str,
    fleet: _Fleet,
    run: PolicyRun,
    r: int,
    novel: Mapping[str, frozenset[str]],
    settings: DriverSettings,
) -> None:
    names = [rb.name for rb in scenario.robots]
    long = settings.command_timeout_s
    started = time.perf_counter()
    fleet.each("observe", lambda i: {"npz": str(files[names[i]].rounds[r]), "bootstrap": False},
               long)

    def round_args(i: int) -> dict[str, Any]:
        args: dict[str, Any] = {"policy": policy}
        if policy == "oracle":
            args["novel_domains"] = sorted(novel[names[i]])
        return args

    offers = fleet.each("round_now", round_args, long)
    wait_s = min(settings.vote_timeout_s + 30.0, MAX_WAIT_S)  # the deadline ends it first
    waits = fleet.each(
        "wait_round",
        lambda i: {"round_id": offers[i]["round_id"], "timeout_s": wait_s},
        wait_s + 30.0,
    )
    fleet.each("learn", lambda _i: {}, long)
    run.round_seconds.append(time.perf_counter() - started)
    evals = fleet.each("evaluate", lambda i: _eval_args(files, names[i]), long)
    lists = fleet.each("shared", lambda i: {"round_id": offers[i]["round_id"]}, 60.0)
    for i, name in enumerate(names):
        rec = run.per_robot[name]
        items = list(lists[i]["shared"])
        rec["sharing"].append(sharing_record(items, files[name].round_domains[r], novel[name]))
        run.shared_cids.setdefault(name, []).append(
            sorted({str(it.get("source_cid") or it["cid"]) for it in items}))
        utility = waits[i].get("mean_utility")
        rec["utility"].append(float("nan") if utility is None else float(utility))
        rec["accuracy"].append(accuracy_record(evals[i], scenario))
        run.feedback_received[name] += int(waits[i].get("feedback_received", 0))
        run.bytes_sent[name].append(int(offers[i].get("bytes_sent", 0)))
        run.dropped_by_privacy[name] += int(offers[i].get("dropped_by_privacy", 0))
        latencies = [v for v in (vote_latency(it) for it in items) if v is not None]
        run.vote_latencies_s.extend(latencies)
        if not waits[i].get("complete", True):
            run.notes.append(f"{policy} round {r + 1}: robot {name}'s votes incomplete")
    run.rounds_completed = r + 1


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile, or None for no values."""
    return float(np.percentile(np.asarray(values, np.float64), q)) if len(values) else None
