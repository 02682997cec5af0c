"""The sharing round's rules as state machines with no I/O (the h11 pattern).

Rule: no trio, libp2p, SQLite or torch below this package; time is an argument. Two drivers
perform the actions: the daemon (`peerdata.node`) and the in-process `Simulator`.
"""

from peerdata.round.origin import (
    FeedbackFact,
    Membership,
    OriginCore,
    VoteFact,
    everyone,
)
from peerdata.round.relay import (
    Forward,
    NeedVote,
    RelayCore,
    Report,
    VoteState,
    candidate_order,
    chain_paths,
    path_order,
)
from peerdata.round.simulator import Simulator

__all__ = [
    "FeedbackFact",
    "Forward",
    "Membership",
    "NeedVote",
    "OriginCore",
    "RelayCore",
    "Report",
    "Simulator",
    "VoteFact",
    "VoteState",
    "candidate_order",
    "chain_paths",
    "everyone",
    "path_order",
]
