"""Robots' learning, and rounds of it in one process through the round core's simulator.

Rule: nothing here does I/O. The round's rules live in `peerdata.round`; the daemon drives the
same cores over the network with the same `RobotLearner`.
"""

from peerdata.sharing.feedback import Feedback
from peerdata.sharing.fleet import Batch, InProcessFleet, RoundOutcome, image_cid, run_seed
from peerdata.sharing.learner import (
    POLICIES,
    LearnerConfig,
    RobotLearner,
    ShareCandidate,
    budget_count,
)

__all__ = [
    "POLICIES",
    "Batch",
    "Feedback",
    "InProcessFleet",
    "LearnerConfig",
    "RobotLearner",
    "RoundOutcome",
    "ShareCandidate",
    "budget_count",
    "image_cid",
    "run_seed",
]
