"""Prometheus exposition of a node, rendered at scrape time from its `status` record.

Rule: the endpoint keeps no counters of its own. Each scrape asks the same `status` the CLI
shows (`snapshot()`), maps it to metric families (`families`, pure) and renders them with
prometheus-client; a field a node does not report is simply left out. Served by ops/http.py
(loopback by default).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any

import trio
from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from peerdata import __version__
from peerdata.ops.http import Reply, host_port_of, serve_http, url_of

Snapshot = Callable[[], Awaitable[dict[str, Any]]]
PATH = "/metrics"


def _get(status: dict[str, Any], path: str) -> float | None:
    """`status["a"]["b"]` for "a.b"; None when absent or not a number."""
    value: Any = status
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return float(value) if isinstance(value, int | float) else None  # a bool is 0 or 1


# (name, kind, help, label name or "", [(label value, status path)]).
_TABLE: list[tuple[str, str, str, str, list[tuple[str, str]]]] = [
    ("peerdata_uptime_seconds", "gauge", "Seconds since the node started.", "",
     [("", "uptime_s")]),
    ("peerdata_peers_connected", "gauge", "Peers with an open link.", "",
     [("", "peers_connected")]),
    ("peerdata_peers_known", "gauge", "Peers known this run (connected or not).", "",
     [("", "peers_known")]),
    ("peerdata_rounds", "counter", "Sharing rounds started.", "", [("", "rounds")]),
    ("peerdata_rounds_completed", "counter", "Rounds complete or finished at their deadline.",
     "", [("", "rounds_completed")]),
    ("peerdata_images_observed", "counter", "New local images observed (this run).", "",
     [("", "round_counts.observed")]),
    ("peerdata_images_shared", "counter", "Images that left this robot in rounds (records).",
     "", [("", "images_shared")]),
    ("peerdata_offers", "counter", "Offer messages sent and received.", "direction",
     [("sent", "offers_sent"), ("received", "offers_received")]),
    ("peerdata_images_sent", "counter", "Images peers fetched from us.", "",
     [("", "images_sent")]),
    ("peerdata_images_received", "counter", "Images fetched from peers.", "",
     [("", "images_received")]),
    ("peerdata_images_verified", "counter", "Received images whose content ID checked out.", "",
     [("", "images_verified")]),
    ("peerdata_images_refused", "counter", "Images refused or lost, by reason.", "reason",
     [("verify_failed", "images_rejected"), ("fetch_failed", "fetch_failures"),
      ("inbox_full", "inbox_dropped"), ("arrivals_full", "round_counts.arrivals_dropped"),
      ("inbox_unreadable", "round_counts.inbox_rejected"), ("relay_loop", "relay.loops"),
      ("relay_duplicate", "relay.duplicates"), ("privacy_dropped", "privacy.images_dropped")]),
    ("peerdata_share_bytes", "counter", "Image bytes moved by the share service.", "direction",
     [("out", "bytes_sent"), ("in", "bytes_received")]),
    ("peerdata_samples", "gauge", "Samples in the store, by source.", "source",
     [("local", "samples_local"), ("received", "samples_received")]),
    ("peerdata_gossip_messages", "counter", "Gossip messages on our topics.", "outcome",
     [("received", "gossip_received"), ("rejected", "gossip_rejected"),
      ("dropped", "round_counts.gossip_dropped")]),
    ("peerdata_links_dropped", "counter", "Links dropped for a protocol violation.", "",
     [("", "links_dropped")]),
    ("peerdata_votes", "counter", "Votes on our images, by outcome.", "outcome",
     [("accepted", "origin.votes_accepted"), ("late", "origin.votes_late"),
      ("rejected", "origin.votes_rejected")]),
    ("peerdata_feedback", "counter", "Feedback messages on our images, by outcome.", "outcome",
     [("accepted", "origin.feedback_accepted"), ("duplicate", "origin.feedback_duplicate"),
      ("rejected", "origin.feedback_rejected")]),
    ("peerdata_feedback_records", "gauge", "Feedback records stored.", "",
     [("", "feedback_received")]),
    ("peerdata_relay", "counter", "What this robot did with images passing through.", "action",
     [("voted", "relay.voted"), ("relayed", "relay.relayed"), ("reported", "relay.reported")]),
    ("peerdata_reports", "counter", "Feedback reports sent to origins, by path.", "path",
     [("direct", "round_counts.reports_direct"), ("gossip", "round_counts.reports_gossip")]),
    ("peerdata_privacy_images", "counter", "Images through the privacy filter, by outcome.",
     "outcome",
     [("seen", "privacy.images_seen"), ("filtered", "privacy.images_filtered"),
      ("dropped", "privacy.images_dropped"),
      ("too_small_to_scan", "privacy.images_too_small_to_scan")]),
    ("peerdata_privacy_regions", "counter", "Regions the privacy filter found, by action.",
     "action",
     [("found", "privacy.regions_found"), ("blurred", "privacy.regions_blurred"),
      ("kept", "privacy.regions_kept")]),
    ("peerdata_learner_train_seconds", "counter", "Seconds spent training the learner.", "",
     [("", "learner.train_s")]),
    ("peerdata_learner_fits", "counter", "Learner fits, by part.", "part",
     [("ranker", "learner.ranker_fits"), ("fine_tune", "learner.fine_tunes")]),
    ("peerdata_learner_images", "gauge", "Images the learner holds, by kind.", "kind",
     [("local", "learner.local_images"), ("received", "learner.received_images"),
      ("received_pending", "learner.received_pending"), ("feedback", "learner.feedback_images")]),
    ("peerdata_store_bytes", "gauge", "Bytes the store takes on disk (SQLite and blobs).", "",
     [("", "store_bytes")]),
    ("peerdata_disk_free_bytes", "gauge", "Free bytes on the home's file system.", "",
     [("", "disk_free_bytes")]),
    ("peerdata_federation_rounds", "counter", "Federated rounds completed.", "",
     [("", "federation.rounds")]),
    ("peerdata_federation_bytes", "counter", "Model-update bytes.", "direction",
     [("out", "federation.bytes_sent"), ("in", "federation.bytes_received")]),
]


def families(status: dict[str, Any]) -> list[Metric]:
    """The metric families for one `status` record (fields it lacks are left out)."""
    out: list[Metric] = []
    info = InfoMetricFamily("peerdata_node", "This node's identity.")
    info.add_metric([], {"peer_id": str(status.get("peer_id", "")),
                         "name": str(status.get("name", "")), "version": __version__})
    out.append(info)
    for name, kind, doc, label, rows in _TABLE:
        cls = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
        fam = cls(name, doc, labels=[label] if label else None)
        for value_label, path in rows:
            value = _get(status, path)
            if value is not None:
                fam.add_metric([value_label] if label else [], value)
        if fam.samples:
            out.append(fam)
    out += _by_key(status, "privacy.dropped_by_reason", "peerdata_privacy_dropped",
                   "Images the privacy filter dropped, by reason.", "reason")
    out += _by_key(status, "libp2p_connections", "libp2p_connections",
                   "py-libp2p's own connection counts (Swarm.get_metrics).", "kind", "gauge")
    out += _protocol_bytes(status)
    out += _vote_latency(status)
    return out


def _by_key(status: dict[str, Any], path: str, name: str, doc: str, label: str,
            kind: str = "counter") -> list[Metric]:
    value: Any = status
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if not isinstance(value, dict):
        return []
    cls = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
    fam = cls(name, doc, labels=[label])
    for key, n in sorted(value.items()):
        fam.add_metric([str(key)], float(n))
    return [fam]


def _protocol_bytes(status: dict[str, Any]) -> list[Metric]:
    table = status.get("bytes_by_protocol")
    if not isinstance(table, dict):
        return []
    fam = CounterMetricFamily("peerdata_network_bytes",
                              "Bytes on the wire (framing included), by protocol or gossip "
                              "topic.", labels=["protocol", "direction"])
    for proto, io in sorted(table.items()):
        fam.add_metric([proto, "in"], float(io.get("in", 0)))
        fam.add_metric([proto, "out"], float(io.get("out", 0)))
    return [fam]


def _vote_latency(status: dict[str, Any]) -> list[Metric]:
    hist = status.get("vote_latency_s")
    if not isinstance(hist, dict):
        return []
    buckets = [(str(float(b)), float(n)) for b, n in hist["buckets"]]
    buckets.append(("+Inf", float(hist["count"])))
    fam = HistogramMetricFamily(
        "peerdata_vote_latency_seconds",
        "Seconds from sharing an image to receiving a signed vote on it.",
        buckets=buckets, sum_value=float(hist["sum"]))
    return [fam]


class _Families:
    """A prometheus-client collector that yields a fixed list (one scrape's families)."""

    def __init__(self, metrics: Iterable[Metric]) -> None:
        self._metrics = list(metrics)

    def collect(self) -> Iterator[Metric]:
        yield from self._metrics


def render(metrics: Iterable[Metric]) -> bytes:
    """The Prometheus text exposition of `metrics`."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(metrics))  # type: ignore[arg-type]
    return generate_latest(registry)


async def serve_metrics(listen: str, snapshot: Snapshot, *,
                        extra: Callable[[], Iterable[Metric]] = tuple,
                        task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve `http://LISTEN/metrics` until cancelled; `task_status.started(url)` once bound.

    Raises:
        ConfigError: `listen` is malformed or cannot be bound.
    """

    async def route(target: str) -> Reply:
        if target.split("?", 1)[0] != PATH:
            return Reply(404, b"try /metrics\n")
        body = render([*families(await snapshot()), *extra()])
        return Reply(200, body, CONTENT_TYPE_LATEST)

    host, port = host_port_of(listen)
    async with trio.open_nursery() as nursery:
        bound_host, bound_port = await nursery.start(serve_http, host, port, route)
        task_status.started(url_of(bound_host, bound_port, PATH))
