"""A link emulator: IP packets read from TUN devices, delivered to the device of their
destination address after netem's model (rate, loss, delay, jitter), on one thread.

Rule: every packet a robot sends first waits for its link (`rate`, at most QUEUE_LIMIT
packets queued, beyond that dropped as a full queue drops), is then lost with probability
`loss`, else written to the destination's device `delay` +- `jitter` later; the seeded RNG
makes a run's drops repeatable for the same packet order. Multicast goes to every other
device; packets to unknown or cut addresses are dropped.
"""

from __future__ import annotations

import contextlib
import heapq
import ipaddress
import os
import random
import re
import select
import shlex
import threading
import time
from dataclasses import dataclass

from peerdata.errors import ConfigError

QUEUE_LIMIT = 1000  # packets waiting for one link (netem's default limit)
MAX_PACKET = 65_536
_UNITS = {"": 1.0, "s": 1.0, "ms": 1e-3, "us": 1e-6}
_RATES = {"bit": 1.0, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9, "bps": 8.0, "kbps": 8e3,
          "mbps": 8e6}


@dataclass(frozen=True)
class LinkSpec:
    """One link's behaviour: seconds of delay and jitter, loss probability, bits per second
    (0 = unlimited)."""

    delay_s: float = 0.0
    jitter_s: float = 0.0
    loss: float = 0.0
    rate_bps: float = 0.0


def _seconds(word: str) -> float:
    m = re.fullmatch(r"([0-9.]+)(s|ms|us)?", word)
    if not m:
        raise ConfigError(f"netem: {word!r} is not a time (e.g. 50ms)")
    return float(m.group(1)) * _UNITS[m.group(2) or ""]


def parse_link_spec(spec: str) -> LinkSpec:
    """Parse netem's syntax: "delay 50ms [10ms] loss 2% rate 10mbit" (any subset, any order).

    Raises:
        ConfigError: an unknown option or a malformed value.
    """
    words = shlex.split(spec)
    if not words:
        raise ConfigError('netem: empty spec; e.g. "delay 50ms loss 2% rate 10mbit"')
    delay = jitter = loss = rate = 0.0
    i = 0
    try:
        while i < len(words):
            opt = words[i]
            if opt == "delay":
                delay = _seconds(words[i + 1])
                i += 2
                if i < len(words) and words[i][:1].isdigit():
                    jitter = _seconds(words[i])
                    i += 1
            elif opt == "loss":
                value = words[i + 1].removesuffix("%")
                loss = float(value) / 100.0
                i += 2
            elif opt == "rate":
                m = re.fullmatch(r"([0-9.]+)([a-z]*)", words[i + 1].lower())
                if not m or m.group(2) not in _RATES:
                    raise ConfigError(f"netem: {words[i + 1]!r} is not a rate (e.g. 10mbit)")
                rate = float(m.group(1)) * _RATES[m.group(2)]
                i += 2
            else:
                raise ConfigError(f"netem: unknown option {opt!r} (delay, loss, rate)")
    except (IndexError, ValueError):
        raise ConfigError(f"netem: cannot parse {spec!r}; e.g. \"delay 50ms loss 2%\"") from None
    if not 0.0 <= loss <= 1.0:
        raise ConfigError(f"netem: loss {loss * 100:g}% is not within 0-100%")
    return LinkSpec(delay, jitter, loss, rate)


def _destination(packet: bytes) -> str | None:
    """The IPv4 destination of `packet`, or None (IPv6 and junk are not routed)."""
    if len(packet) < 20 or packet[0] >> 4 != 4:
        return None
    return str(ipaddress.IPv4Address(packet[16:20]))


class LinkEmulator:
    """Moves packets between attached TUN fds on a daemon thread; `close()` stops it."""

    def __init__(self, spec: LinkSpec, seed: int = 0) -> None:
        self.spec = spec
        self._rng = random.Random(seed)
        self._fds: dict[str, int] = {}
        self._cut: set[str] = set()
        self._free_at: dict[str, float] = {}  # when each link finishes sending its queue
        self._queued: dict[str, int] = {}
        self._heap: list[tuple[float, int, str, bytes, str]] = []  # (due, n, dst, pkt, src)
        self._n = 0
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = os.pipe()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="linkemu", daemon=True)
        self.counters = {"sent": 0, "lost": 0, "overflow": 0, "unroutable": 0}

    def attach(self, ip: str, fd: int) -> None:
        with self._lock:
            self._fds[ip] = fd
        os.write(self._wake_w, b"x")

    def cut(self, ip: str, cut: bool) -> None:
        with self._lock:
            (self._cut.add if cut else self._cut.discard)(ip)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop = True
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        with self._lock:
            for fd in self._fds.values():
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._fds.clear()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _src_of(self, fd: int) -> str:
        return next((ip for ip, f in self._fds.items() if f == fd), "")

    def _run(self) -> None:
        while not self._stop:
            now = time.monotonic()
            timeout = max(0.0, self._heap[0][0] - now) if self._heap else 1.0
            with self._lock:
                fds = list(self._fds.values())
            readable, _, _ = select.select([self._wake_r, *fds], [], [], timeout)
            now = time.monotonic()
            for fd in readable:
                if fd == self._wake_r:
                    os.read(self._wake_r, 4096)
                    continue
                self._drain(fd, now)
            self._deliver(time.monotonic())

    def _drain(self, fd: int, now: float) -> None:
        src = self._src_of(fd)
        for _ in range(64):  # a bounded batch per wake-up: other links get their turn
            try:
                packet = os.read(fd, MAX_PACKET)
            except (BlockingIOError, OSError):
                return
            self._route(src, packet, now)

    def _route(self, src: str, packet: bytes, now: float) -> None:
        dst = _destination(packet)
        if dst is None or src in self._cut:
            self.counters["unroutable"] += 1
            return
        if ipaddress.IPv4Address(dst).is_multicast:
            targets = [ip for ip in self._fds if ip != src]
        elif dst in self._fds:
            targets = [dst]
        else:
            self.counters["unroutable"] += 1
            return
        if self._queued.get(src, 0) >= QUEUE_LIMIT:
            self.counters["overflow"] += 1
            return
        spec = self.spec
        start = max(now, self._free_at.get(src, now))
        done = start + (len(packet) * 8 / spec.rate_bps if spec.rate_bps else 0.0)
        self._free_at[src] = done
        if self._rng.random() < spec.loss:
            self.counters["lost"] += 1
            return
        for target in targets:
            jitter = self._rng.uniform(-spec.jitter_s, spec.jitter_s) if spec.jitter_s else 0.0
            self._n += 1
            self._queued[src] = self._queued.get(src, 0) + 1
            heapq.heappush(self._heap, (done + max(0.0, spec.delay_s + jitter), self._n,
                                        target, packet, src))

    def _deliver(self, now: float) -> None:
        while self._heap and self._heap[0][0] <= now:
            _, _, dst, packet, src = heapq.heappop(self._heap)
            self._queued[src] -= 1
            fd = self._fds.get(dst)
            if fd is None or dst in self._cut:
                self.counters["unroutable"] += 1
                continue
            try:
                os.write(fd, packet)
                self.counters["sent"] += 1
            except OSError:
                self.counters["unroutable"] += 1  # its device is gone or full
