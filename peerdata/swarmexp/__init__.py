"""The paper's experiment as real processes: one `peerdata run` daemon per robot on 127.0.0.1.

Rule: data and metrics come from `peerdata.experiment` (same streams, seeds and result schema);
this package only writes each robot's files, drives the daemons through their control sockets,
and turns what they report into the in-process runner's records.
"""

from peerdata.swarmexp.run import SwarmPlan, run_swarm_experiment, write_swarm_results

__all__ = ["SwarmPlan", "run_swarm_experiment", "write_swarm_results"]
