"""The paper's experiment: scenarios run in-process, every policy side by side, measured.

Rule: `runner` computes, `report` writes; only the CLI prints.
"""

from peerdata.experiment.report import check_output_dir
from peerdata.experiment.runner import ExperimentPlan, run_experiment

__all__ = [
    "ExperimentPlan",
    "check_output_dir",
    "run_experiment",
]
