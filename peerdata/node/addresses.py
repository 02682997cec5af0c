"""Addresses that survive restarts: the peers we reached, saved in the store and redialled at
start-up, and the listen port a restarted daemon takes back.

Rule: only an address a peer was reached at (a connected peer's newest) is saved; start-up
redials the MAX_REDIAL most recently seen; a `tcp/0` listen address becomes the port this home
listened on last time when that port is free now, and stays 0 (any port) otherwise.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from peerdata.errors import StoreError
from peerdata.node.logs import event
from peerdata.node.peers import PeerBook, addr_peer_id
from peerdata.store import Store

log = logging.getLogger("peerdata.node.addresses")

MAX_REDIAL = 64  # saved peers dialled at start-up, most recently seen first
LAST_LISTEN_KEY = "net.last_listen"  # store meta: JSON list of the addresses we listened on

Offload = Callable[..., Awaitable[Any]]


def saved_addresses(store: Store, own_peer_id: str, limit: int = MAX_REDIAL) -> list[str]:
    """The saved peers' addresses, most recently seen first (blocking: a store read)."""
    records = sorted(store.list_peers(), key=lambda r: r.last_seen, reverse=True)
    out = []
    for r in records:
        if r.address and addr_peer_id(r.address) == r.peer_id != own_peer_id:
            out.append(r.address)
        if len(out) == limit:
            break
    return out


async def run_peer_saver(book: PeerBook, store: Store, offload: Offload,
                         wall_clock: Callable[[], float], *,
                         task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Save each peer's newest address when a link to it comes up (or its address changes)."""
    saved: dict[str, str] = {}  # what is saved for the peers linked now
    task_status.started()
    while True:
        live = book.live_addresses()
        for pid in set(saved) - set(live):
            del saved[pid]  # link down: the next link up saves it again (a newer last_seen)
        new = {pid: addr for pid, addr in live.items() if saved.get(pid) != addr}
        if not new:
            await book.changed()
            continue
        for pid, addr in new.items():
            await offload(store.upsert_peer, pid, addr, wall_clock())
            saved[pid] = addr
            event(log, logging.DEBUG, "peer_saved", peer=pid, addr=addr)


def _tcp_parts(addr: str) -> tuple[str, str, int] | None:
    """("ip4"|"ip6", host, port) of `/ipX/HOST/tcp/PORT[/...]`, or None."""
    parts = addr.split("/")
    if len(parts) < 5 or parts[0] or parts[1] not in ("ip4", "ip6") or parts[3] != "tcp":
        return None
    try:
        return parts[1], parts[2], int(parts[4])
    except ValueError:
        return None


def port_free(family: str, host: str, port: int) -> bool:
    """Whether a TCP listener could bind `host:port` now (as trio's listeners do)."""
    fam = socket.AF_INET if family == "ip4" else socket.AF_INET6
    with socket.socket(fam, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def reuse_ports(listen: tuple[str, ...], last: str | None) -> tuple[str, ...]:
    """`listen` with each `tcp/0` replaced by the port last used on that host, if free.

    `last` is what `remember_listen` saved (None: first start, nothing to reuse).
    """
    if not last:
        return listen
    try:
        previous = [p for a in json.loads(last) if isinstance(a, str)
                    and (p := _tcp_parts(a)) is not None]
    except (ValueError, TypeError):
        return listen
    out = []
    for addr in listen:
        parts = _tcp_parts(addr)
        if parts is not None and parts[2] == 0:
            family, host, _ = parts
            for fam, h, port in previous:
                if (fam, h) == (family, host) and port and port_free(fam, h, port):
                    addr = addr.replace("/tcp/0", f"/tcp/{port}", 1)
                    event(log, logging.INFO, "listen_port_reused", addr=addr)
                    break
        out.append(addr)
    return tuple(out)


def remember_listen(store: Store, listen_addrs: tuple[str, ...]) -> None:
    """Save the addresses we listen on now, for `reuse_ports` at the next start."""
    with contextlib.suppress(StoreError):  # a full or read-only store must not stop start-up
        store.set_meta(LAST_LISTEN_KEY, json.dumps(list(listen_addrs)))
