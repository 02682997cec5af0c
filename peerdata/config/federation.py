"""The [federation] section: optional exchange of model updates."""

from __future__ import annotations

from dataclasses import dataclass

from peerdata.config.sections import MiB
from peerdata.errors import ConfigError

# = peerdata.ml.aggregate.RULE_NAMES (config sits below ml/ and cannot import it)
FEDERATION_STRATEGIES = ("fedavg", "fedprox", "median", "trimmed_mean", "clustered",
                         "multitier", "geomed", "agree")


@dataclass(frozen=True)
class FederationConfig:
    """Optional exchange of model updates with peers (see docs/federated.md)."""

    enabled: bool = False
    strategy: str = "fedavg"  # one of FEDERATION_STRATEGIES
    max_update_bytes: int = 16 * MiB
    deadline_s: float = 60.0  # updates later than this are left out of the round
    # aggregator (one per round) | gossip (average with neighbours) | async (FedBuff at aggregator)
    mode: str = "aggregator"
    aggregator: str = ""  # peer ID of a fixed aggregator; empty = elected afresh each round
    update_dtype: str = "float32"  # float32 | float16 on the wire
    # < 1: updates (with error feedback) and globals travel as the largest deltas only
    topk_fraction: float = 1.0
    interval_s: float = 300.0  # one federated round per interval of wall time
    # robots' wall clocks may differ by this much (NTP: milliseconds); deadlines widen by it
    clock_skew_s: float = 2.0
    local_epochs: int = 1  # the daemon's local fine-tune of its vision model before each round

    def __post_init__(self) -> None:
        if self.interval_s <= 0:
            raise ConfigError("federation.interval_s must be > 0")
        if self.local_epochs < 1:
            raise ConfigError("federation.local_epochs must be >= 1")
        if self.mode not in ("aggregator", "gossip", "async"):
            raise ConfigError("federation.mode must be aggregator, gossip or async")
        if self.mode == "async" and not self.aggregator:
            raise ConfigError("federation.mode = async needs federation.aggregator (its buffer)")
        if self.mode == "async" and self.strategy not in ("fedavg", "fedprox"):
            raise ConfigError("federation.mode = async aggregates by FedBuff: strategy fedavg")
        if self.update_dtype not in ("float32", "float16"):
            raise ConfigError("federation.update_dtype must be float32 or float16")
        if not 0 < self.topk_fraction <= 1:
            raise ConfigError("federation.topk_fraction must be in (0, 1]")
        if self.strategy not in FEDERATION_STRATEGIES:
            raise ConfigError(f"federation.strategy must be one of {FEDERATION_STRATEGIES}")
        if self.strategy in ("clustered", "multitier") and self.mode != "aggregator":
            raise ConfigError(f"federation.strategy {self.strategy} needs mode = aggregator")
        if not 0 <= self.clock_skew_s < self.interval_s / 2:
            raise ConfigError("federation.clock_skew_s must be in [0, interval_s / 2)")
