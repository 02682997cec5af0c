#!/usr/bin/env python3
"""Gossip benchmark: vote-sized messages in a swarm of separate processes on 127.0.0.1.

Each of N processes runs one libp2p transport; process 0 is the bootstrap peer (star) or each
process dials the previous one (chain). After a warm-up for the GossipSub mesh to form, every
process publishes ~300-byte messages at a fixed rate for a while, then reports what it
received. The parent prints delivery ratio and latency percentiles; the last stdout line is
one JSON object.

    .venv/bin/python scripts/bench_gossip.py [--nodes 10] [--rate 3] [--seconds 10]
        [--topology star|chain]

Latency uses time.monotonic() (CLOCK_MONOTONIC, shared by all processes on one Linux host).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any

import msgpack
import trio

from peerdata.config import LimitsConfig, NetConfig

TOPIC = "peerdata/bench-votes"
MESSAGE_BYTES = 300


async def run_node(index: int) -> None:
    """Child: print our address, read the plan from stdin, publish, report receipts."""
    from peerdata.net.libp2p_transport import open_libp2p_transport

    stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    async with open_libp2p_transport(os.urandom(32), NetConfig(), LimitsConfig()) as transport:
        inbox = transport.subscribe(TOPIC)
        print(transport.listen_addrs()[0], flush=True)
        plan = json.loads(await read_line(stdin))
        for addr in plan["bootstrap"]:
            await transport.connect(addr)
        receipts: list[tuple[int, int, float]] = []
        sent = 0

        async def receive() -> None:
            async for message in inbox:
                body = msgpack.unpackb(message.data)
                if body["o"] != index:
                    receipts.append((body["o"], body["s"], time.monotonic() - body["t"]))

        async def publish() -> None:
            nonlocal sent
            await trio.sleep(max(0.0, plan["start"] - time.monotonic()))
            interval = 1.0 / plan["rate"]
            next_at = time.monotonic()
            while sent < plan["count"]:
                body: dict[str, Any] = {"o": index, "s": sent, "t": time.monotonic()}
                packed = msgpack.packb(body)
                body["pad"] = b"\0" * max(0, MESSAGE_BYTES - len(packed) - 8)
                await transport.publish(TOPIC, msgpack.packb(body))
                sent += 1
                next_at += interval
                await trio.sleep(max(0.0, next_at - time.monotonic()))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(receive)
            await publish()
            await trio.sleep(plan["grace"])
            nursery.cancel_scope.cancel()
        print(json.dumps({"index": index, "sent": sent, "receipts": receipts,
                          "links": len(transport.connected_peers())}), flush=True)


async def read_line(stream: Any) -> str:
    data = b""
    while not data.endswith(b"\n"):
        chunk = await stream.receive_some(65536)
        if not chunk:
            raise SystemExit("stream closed before a full line arrived")
        data += chunk
    return data.decode()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run_swarm(args: argparse.Namespace) -> dict[str, Any]:
    procs = []
    try:
        for i in range(args.nodes):
            procs.append(await trio.lowlevel.open_process(
                [sys.executable, __file__, "--node", str(i)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE))
        addrs = [(await read_line(p.stdout)).strip() for p in procs]
        count = int(args.rate * args.seconds)
        start = time.monotonic() + args.warmup
        for i, p in enumerate(procs):
            if args.topology == "star":
                bootstrap = [addrs[0]] if i else []
            else:
                bootstrap = [addrs[i - 1]] if i else []
            plan = {"bootstrap": bootstrap, "start": start, "rate": args.rate, "count": count,
                    "grace": args.grace}
            assert p.stdin is not None
            await p.stdin.send_all(json.dumps(plan).encode() + b"\n")
        reports = [json.loads(await read_line(p.stdout)) for p in procs]
    finally:
        for p in procs:
            if p.returncode is None:
                with trio.move_on_after(10):
                    await p.wait()
            if p.returncode is None:
                p.kill()
                await p.wait()
    sent = sum(r["sent"] for r in reports)
    expected = sent * (args.nodes - 1)
    unique = {(r["index"], o, s) for r in reports for o, s, _ in r["receipts"]}
    latencies = [lat * 1000 for r in reports for _, _, lat in r["receipts"]]
    return {
        "nodes": args.nodes, "topology": args.topology, "rate_per_node": args.rate,
        "seconds": args.seconds, "message_bytes": MESSAGE_BYTES, "published": sent,
        "expected_deliveries": expected, "delivered_unique": len(unique),
        "duplicates": len(latencies) - len(unique),
        "delivery_ratio": round(len(unique) / expected, 4) if expected else None,
        "latency_ms_p50": round(percentile(latencies, 0.50), 1),
        "latency_ms_p99": round(percentile(latencies, 0.99), 1),
        "latency_ms_max": round(max(latencies), 1) if latencies else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--node", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--rate", type=float, default=3.0, help="messages/s per node")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=4.0, help="s for the mesh to form")
    parser.add_argument("--grace", type=float, default=3.0, help="s to wait for stragglers")
    parser.add_argument("--topology", choices=("star", "chain"), default="star")
    args = parser.parse_args()
    if args.node is not None:
        trio.run(run_node, args.node)
        return
    result = trio.run(run_swarm, args)
    print(f"{'nodes':<26}{result['nodes']} ({result['topology']})")
    print(f"{'published':<26}{result['published']} x {MESSAGE_BYTES} B "
          f"({args.rate}/s per node for {args.seconds} s)")
    print(f"{'delivery ratio':<26}{result['delivery_ratio']} "
          f"({result['delivered_unique']}/{result['expected_deliveries']}, "
          f"{result['duplicates']} duplicates)")
    print(f"{'latency p50 / p99 / max':<26}{result['latency_ms_p50']} / "
          f"{result['latency_ms_p99']} / {result['latency_ms_max']} ms")
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main()
