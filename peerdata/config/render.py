"""A commented `config.toml` with every default spelled out (`peerdata init`)."""

from __future__ import annotations

from peerdata.config.node import NodeConfig
from peerdata.config.sections import NetConfig


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
rendezvous = "{d.net.rendezvous}"   # a rendezvous point's .../p2p/ID: robots on other networks
rendezvous_serve = {str(d.net.rendezvous_serve).lower()}   # be a rendezvous point for the fleet
rendezvous_namespace = "{d.net.rendezvous_namespace}"
rendezvous_refresh_s = {d.net.rendezvous_refresh_s}   # re-register, ask for new robots this often

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
max_hops = {d.round.max_hops}  # voters (hops) per chain: an image's vote latency grows with it
chains = {d.round.chains}    # parallel chains per image: a sample of chains * max_hops voters
gossip_votes = {str(d.round.gossip_votes).lower()}  # votes also on gossip (O(fleet) traffic)
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
reputation = {str(d.trust.reputation).lower()}  # weigh votes (needs gossip_votes)
"""
