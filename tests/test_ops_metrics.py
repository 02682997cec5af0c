"""The metrics endpoint without a swarm: the status-to-families mapping (absent fields left out,
histogram buckets cumulative) and the HTTP side on a real 127.0.0.1 socket: GET /metrics only,
bounded requests, and a failing snapshot answered with 500 while the server keeps serving."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from peerdata.errors import ConfigError
from peerdata.ops.http import MAX_REQUEST_BYTES
from peerdata.ops.metrics import families, render, serve_metrics

STATUS: dict[str, Any] = {
    "peer_id": "12D3KooWx", "name": "r1", "uptime_s": 5.5, "peers_connected": 2,
    "images_received": 7, "round_counts": {"observed": 3}, "origin": {"votes_late": 1},
    "privacy": {"images_dropped": 2, "dropped_by_reason": {"policy": 2}},
    "bytes_by_protocol": {"/peerdata/share/1.0.0": {"in": 10, "out": 20}},
    "vote_latency_s": {"buckets": [[0.1, 1], [1.0, 3]], "count": 4, "sum": 2.5},
}


def parsed(status: dict[str, Any]) -> dict[str, dict[tuple[Any, ...], float]]:
    out: dict[str, dict[tuple[Any, ...], float]] = {}
    for fam in text_string_to_metric_families(render(families(status)).decode()):
        for s in fam.samples:
            out.setdefault(fam.name, {})[(s.name, *sorted(s.labels.items()))] = s.value
    return out


def test_families_follow_the_status_record() -> None:
    m = parsed(STATUS)
    assert m["peerdata_peers_connected"][("peerdata_peers_connected",)] == 2
    assert m["peerdata_images_received"][("peerdata_images_received_total",)] == 7
    assert m["peerdata_images_observed"][("peerdata_images_observed_total",)] == 3
    assert m["peerdata_votes"] == {("peerdata_votes_total", ("outcome", "late")): 1}
    refused = m["peerdata_images_refused"]
    assert refused == {("peerdata_images_refused_total", ("reason", "privacy_dropped")): 2}
    assert m["peerdata_privacy_dropped"][("peerdata_privacy_dropped_total",
                                          ("reason", "policy"))] == 2
    net = m["peerdata_network_bytes"]
    assert net[("peerdata_network_bytes_total", ("direction", "out"),
                ("protocol", "/peerdata/share/1.0.0"))] == 20
    hist = m["peerdata_vote_latency_seconds"]
    assert hist[("peerdata_vote_latency_seconds_bucket", ("le", "1.0"))] == 3
    assert hist[("peerdata_vote_latency_seconds_bucket", ("le", "+Inf"))] == 4
    assert hist[("peerdata_vote_latency_seconds_sum",)] == 2.5
    assert "peerdata_rounds" not in m  # not in the record: left out, not a made-up zero
    [(info, value)] = m["peerdata_node_info"].items()
    assert info[:3] == ("peerdata_node_info", ("name", "r1"), ("peer_id", "12D3KooWx"))
    assert value == 1


async def _get(port: int, raw: bytes) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(raw)
        chunks = []
        while chunk := await stream.receive_some(65536):
            chunks.append(chunk)
    return b"".join(chunks)


async def test_http_side_is_get_only_bounded_and_survives_a_failing_snapshot() -> None:
    calls = {"n": 0}

    async def snapshot() -> dict[str, Any]:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("store gone")
        return STATUS

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            url = await nursery.start(serve_metrics, "127.0.0.1:0", snapshot)
            port = int(url.rsplit(":", 1)[1].split("/")[0])
            ok = await _get(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            assert ok.startswith(b"HTTP/1.1 200 OK") and b"peerdata_peers_connected 2.0" in ok
            failed = await _get(port, b"GET /metrics HTTP/1.1\r\n\r\n")
            assert failed.startswith(b"HTTP/1.1 500") and b"store gone" not in failed
            again = await _get(port, b"GET /metrics?x=1 HTTP/1.1\r\n\r\n")
            assert again.startswith(b"HTTP/1.1 200 OK")
            assert (await _get(port, b"POST /metrics HTTP/1.1\r\n\r\n")).startswith(
                b"HTTP/1.1 405")
            assert (await _get(port, b"GET / HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 404")
            huge = b"GET /metrics HTTP/1.1\r\nX: " + b"a" * (2 * MAX_REQUEST_BYTES)
            try:  # refused unread: a 400, or a reset when it closes before we finish sending
                assert (await _get(port, huge)).startswith(b"HTTP/1.1 400")
            except trio.BrokenResourceError:
                pass
            head = await _get(port, b"HEAD /metrics HTTP/1.1\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200") and head.endswith(b"\r\n\r\n")
            nursery.cancel_scope.cancel()


async def test_bad_listen_address_is_a_config_error() -> None:
    async def snapshot() -> dict[str, Any]:
        return {}

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            with pytest.raises(ConfigError, match="HOST:PORT"):
                await nursery.start(serve_metrics, "localhost", snapshot)
