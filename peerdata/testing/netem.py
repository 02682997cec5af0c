"""Emulated networks on one machine: each daemon in its own network namespace, its `eth0` a
TUN device whose IP packets a link emulator thread delays, drops and rate-limits.

Rule: only namespaces and devices this module creates are touched (names start with NS_PREFIX
and the owner's PID; addresses 10.77.0.0/16, inside those namespaces only); everything it
created is deleted when `open_netem` exits, however it exits (Ctrl-C included), and
`remove_stale` deletes what a killed owner left behind. Needs root, iproute2 and /dev/net/tun.

Why not `tc netem` on veth pairs: this machine's kernel is built without it
(`CONFIG_NET_SCH_NETEM is not set`: "Specified qdisc kind is unknown"), and so are many CI
kernels. The emulator (testing/linkemu.py) applies netem's model per robot link: each packet a
robot sends waits its turn at `rate`, is lost with probability `loss`, and arrives `delay`
(+- `jitter`) later; the kernels' TCP stacks see real loss and latency. Multicast (mDNS) goes
to every other robot.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import struct
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field

from peerdata.errors import ConfigError
from peerdata.testing.linkemu import LinkEmulator, LinkSpec, parse_link_spec

NS_PREFIX = "pd"
CMD_TIMEOUT_S = 30.0
_TUNSETIFF = 0x400454CA
_IFF_TUN, _IFF_NO_PI = 0x0001, 0x1000

__all__ = ["Netem", "NetemError", "open_netem", "parse_link_spec", "remove_stale", "robot_ip"]


class NetemError(ConfigError):
    """The emulated network could not be set up (not root, no iproute2 or TUN, bad spec)."""


def robot_ip(index: int) -> str:
    """Robot `index`'s address inside its namespace."""
    return f"10.77.{index // 250}.{index % 250 + 2}"


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=CMD_TIMEOUT_S,
                              check=False)
    except FileNotFoundError:
        raise NetemError(f"{args[0]} not found: install iproute2") from None
    if check and proc.returncode != 0:
        raise NetemError(f"{' '.join(args)} failed: {proc.stderr.strip()}")
    return proc


def list_namespaces() -> list[str]:
    """Every network namespace name on this machine (`ip netns list`)."""
    out = _run("ip", "netns", "list").stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _owner(name: str) -> int | None:
    """The PID in one of our namespace names (`pd<pid>r<i>`), else None."""
    if not name.startswith(NS_PREFIX):
        return None
    pid, sep, index = name[len(NS_PREFIX):].partition("r")
    return int(pid) if sep and pid.isdigit() and index.isdigit() else None


def remove_stale() -> list[str]:
    """Delete our namespaces whose owner process is gone; return their names."""
    removed = []
    for name in list_namespaces():
        pid = _owner(name)
        if pid is None or pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
            continue  # its owner still runs
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        _run("ip", "netns", "del", name, check=False)
        removed.append(name)
    return removed


def _open_tun(name: str) -> int:
    """A new TUN device `name` (IP packets, no header) in our namespace; its fd."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    try:
        fcntl.ioctl(fd, _TUNSETIFF, struct.pack("16sH", name.encode(), _IFF_TUN | _IFF_NO_PI))
    except OSError as exc:
        os.close(fd)
        raise NetemError(f"cannot create TUN device {name}: {exc}") from None
    return fd


@dataclass
class Netem:
    """An emulated network; robots join with `add_robot`, run with `prefix(index)`."""

    spec: LinkSpec
    emulator: LinkEmulator
    tag: str = field(default_factory=lambda: f"{NS_PREFIX}{os.getpid()}")
    namespaces: list[str] = field(default_factory=list)

    def namespace(self, index: int) -> str:
        return f"{self.tag}r{index}"

    def listen(self, index: int) -> str:
        """Robot `index`'s listen multiaddr (port 0: any free port in its namespace)."""
        return f"/ip4/{robot_ip(index)}/tcp/0"

    def prefix(self, index: int) -> list[str]:
        """The command prefix that runs a program inside robot `index`'s namespace."""
        return ["ip", "netns", "exec", self.namespace(index)]

    def add_robot(self, index: int) -> str:
        """Create robot `index`'s namespace and emulated link (idempotent); its namespace."""
        ns = self.namespace(index)
        if ns in self.namespaces:
            return ns
        _run("ip", "netns", "add", ns)
        self.namespaces.append(ns)
        dev = f"{self.tag}t{index}"[:15]
        fd = _open_tun(dev)
        try:
            # The device moves into the namespace; our fd stays attached to it.
            _run("ip", "link", "set", dev, "netns", ns)
            _run("ip", "-n", ns, "link", "set", dev, "name", "eth0")
            _run("ip", "-n", ns, "addr", "add", f"{robot_ip(index)}/16", "dev", "eth0")
            _run("ip", "-n", ns, "link", "set", "eth0", "multicast", "on", "up")
            _run("ip", "-n", ns, "link", "set", "lo", "up")
            # mDNS and other multicast leave through eth0 (the emulator copies it to all)
            _run("ip", "-n", ns, "route", "add", "224.0.0.0/4", "dev", "eth0")
        except BaseException:
            os.close(fd)
            raise
        self.emulator.attach(robot_ip(index), fd)
        return ns

    def partition(self, index: int, cut: bool) -> None:
        """Cut robot `index` off (every packet to or from it lost) or heal it."""
        self.emulator.cut(robot_ip(index), cut)

    def close(self) -> None:
        """Stop the emulator (closing the TUN fds) and delete every namespace we made."""
        self.emulator.close()
        while self.namespaces:
            _run("ip", "netns", "del", self.namespaces.pop(), check=False)


def check_available() -> None:
    """Raise NetemError unless this process can build the network (root, ip, TUN)."""
    if os.geteuid() != 0:
        raise NetemError("--netem needs root (network namespaces and TUN devices)")
    if shutil.which("ip") is None:
        raise NetemError("--netem needs `ip` (Debian: apt-get install iproute2)")
    if not os.path.exists("/dev/net/tun"):
        raise NetemError("--netem needs /dev/net/tun")


@contextlib.contextmanager
def open_netem(spec: str, seed: int = 0) -> Iterator[Netem]:
    """An emulated network for the block (robots join with `add_robot`); deleted on exit.

    `spec` is netem's syntax: "delay 50ms [10ms] loss 2% rate 10mbit" (any subset).
    """
    link = parse_link_spec(spec)
    check_available()
    remove_stale()
    net = Netem(link, LinkEmulator(link, seed))
    try:
        net.emulator.start()
        yield net
    finally:
        net.close()
