"""Aggregation rules for model updates, one rule per module (Flower-style strategies).

Rule: pure torch, no I/O, no wire types. `rule_by_name` is the one place a configured strategy
name becomes a rule object.
"""

from __future__ import annotations

from peerdata.ml.aggregate.agree import AgreeingMean
from peerdata.ml.aggregate.base import (
    AggregationError,
    AggregationRule,
    ClientUpdate,
    StateDict,
)
from peerdata.ml.aggregate.clustered import Clustered
from peerdata.ml.aggregate.fedavg import FedAvg
from peerdata.ml.aggregate.fedprox import FedProx, proximal_term
from peerdata.ml.aggregate.geomed import GeometricMedian
from peerdata.ml.aggregate.median import CoordinateMedian
from peerdata.ml.aggregate.multitier import (
    MultiTier,
    MultiTierConfig,
    TierPlan,
    importance_scores,
    plan_tiers,
)
from peerdata.ml.aggregate.trimmed_mean import TrimmedMean

RULE_NAMES = ("fedavg", "fedprox", "median", "trimmed_mean", "clustered", "multitier", "geomed",
              "agree")
ROBUST_DEFAULT = "agree"  # the measured default robust rule (docs/federated.md)


def rule_by_name(name: str) -> AggregationRule:
    """The rule a strategy name selects, with default settings.

    Raises:
        AggregationError: unknown name.
    """
    rules: dict[str, AggregationRule] = {
        "fedavg": FedAvg(),
        "fedprox": FedProx(),
        "median": CoordinateMedian(),
        "trimmed_mean": TrimmedMean(),
        "clustered": Clustered(),
        "multitier": MultiTier(),
        "geomed": GeometricMedian(),
        "agree": AgreeingMean(),
    }
    if name not in rules:
        raise AggregationError(f"unknown aggregation strategy {name!r}; one of {RULE_NAMES}")
    return rules[name]


def aggregate_from(rule: AggregationRule, updates: list[ClientUpdate],
                   reference: StateDict) -> StateDict:
    """`rule.aggregate_from(updates, reference)` for rules that use the round's starting
    model (`agree`), else `rule.aggregate(updates)`."""
    with_reference = getattr(rule, "aggregate_from", None)
    if with_reference is not None:
        result: StateDict = with_reference(updates, reference)
        return result
    return rule.aggregate(updates)


__all__ = [
    "ROBUST_DEFAULT",
    "RULE_NAMES",
    "AgreeingMean",
    "AggregationError",
    "AggregationRule",
    "ClientUpdate",
    "Clustered",
    "CoordinateMedian",
    "FedAvg",
    "FedProx",
    "GeometricMedian",
    "MultiTier",
    "MultiTierConfig",
    "StateDict",
    "TierPlan",
    "TrimmedMean",
    "aggregate_from",
    "importance_scores",
    "plan_tiers",
    "proximal_term",
    "rule_by_name",
]
