#!/usr/bin/env python3
"""Benchmark peerdata's libp2p transport against plain trio TCP with the same framing.

Two processes on 127.0.0.1: this one is the client; a child process (this script with
--serve) runs both servers, a libp2p transport and a raw trio TCP listener, each answering
every framed request with a 4-byte ack frame. Prints a table; the last stdout line is one
JSON object with every figure.

    .venv/bin/python scripts/bench_transport.py [--quick] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import json
import os
import pstats
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgpack
import trio

from peerdata.config import LimitsConfig, NetConfig
from peerdata.net.framing import encode_header, read_frame

MB = 1_000_000
LIMITS = LimitsConfig(max_message_bytes=64 * 1024 * 1024, max_image_bytes=32 * 1024 * 1024)
NET = NetConfig(connect_timeout_s=10.0, request_timeout_s=120.0)
SINK = "/peerdata/bench-sink/1.0.0"
IMAGE = "/peerdata/bench-image/1.0.0"
ACK = b"ok"
SERVER_SEED = bytes(31) + b"\x01"


# -- server process ----------------------------------------------------------------------------

async def serve() -> None:
    from peerdata.net.libp2p_transport import open_libp2p_transport

    async def sink(peer_id: str, payload: bytes) -> bytes:
        return ACK

    async def tcp_handler(stream: trio.SocketStream) -> None:
        try:
            while True:
                await read_frame(stream.receive_some, LIMITS.max_message_bytes)
                await stream.send_all(encode_header(len(ACK), LIMITS.max_message_bytes) + ACK)
        except Exception:
            return

    async with open_libp2p_transport(SERVER_SEED, NET, LIMITS) as transport, \
            trio.open_nursery() as nursery:
        transport.set_handler(SINK, sink)
        transport.set_handler(IMAGE, sink)
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, tcp_handler, 0, host="127.0.0.1"))
        tcp_port = listeners[0].socket.getsockname()[1]
        print(json.dumps({"libp2p": transport.listen_addrs()[0], "tcp": tcp_port}), flush=True)
        await trio.wrap_file(sys.stdin).read()  # run until the client closes our stdin
        nursery.cancel_scope.cancel()


# -- client ------------------------------------------------------------------------------------

async def timed(fn: Callable[[], Awaitable[Any]], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        await fn()
        times.append(time.perf_counter() - start)
    return times


class RawClient:
    """The baseline: one persistent trio TCP connection, same 4-byte length framing."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream

    async def request(self, payload: bytes) -> bytes:
        header = encode_header(len(payload), LIMITS.max_message_bytes)
        if len(payload) <= 64 * 1024:
            await self.stream.send_all(header + payload)
        else:
            await self.stream.send_all(header)
            await self.stream.send_all(payload)
        return await read_frame(self.stream.receive_some, LIMITS.max_message_bytes)


async def connect_times(addr: str, trials: int) -> dict[str, float]:
    """Median dial time: our tuned host vs libp2p's defaults (fresh client host each trial)."""
    import libp2p
    from libp2p.peer.peerinfo import info_from_p2p_addr
    from multiaddr import Multiaddr

    from peerdata.net.libp2p_transport import open_libp2p_transport

    ours, default = [], []
    for _ in range(trials):
        async with open_libp2p_transport(os.urandom(32), NET, LIMITS) as client:
            start = time.perf_counter()
            await client.connect(addr)
            ours.append(time.perf_counter() - start)
        host = libp2p.new_host()
        async with host.run(listen_addrs=[Multiaddr("/ip4/127.0.0.1/tcp/0")]):
            start = time.perf_counter()
            with trio.fail_after(NET.connect_timeout_s):
                await host.connect(info_from_p2p_addr(Multiaddr(addr)))
            default.append(time.perf_counter() - start)
            await host.close()
    return {"ours_ms": statistics.median(ours) * 1000,
            "default_ms": statistics.median(default) * 1000}


async def run_client(quick: bool, profile: bool) -> dict[str, Any]:
    from peerdata.net.libp2p_transport import open_libp2p_transport

    profile_path = f"/tmp/bench_transport_server_{os.getpid()}.pstats"
    server_cmd = [sys.executable, __file__, "--serve"]
    if profile:
        server_cmd += ["--profile-out", profile_path]
    server = await trio.lowlevel.open_process(
        server_cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert server.stdout is not None and server.stdin is not None
    line = b""
    while not line.endswith(b"\n"):
        chunk = await server.stdout.receive_some(4096)
        if not chunk:
            raise SystemExit("server process exited before it was ready")
        line += chunk
    addrs = json.loads(line)
    results: dict[str, Any] = {"processes": 2}
    try:
        tcp = RawClient(await trio.open_tcp_stream("127.0.0.1", addrs["tcp"]))
        async with open_libp2p_transport(os.urandom(32), NET, LIMITS) as client:
            server_id = await client.connect(addrs["libp2p"])

            async def ours(payload: bytes) -> bytes:
                return await client.request(server_id, SINK, payload)

            sizes = {"1MB": (1 * MB, 5 if quick else 20), "20MB": (20 * MB, 2 if quick else 6)}
            for label, (size, repeat) in sizes.items():
                payload = os.urandom(size)
                await ours(payload)  # warm-up: yamux windows grow, code paths are hot
                await tcp.request(payload)
                t_ours = await timed(functools.partial(ours, payload), repeat)
                t_tcp = await timed(functools.partial(tcp.request, payload), repeat)
                mbps_ours = size / MB / statistics.median(t_ours)
                mbps_tcp = size / MB / statistics.median(t_tcp)
                results[f"throughput_{label}"] = {
                    "libp2p_MBps": round(mbps_ours, 1), "tcp_MBps": round(mbps_tcp, 1),
                    "ratio": round(mbps_ours / mbps_tcp, 3), "repeats": repeat}

            n_images = 200 if quick else 1000
            images = [os.urandom(800) for _ in range(n_images)]
            start = time.perf_counter()
            for image in images:
                await ours(image)
            one_each = n_images / (time.perf_counter() - start)
            start = time.perf_counter()
            batch = msgpack.packb(images, use_bin_type=True)
            await client.request(server_id, IMAGE, batch)
            batched = n_images / (time.perf_counter() - start)

            async def concurrent(limit: int) -> float:
                semaphore = trio.Semaphore(limit)

                async def one(image: bytes) -> None:
                    async with semaphore:
                        await ours(image)

                start = time.perf_counter()
                async with trio.open_nursery() as nursery:
                    for image in images:
                        nursery.start_soon(one, image)
                return n_images / (time.perf_counter() - start)

            results["small_images_800B"] = {
                "n": n_images, "one_request_each_per_s": round(one_each),
                "one_each_16_in_flight_per_s": round(await concurrent(16)),
                "batched_one_request_per_s": round(batched),
            }
            t_ours = await timed(functools.partial(ours, b"ping"), 50)
            t_tcp = await timed(functools.partial(tcp.request, b"ping"), 50)
            results["request_rtt_ms"] = {"libp2p": round(statistics.median(t_ours) * 1000, 2),
                                         "tcp": round(statistics.median(t_tcp) * 1000, 2)}

            if profile:
                payload = os.urandom(20 * MB)
                profiler = cProfile.Profile()
                profiler.enable()
                for _ in range(3):
                    await ours(payload)
                profiler.disable()
                results["profile_client_20MB_s"] = time_by_layer(pstats.Stats(profiler))
        results["connect"] = {k: round(v, 1) for k, v in
                              (await connect_times(addrs["libp2p"], 3 if quick else 7)).items()}
        await tcp.stream.aclose()
    finally:
        await server.stdin.aclose()
        with trio.move_on_after(10):
            await server.wait()
        if server.returncode is None:
            server.kill()
            await server.wait()
    if profile:
        server_stats = pstats.Stats(profile_path)
        results["profile_server_whole_run_s"] = time_by_layer(server_stats)
        results["profile_server_top_functions_s"] = top_functions(server_stats, 8)
        os.unlink(profile_path)
    return results


LAYERS = (  # (layer, substring of "file:function"), first match wins
    ("idle: waiting in epoll", "select.epoll"),
    ("socket send/recv syscalls", "_socket.socket"),
    ("Noise: ChaCha20-Poly1305", "ChaCha20Poly1305"),
    ("Noise: framing, session", "libp2p/security/"),
    ("yamux muxer", "libp2p/stream_muxer/"),
    ("libp2p io, network, host", "libp2p/"),
    ("trio scheduler, locks, sockets", "trio/"),
    ("peerdata framing + handlers", "peerdata/"),
)


def top_functions(stats: pstats.Stats, n: int) -> dict[str, float]:
    """The n functions with the most own time, as "file:line(function) xCALLS" -> seconds."""
    rows = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:n]  # type: ignore[attr-defined]
    return {f"{os.path.basename(f)}:{line}({fn}) x{row[1]}": round(row[2], 3)
            for (f, line, fn), row in rows}


def time_by_layer(stats: pstats.Stats) -> dict[str, float]:
    """Own time (tottime) summed per layer of the stack, in seconds."""
    totals: dict[str, float] = {}
    for (filename, _, function), row in stats.stats.items():  # type: ignore[attr-defined]
        where = f"{filename}:{function}"
        layer = next((name for name, key in LAYERS if key in where), "other (python, copies)")
        totals[layer] = totals.get(layer, 0.0) + row[2]
    return {k: round(v, 3) for k, v in sorted(totals.items(), key=lambda kv: -kv[1])}


def print_table(results: dict[str, Any]) -> None:
    print(f"{'measure':<34}{'libp2p (ours)':>16}{'plain trio TCP':>16}{'ratio':>8}")
    for label in ("1MB", "20MB"):
        r = results[f"throughput_{label}"]
        print(f"{'throughput ' + label + ' (MB/s)':<34}{r['libp2p_MBps']:>16}{r['tcp_MBps']:>16}"
              f"{r['ratio']:>8}")
    c = results["connect"]
    print(f"{'connect ms (ours / libp2p default)':<34}{c['ours_ms']:>16}{c['default_ms']:>16}")
    s = results["small_images_800B"]
    print(f"{'800 B images/s, 1 request each':<34}{s['one_request_each_per_s']:>16}")
    print(f"{'800 B images/s, 16 in flight':<34}{s['one_each_16_in_flight_per_s']:>16}")
    print(f"{'800 B images/s, batched':<34}{s['batched_one_request_per_s']:>16}")
    rtt = results["request_rtt_ms"]
    print(f"{'small request round trip (ms)':<34}{rtt['libp2p']:>16}{rtt['tcp']:>16}")
    for key in ("profile_client_20MB_s", "profile_server_whole_run_s",
                "profile_server_top_functions_s"):
        if key in results:
            print(f"\n{key} (own time per layer, seconds)")
            for layer, seconds in results[key].items():
                print(f"  {layer[-60:]:<60}{seconds:>8}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--profile-out", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="fewer repeats (smoke run)")
    parser.add_argument("--profile", action="store_true",
                        help="also profile 3 x 20 MB (client) and the whole server run")
    args = parser.parse_args()
    if args.serve:
        if args.profile_out:
            profiler = cProfile.Profile()
            profiler.enable()
            trio.run(serve)
            profiler.disable()
            profiler.dump_stats(args.profile_out)
        else:
            trio.run(serve)
        return
    results = trio.run(run_client, args.quick, args.profile)
    print_table(results)
    print(json.dumps(results, sort_keys=True))


if __name__ == "__main__":
    main()
