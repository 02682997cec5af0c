"""The sharing round as pure steps, with delivery between robots injected.

Rule: nothing here does I/O. A daemon reuses `RobotLearner`, the relay values and `run_round`
with its own `Delivery`.
"""

from peerdata.sharing.learner import (
    POLICIES,
    LearnerConfig,
    RobotLearner,
    ShareCandidate,
    budget_count,
)
from peerdata.sharing.relay import (
    Feedback,
    UtilityCounter,
    record_vote,
    relay_order,
    to_feedback,
)
from peerdata.sharing.round import (
    Batch,
    Delivery,
    InProcessDelivery,
    PrivacyHook,
    RoundOutcome,
    apply_privacy,
    identity_filter,
    relay_hop,
    run_round,
)

__all__ = [
    "POLICIES",
    "Batch",
    "Delivery",
    "Feedback",
    "InProcessDelivery",
    "LearnerConfig",
    "PrivacyHook",
    "RobotLearner",
    "RoundOutcome",
    "ShareCandidate",
    "UtilityCounter",
    "apply_privacy",
    "budget_count",
    "identity_filter",
    "record_vote",
    "relay_hop",
    "relay_order",
    "run_round",
    "to_feedback",
]
