"""NodeConfig, the whole configuration, and the cross-section checks run when it is built."""

from __future__ import annotations

from dataclasses import dataclass, field

from peerdata.config.federation import FederationConfig
from peerdata.config.model import ModelConfig
from peerdata.config.sections import (
    LimitsConfig,
    LogConfig,
    MetricsConfig,
    NetConfig,
    PrivacyConfig,
    RoundConfig,
)
from peerdata.config.trust import TrustConfig
from peerdata.errors import ConfigError

_LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True)
class NodeConfig:
    """Everything a node needs to start, one section per subsystem."""

    name: str = "robot"
    net: NetConfig = field(default_factory=NetConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    round: RoundConfig = field(default_factory=RoundConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    federation: FederationConfig = field(default_factory=FederationConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    log: LogConfig = field(default_factory=LogConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    trust: TrustConfig = field(default_factory=TrustConfig)

    def __post_init__(self) -> None:
        validate(self)


_ACTIONS = ("blur", "drop", "keep")
ROUND_POLICIES = ("gu", "random", "oracle", "all", "none")  # = peerdata.sharing.POLICIES
_FACE_DETECTORS = ("centerface", "haar_frontal", "haar_profile", "yunet")
_PLATE_DETECTORS = ("text_plate", "haar_plate")


def validate(cfg: NodeConfig) -> None:
    """Raise ConfigError naming the first setting that is out of range."""
    checks: list[tuple[bool, str]] = [
        (bool(cfg.net.listen), "net.listen must name at least one address"),
        (cfg.net.connect_timeout_s > 0, "net.connect_timeout_s must be > 0"),
        (cfg.net.request_timeout_s > 0, "net.request_timeout_s must be > 0"),
        (0 < cfg.net.reconnect_initial_s <= cfg.net.reconnect_max_s,
         "net.reconnect_initial_s must be > 0 and <= net.reconnect_max_s"),
        (cfg.net.gossip_heartbeat_s > 0, "net.gossip_heartbeat_s must be > 0"),
        (not cfg.net.rendezvous or (cfg.net.rendezvous.startswith("/")
                                    and "/p2p/" in cfg.net.rendezvous),
         "net.rendezvous must be empty or a multiaddr ending in /p2p/PEER_ID"),
        (0 < len(cfg.net.rendezvous_namespace) <= 256,
         "net.rendezvous_namespace must have 1 to 256 characters"),
        (cfg.net.rendezvous_refresh_s > 0, "net.rendezvous_refresh_s must be > 0"),
        (cfg.limits.max_message_bytes > 0, "limits.max_message_bytes must be > 0"),
        (0 < cfg.limits.max_image_bytes <= cfg.limits.max_message_bytes,
         "limits.max_image_bytes must be > 0 and <= limits.max_message_bytes"),
        (cfg.limits.max_list_len > 0, "limits.max_list_len must be > 0"),
        (cfg.limits.max_streams_per_peer > 0, "limits.max_streams_per_peer must be > 0"),
        (cfg.limits.max_buffered_bytes_per_peer >= cfg.limits.max_message_bytes,
         "limits.max_buffered_bytes_per_peer must be >= limits.max_message_bytes"),
        (cfg.round.interval_s >= 0, "round.interval_s must be >= 0 (0 = manual rounds only)"),
        (0 < cfg.round.budget_fraction <= 1, "round.budget_fraction must be in (0, 1]"),
        (cfg.round.max_images_per_round > 0, "round.max_images_per_round must be > 0"),
        (cfg.round.max_bytes_per_round > 0, "round.max_bytes_per_round must be > 0"),
        (cfg.round.vote_deadline_s > 0, "round.vote_deadline_s must be > 0"),
        (cfg.round.max_hops >= 1, "round.max_hops must be >= 1"),
        (cfg.round.chains >= 1, "round.chains must be >= 1"),
        (cfg.round.policy in ROUND_POLICIES, f"round.policy must be one of {ROUND_POLICIES}"),
        (bool(cfg.round.scenario), "round.scenario must name a scenario"),
        (min(cfg.round.vision_width, cfg.round.vision_epochs, cfg.round.calibration_images,
             cfg.round.learner_seed) >= 0,
         "round.vision_width, vision_epochs, calibration_images, learner_seed must be >= 0"),
        (cfg.round.inbox_poll_s > 0, "round.inbox_poll_s must be > 0"),
        (cfg.privacy.face_action in _ACTIONS, f"privacy.face_action must be one of {_ACTIONS}"),
        (cfg.privacy.plate_action in _ACTIONS, f"privacy.plate_action must be one of {_ACTIONS}"),
        (0 <= cfg.privacy.margin <= 2, "privacy.margin must be in [0, 2]"),
        (cfg.privacy.max_pixels > 0, "privacy.max_pixels must be > 0"),
        (0 < cfg.privacy.yunet_score < 1, "privacy.yunet_score must be in (0, 1)"),
        (0 < cfg.privacy.centerface_score < 1, "privacy.centerface_score must be in (0, 1)"),
        (set(cfg.privacy.plate_detectors) <= set(_PLATE_DETECTORS),
         f"privacy.plate_detectors may only name {_PLATE_DETECTORS}"),
        (set(cfg.privacy.face_detectors) <= set(_FACE_DETECTORS),
         f"privacy.face_detectors may only name {_FACE_DETECTORS}"),
        ("yunet" not in cfg.privacy.face_detectors or cfg.privacy.yunet_model is not None,
         'privacy.face_detectors names "yunet" but privacy.yunet_model is not set'),
        (8 <= cfg.privacy.min_face_px <= 1024, "privacy.min_face_px must be in [8, 1024]"),
        (cfg.federation.max_update_bytes > 0, "federation.max_update_bytes must be > 0"),
        (cfg.federation.deadline_s > 0, "federation.deadline_s must be > 0"),
        (cfg.log.level in _LOG_LEVELS, f"log.level must be one of {_LOG_LEVELS}"),
        (cfg.log.max_bytes >= 4096, "log.max_bytes must be >= 4096"),
        (0 <= cfg.log.backups <= 100, "log.backups must be in [0, 100]"),
        (cfg.metrics.listen == "" or host_port(cfg.metrics.listen) is not None,
         'metrics.listen must be "HOST:PORT" (port 0-65535) or "" (off)'),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)


def host_port(text: str) -> tuple[str, int] | None:
    """("host", port) from "HOST:PORT" ("[::1]:PORT" for IPv6), or None if malformed."""
    host, sep, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        return None
    return host, int(port)
