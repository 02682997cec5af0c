"""Federation between real processes: one node per robot on 127.0.0.1, compared with in-process.

Rule: each robot is a separate process running the daemon's own node (`open_node`: libp2p,
SQLite, identity, receive guard) and the daemon's own `Federation` service on the fleet clock
(wall time); only its local training step is the experiment's (`train_from` on its slice of the
split, seeded as `peerdata federated` seeds it), so `swarm_vs_inprocess_accuracy_diff` measures
what the network changes and nothing else. Children report readiness on a pipe, start together
on a round named by the driver on their stdin (never a sleep), and are stopped by PID on exit.
"""

from __future__ import annotations

import argparse
import logging
import os
import pickle
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from peerdata.errors import PeerdataError
from peerdata.node.home import init_home
from peerdata.testing.daemons import (
    LOOPBACK,
    Robot,
    await_ready,
    edit_config,
    spawn_robot,
    stop_robot,
)

_ENTRY = "from peerdata.testing.fedswarm import robot_main; robot_main()"
JOB = "fedjob.pkl"
RESULT = "fedresult.pkl"


class FedSwarmError(PeerdataError):
    """A federated swarm robot failed to start, to finish its rounds, or to report."""


@dataclass(frozen=True)
class RobotJob:
    """What one robot process is told (pickled into its home by the driver, who trusts it)."""

    index: int
    robots: int
    cfg: Any  # FederatedExperimentConfig
    strategy: str
    images: Any  # np.ndarray
    labels: Any
    slowdown: float = 1.0  # > 1: this robot's local step takes that many times longer


@dataclass(frozen=True)
class FedSwarmSettings:
    """Timing of the real-process run (wall-clock seconds)."""

    interval_s: float = 20.0
    deadline_s: float = 8.0
    clock_skew_s: float = 1.0
    ready_timeout_s: float = 120.0
    mode: str = "aggregator"


def robot_main(argv: list[str] | None = None) -> None:
    """Child entry point: `--home HOME --ready-fd FD --log-level L`; the first round comes
    on stdin."""
    import trio

    parser = argparse.ArgumentParser()
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--ready-fd", type=int, required=True)
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    trio.run(_robot, args.home, args.ready_fd, args.log_level.upper())


async def _robot(home: Path, ready_fd: int, log_level: str) -> None:
    import numpy as np
    import torch
    import trio

    from peerdata.control.daemon import announce_ready
    from peerdata.federated.clock import FleetClock
    from peerdata.federated.exchange import FederatedPeer, LocalModel
    from peerdata.federated.local import local_seed, new_state, train_from
    from peerdata.federated.partition import label_histogram
    from peerdata.federated.service import Federation
    from peerdata.federated.tiers import TierHooks
    from peerdata.ml.aggregate import FedProx, rule_by_name
    from peerdata.node.home import check_home
    from peerdata.node.node import open_node

    torch.set_num_threads(1)
    logging.basicConfig(level=log_level, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    job: RobotJob = pickle.loads((home / JOB).read_bytes())
    cfg = job.cfg
    identity, config = check_home(home)
    fed_cfg = config.federation
    labels = np.asarray(job.labels)
    histogram = label_histogram(labels, 10)
    last_local: dict[str, Any] = {}
    first = [0]

    def train(start: dict[str, torch.Tensor], step: int, epochs: int | None
              ) -> dict[str, torch.Tensor]:
        began = time.monotonic()
        prox = FedProx(cfg.fedprox_mu) if job.strategy == "fedprox" else None
        state = train_from(cfg.vision, start, job.images, labels,
                           epochs=epochs or cfg.local_epochs,
                           training=cfg.training, prox=prox,
                           seed=local_seed(cfg.seed, step, job.index))
        if job.slowdown > 1:  # a slower robot: the same work, stretched
            time.sleep((job.slowdown - 1) * (time.monotonic() - began))
        return state

    async def train_local(start: dict[str, torch.Tensor], round_id: int,
                          epochs: int | None = None) -> LocalModel:
        step = round_id - first[0] + 1
        state = await trio.to_thread.run_sync(partial(train, start, step, epochs))
        last_local["state"] = state
        return LocalModel(state, len(labels), histogram)

    async with open_node(home, config, identity=identity) as node:
        announce_ready(ready_fd, {"peer_id": node.peer_id, "control": "", "pid": os.getpid(),
                                  "listen_addrs": list(node.transport.listen_addrs())})
        with trio.fail_after(fed_cfg.deadline_s * 10 + 60):
            await node.wait_until(lambda s: s.peers_connected >= job.robots - 1)
        line = await trio.to_thread.run_sync(sys.stdin.readline)
        first[0] = int(line)
        peer = FederatedPeer(node.identity, fed_cfg, rule_by_name(fed_cfg.strategy),
                             new_state(cfg.vision, cfg.seed))
        clock = FleetClock(fed_cfg.interval_s, fed_cfg.clock_skew_s)
        federation = Federation(node.transport, peer, train_local, clock=clock,
                                serve=node.serve,
                                tiers=TierHooks(lambda: histogram, train_local))
        began = time.time()
        await federation.run(max_rounds=cfg.rounds, first_round=first[0])
        result = {"global": peer.global_state, "local": last_local.get("state"),
                  "rounds": [_round_record(r) for r in federation.results],
                  "wall_s": time.time() - began, "peer_id": node.peer_id}
        (home / RESULT).write_bytes(pickle.dumps(result))
        node.cancel()


def _round_record(r: Any) -> dict[str, Any]:
    return {"round_id": r.round_id, "included": list(r.included), "missing": list(r.missing),
            "rejected": [x.reason for x in r.rejected], "bytes_sent": r.bytes_sent,
            "version": r.version}


def run_federation_swarm(jobs: list[RobotJob], out: Path, settings: FedSwarmSettings,
                         progress: Callable[[str], None] = lambda _m: None
                         ) -> list[dict[str, Any]]:
    """Start one process per job under `out`, federate `cfg.rounds` rounds, return each
    robot's result ({global, local, rounds, wall_s, peer_id}); stop every child on exit.

    Raises:
        FedSwarmError: a robot did not start, mesh or finish in time.
    """
    out.mkdir(parents=True, exist_ok=True)
    robots: list[Robot] = []
    rounds = jobs[0].cfg.rounds
    try:
        for job in jobs:
            home = out / f"robot-{job.index}"
            boot = () if not robots else tuple(robots[0].listen_addrs[:1])
            made = init_home(home, name=f"robot-{job.index}", listen=(LOOPBACK,),
                             bootstrap=boot)
            if made.created_config:
                edit_config(home, {"federation": {
                    "enabled": True, "strategy": job.strategy, "mode": settings.mode,
                    "interval_s": settings.interval_s, "deadline_s": settings.deadline_s,
                    "clock_skew_s": settings.clock_skew_s}})
            (home / JOB).write_bytes(pickle.dumps(job))
            (home / RESULT).unlink(missing_ok=True)
            robot, fd = spawn_robot(job.index, home, entry=_ENTRY, stdin=subprocess.PIPE)
            robots.append(robot)
            await_ready(robot, fd, settings.ready_timeout_s)
            progress(f"robot {job.index} ready ({robot.peer_id[:16]}...)")
        # every robot starts at the same round, a little after the slowest could be told
        first = int(time.time() // settings.interval_s) + 2
        for r in robots:
            assert r.process.stdin is not None
            r.process.stdin.write(f"{first}\n".encode())
            r.process.stdin.flush()
        progress(f"federating rounds {first}..{first + rounds - 1} "
                 f"({settings.interval_s:g} s each)")
        limit = time.monotonic() + (rounds + 3) * settings.interval_s + 60
        for r in robots:
            try:
                code = r.process.wait(timeout=max(limit - time.monotonic(), 1.0))
            except subprocess.TimeoutExpired:
                raise FedSwarmError(f"robot {r.index} did not finish its rounds") from None
            if code != 0:
                raise FedSwarmError(f"robot {r.index} exited with code {code}; see "
                                    f"{r.home / 'daemon.stderr'}")
        return [pickle.loads((r.home / RESULT).read_bytes()) for r in robots]
    finally:
        for r in robots:
            stop_robot(r, timeout_s=10.0)


def summarize_swarm(results: list[dict[str, Any]], evaluate: Callable[[Any], float]
                    ) -> dict[str, Any]:
    """Accuracy of the final global model (robot 0's: all hold the same one under FedAvg),
    each robot's last local model, bytes per round, and what every round included."""
    rounds = max(len(r["rounds"]) for r in results)
    sent = sum(x["bytes_sent"] for r in results for x in r["rounds"])
    robots = [evaluate(r["local"]) for r in results if r["local"] is not None]
    complete = sum(1 for k in range(rounds)
                   if all(k < len(r["rounds"]) and not r["rounds"][k]["missing"]
                          for r in results))
    return {"global_accuracy": evaluate(results[0]["global"]),
            "worst_accuracy": min(robots), "mean_accuracy": sum(robots) / len(robots),
            "bytes_per_round": round(sent / max(rounds, 1)), "rounds_completed": complete,
            "wall_s": max(r["wall_s"] for r in results),
            "rejected": sum(len(x["rejected"]) for r in results for x in r["rounds"])}
