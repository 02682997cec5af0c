"""Node configuration: frozen dataclasses, read from a home's `config.toml` and validated once.

Rule: nothing here reads the environment or the disk at import time; `load_config` is the only
entry point that touches a file, and every value is checked before a node sees it. The package
is split by section; everything is imported from `peerdata.config`.
"""

from peerdata.config.federation import FEDERATION_STRATEGIES, FederationConfig
from peerdata.config.loading import config_from_dict, load_config
from peerdata.config.model import BACKBONE_NAMES, DETECTOR_NAMES, ModelConfig
from peerdata.config.node import ROUND_POLICIES, NodeConfig, host_port, validate
from peerdata.config.render import render_config
from peerdata.config.sections import (
    GiB,
    LimitsConfig,
    LogConfig,
    MetricsConfig,
    MiB,
    NetConfig,
    PrivacyConfig,
    RoundConfig,
)
from peerdata.config.trust import MEMBERSHIP_MODES, TrustConfig

__all__ = [
    "BACKBONE_NAMES", "DETECTOR_NAMES", "FEDERATION_STRATEGIES", "MEMBERSHIP_MODES",
    "ROUND_POLICIES", "FederationConfig", "GiB", "LimitsConfig", "LogConfig", "MetricsConfig",
    "MiB", "ModelConfig", "NetConfig", "NodeConfig", "PrivacyConfig", "RoundConfig",
    "TrustConfig", "config_from_dict", "host_port", "load_config", "render_config", "validate",
]
