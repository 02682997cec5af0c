"""Emulated links: the spec parser, packets that really wait and get lost, and namespaces that
are gone after the owner exits, on Ctrl-C too (root only; skipped elsewhere)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from peerdata.errors import ConfigError
from peerdata.testing.linkemu import LinkSpec, parse_link_spec
from peerdata.testing.netem import list_namespaces, open_netem, remove_stale, robot_ip

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.exists("/dev/net/tun"),
    reason="emulated links need root and /dev/net/tun")

# Inside robot 1's namespace: accept one connection and echo 4 KiB back.
SERVER = textwrap.dedent("""
    import socket, sys
    s = socket.socket(); s.bind((sys.argv[1], 9000)); s.listen()
    print("listening", flush=True)
    c, _ = s.accept(); data = b""
    while len(data) < 4096:
        data += c.recv(65536)
    c.sendall(data); c.close()
""")
# Inside robot 0's namespace: time connect + 4 KiB there and back.
CLIENT = textwrap.dedent("""
    import socket, sys, time
    t = time.monotonic(); c = socket.create_connection((sys.argv[1], 9000), timeout=30)
    c.sendall(b"x" * 4096); got = b""
    while len(got) < 4096:
        got += c.recv(65536)
    print(time.monotonic() - t)
""")


def test_parse_link_spec() -> None:
    assert parse_link_spec("delay 50ms loss 2% rate 10mbit") == LinkSpec(0.05, 0.0, 0.02, 1e7)
    assert parse_link_spec("delay 1s 10ms") == LinkSpec(1.0, 0.01, 0.0, 0.0)
    assert parse_link_spec("rate 512kbit loss 0.5") == LinkSpec(0.0, 0.0, 0.005, 512e3)
    for bad in ("", "delay", "delay fast", "loss 200%", "rate 10furlongs", "corrupt 1%"):
        with pytest.raises(ConfigError):
            parse_link_spec(bad)


def _echo_seconds(spec: str) -> tuple[float, list[str]]:
    with open_netem(spec) as net:
        made = [net.add_robot(0), net.add_robot(1)]
        with subprocess.Popen([*net.prefix(1), sys.executable, "-c", SERVER, robot_ip(1)],
                              stdout=subprocess.PIPE, text=True) as server:
            try:
                assert server.stdout is not None and server.stdout.readline() == "listening\n"
                client = subprocess.run([*net.prefix(0), sys.executable, "-c", CLIENT,
                                         robot_ip(1)], capture_output=True, text=True,
                                        timeout=60, check=True)
            finally:
                server.kill()
        assert set(made) <= set(list_namespaces())
    return float(client.stdout), made


@needs_root
def test_packets_cross_a_delayed_link_and_namespaces_are_removed() -> None:
    seconds, made = _echo_seconds("delay 100ms")
    # connect (1 round trip) + data there and back (1 round trip): >= 2 x 200 ms
    assert seconds >= 0.4
    assert not set(made) & set(list_namespaces())


@needs_root
def test_interrupted_owner_leaves_nothing_behind() -> None:
    script = textwrap.dedent("""
        import time
        from peerdata.testing.netem import open_netem
        with open_netem("delay 10ms") as net:
            print(net.add_robot(0), net.add_robot(1), flush=True)
            time.sleep(120)
    """)
    for sig in (signal.SIGINT, signal.SIGKILL):
        with subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True) as owner:
            assert owner.stdout is not None
            made = owner.stdout.readline().split()
            assert len(made) == 2 and set(made) <= set(list_namespaces())
            owner.send_signal(sig)
            owner.wait(timeout=30)
        if sig == signal.SIGKILL:  # no finally ran: the next owner sweeps them
            assert set(made) <= set(list_namespaces())
            assert set(made) <= set(remove_stale())
        assert not set(made) & set(list_namespaces())
