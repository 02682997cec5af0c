"""A fake of the swarm's daemons for driver tests: robots of one `InProcessFleet` answering the
daemons' learning commands (`observe`, `round_now`, `wait_round`, `learn`, `evaluate`,
`shared`) with the same shapes. Rounds run through the round core's simulator, as
`peerdata experiment` runs them. Calls are serialised (the driver calls from several threads).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from peerdata.errors import ControlError
from peerdata.experiment.metrics import png_bytes
from peerdata.scenario import Scenario
from peerdata.sharing import (
    Feedback,
    InProcessFleet,
    LearnerConfig,
    RobotLearner,
    ShareCandidate,
    image_cid,
    run_seed,
)


def _load(path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with np.load(Path(path)) as z:
        return z["x"], z["y"], z["domain"].astype(object)


class InProcessRobots:
    """Robots 0..n-1 of a scenario in run `seed`, answering `RobotCall`s."""

    def __init__(self, scenario: Scenario, seed: int) -> None:
        self.scenario, self.seed = scenario, seed
        self.names = [r.name for r in scenario.robots]
        self.learners: dict[str, RobotLearner] = {}
        self.fleet: InProcessFleet | None = None
        self.lock = threading.Lock()
        self.round_id = 0
        self.policy = ""
        self.selected: dict[str, list[ShareCandidate]] = {}
        self.feedback: dict[str, tuple[Feedback, ...]] = {}
        self.shared: list[dict[str, Any]] = []

    def __call__(self, index: int, cmd: str, args: dict[str, Any], timeout_s: float) -> dict:
        with self.lock:
            handler = getattr(self, f"_{cmd}", None)
            if handler is None:
                raise ControlError(f"command {cmd!r} is not implemented by this daemon")
            result: dict[str, Any] = handler(self.names[index], args)
            return result

    def _observe(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        x, y, domains = _load(args["npz"])
        if args.get("bootstrap"):
            learner = RobotLearner(name, LearnerConfig.of_scenario(self.scenario),
                                   run_seed(self.seed, self.names.index(name)))
            learner.bootstrap(x, y, domains)
            self.learners[name] = learner
            if len(self.learners) == len(self.names):
                self.fleet = InProcessFleet({n: self.learners[n] for n in self.names},
                                            seed=self.seed)
        else:
            self.learners[name].observe(x, y, domains)
        return {"added": len(x), "duplicates": 0}

    def _round_now(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        if not self.selected:
            self.round_id += 1
        novel = args.get("novel_domains")
        learner = self.learners[name]
        self.policy = args["policy"]
        cands = learner.select_for_sharing(
            self.policy, self.scenario.budget,
            novel_domains=None if novel is None else frozenset(novel))
        self.selected[name] = cands
        for c in cands:
            self.shared.append({
                "cid": image_cid(c.image).hex(), "round_id": self.round_id, "sender": name,
                "nbytes": png_bytes(c.image), "domain": str(learner.local_domains[c.image_id]),
                "image_id": c.image_id, "utility": None})
        return {"round_id": self.round_id, "shared": len(cands), "dropped_by_privacy": 0,
                "bytes_sent": sum(png_bytes(c.image) for c in cands)}

    def _wait_round(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        if len(self.selected) == len(self.names):  # everyone selected: the round runs
            assert self.fleet is not None
            self.feedback = self.fleet.deliver(self.selected)
            self.selected = {}
        mine = self.feedback.get(name, ())
        utilities = [f.utility for f in mine]
        return {"round_id": args["round_id"], "shared": len(mine),
                "feedback_received": len(mine), "votes_received": len(mine),
                "mean_utility": float(np.mean(utilities)) if utilities else None,
                "complete": True}

    def _learn(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        learner = self.learners[name]
        received = len(learner.received_labels)
        mine = self.feedback.get(name, ())  # as the fleet's round: only GU trains its ranker
        loss = learner.learn_from_feedback(mine) if self.policy == "gu" else None
        return {"ranker_loss": loss, "fine_tune_loss": learner.fine_tune(),
                "received_pending": received}

    def _evaluate(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        x, y, domains = _load(args["npz"])
        hits = self.learners[name].model.predict(x).labels == y
        acc = {str(d): float(hits[domains == d].mean()) for d in dict.fromkeys(domains)}
        acc["all"] = float(hits.mean())
        return {"accuracy": acc, "n": len(y)}

    def _status(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        return {"name": name, "bytes_sent": 0}

    def _shared(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        rid = args.get("round_id")
        return {"shared": [s for s in self.shared if s["sender"] == name
                           and (rid is None or s["round_id"] == rid)]}
