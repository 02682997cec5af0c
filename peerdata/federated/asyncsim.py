"""Synchronous FedAvg vs asynchronous FedBuff vs serverless gossip, in modelled time.

Rule: a seeded discrete-event simulation with real local training (`train_from`, seeded as the
federated experiment seeds it) and real rules; only time is modelled: one local epoch of robot
`i` takes `speed_i * n_i / n_max + overhead` time units (the largest robot's epoch is 1 unit at
normal speed). A robot away from `leave[1]` to `leave[2]` trains nothing and loses the update it
was training; back, it pulls the newest model. Sync FedAvg waits each round for every present
robot; FedBuff steps the global model every `buffer_size` updates, staleness-weighted; gossip
robots each average their fresh model with one random present peer's (pull, sample-weighted).
No I/O, no printing.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from peerdata.federated.experiment import FederatedExperimentConfig, Fleet
from peerdata.federated.local import new_state
from peerdata.ml.aggregate import ClientUpdate, FedAvg
from peerdata.ml.aggregate.fedbuff import FedBuff


@dataclass(frozen=True)
class AsyncScenario:
    """Who is slow, who leaves when, and the asynchronous rules' settings."""

    slow_robot: int | None = None
    slowdown: float = 5.0
    leave: tuple[int, float, float] | None = None  # (robot, away from, back at) in time units
    overhead: float = 0.05
    buffer_size: int = 3
    staleness_exponent: float = 0.5


Curve = list[tuple[float, float]]  # (time, accuracy)


class _Sim:
    def __init__(self, fleet: Fleet, scen: AsyncScenario):
        self.scen = scen
        self.sizes = [len(r) for r in fleet.robots]
        self.n = len(self.sizes)

    def epoch_time(self, i: int) -> float:
        speed = self.scen.slowdown if i == self.scen.slow_robot else 1.0
        return speed * self.sizes[i] / max(self.sizes) + self.scen.overhead

    def present(self, i: int, t: float) -> bool:
        """Whether robot `i` is in the fleet at time `t`."""
        leave = self.scen.leave
        return leave is None or i != leave[0] or not leave[1] <= t < leave[2]


def run_sync(fleet: Fleet, cfg: FederatedExperimentConfig, scen: AsyncScenario) -> Curve:
    """`cfg.rounds` FedAvg rounds; each lasts as long as its slowest present robot."""
    sim, g, t, curve = _Sim(fleet, scen), new_state(cfg.vision, cfg.seed), 0.0, []
    for r in range(1, cfg.rounds + 1):
        members = [i for i in range(sim.n) if sim.present(i, t)]
        updates = [ClientUpdate(str(i), fleet.train(cfg, i, g, r), sim.sizes[i]) for i in members]
        g = FedAvg().aggregate(updates)
        t += max(sim.epoch_time(i) for i in members)
        curve.append((t, fleet.accuracy(cfg, g)))
    return curve


def _events(sim: _Sim, until: float, on_start: Callable[[int, float], None],
            on_finish: Callable[[int, float], bool]) -> None:
    """Run the robots' loops (start: pull; finish: submit) until `until`, or until `on_finish`
    returns False. An epoch that overlaps the robot's time away is lost; it starts again (and
    pulls again) when the robot is back."""
    queue: list[tuple[float, int, int]] = [(0.0, 0, i) for i in range(sim.n)]  # 0 start 1 end
    while queue:
        t, phase, i = heapq.heappop(queue)
        if t > until:
            return
        if phase == 0:
            on_start(i, t)
            heapq.heappush(queue, (t + sim.epoch_time(i), 1, i))
            continue
        leave = sim.scen.leave
        if leave is not None and i == leave[0] and t - sim.epoch_time(i) < leave[2] \
                and t > leave[1]:
            heapq.heappush(queue, (max(t, leave[2]), 0, i))
            continue
        if not on_finish(i, t):
            return
        heapq.heappush(queue, (t, 0, i))


def run_fedbuff(fleet: Fleet, cfg: FederatedExperimentConfig, scen: AsyncScenario,
                until: float, target: float) -> Curve:
    """FedBuff until `until`, or until the global accuracy reaches `target`."""
    sim = _Sim(fleet, scen)
    server = FedBuff(new_state(cfg.vision, cfg.seed), buffer_size=scen.buffer_size,
                     staleness_exponent=scen.staleness_exponent)
    pulled = {i: (server.global_state, 0) for i in range(sim.n)}
    steps = dict.fromkeys(range(sim.n), 0)
    curve: Curve = []

    def start(i: int, _t: float) -> None:
        pulled[i] = (server.global_state, server.version)

    def finish(i: int, t: float) -> bool:
        base, version = pulled[i]
        steps[i] += 1
        if server.submit(fleet.train(cfg, i, base, steps[i]), base, version, sim.sizes[i]):
            curve.append((t, fleet.accuracy(cfg, server.global_state)))
            return curve[-1][1] < target
        return True

    _events(sim, until, start, finish)
    return curve


def run_gossip(fleet: Fleet, cfg: FederatedExperimentConfig, scen: AsyncScenario,
               until: float, target: float, check_every: float = 1.0) -> Curve:
    """Serverless gossip averaging; the curve is the robots' mean accuracy every
    `check_every` time units, until `until` or until it reaches `target`."""
    sim = _Sim(fleet, scen)
    models = {i: new_state(cfg.vision, cfg.seed) for i in range(sim.n)}
    rng = np.random.default_rng(cfg.seed + 77)
    steps = dict.fromkeys(range(sim.n), 0)
    curve: Curve = []
    next_check = [check_every]

    def finish(i: int, t: float) -> bool:
        while t >= next_check[0]:
            mean = float(np.mean([fleet.accuracy(cfg, m) for m in models.values()]))
            curve.append((next_check[0], mean))
            if mean >= target:
                return False
            next_check[0] += check_every
        steps[i] += 1
        fresh = fleet.train(cfg, i, models[i], steps[i])
        peers = [j for j in range(sim.n) if j != i and sim.present(j, t)]
        if peers:
            j = int(rng.choice(peers))
            fresh = FedAvg().aggregate([ClientUpdate(str(i), fresh, sim.sizes[i]),
                                        ClientUpdate(str(j), models[j], sim.sizes[j])])
        models[i] = fresh
        return True

    _events(sim, until, lambda _i, _t: None, finish)
    return curve


def time_to(curve: Curve, target: float) -> float | None:
    """The first time the curve reaches `target` (None if never)."""
    return next((t for t, acc in curve if acc >= target), None)
