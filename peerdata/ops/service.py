"""The daemon's operations hooks: metrics endpoint, systemd readiness, config reload (SIGHUP).

Rule: the daemon calls `start_ops` once its services are up and `reload_config` on SIGHUP;
nothing here changes what the node does. A reload applies only what is safe to change live (the
log level) and logs every other changed setting as needing a restart; an invalid new config is
refused and the running one kept.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import asdict, replace
from functools import partial
from pathlib import Path
from typing import Any

from peerdata.config import NodeConfig, load_config
from peerdata.control.protocol import ControlRequest
from peerdata.control.server import Dispatch
from peerdata.errors import ConfigError
from peerdata.node.home import CONFIG_FILE
from peerdata.node.logs import event, level_of, set_level
from peerdata.node.node import Node
from peerdata.ops.metrics import serve_metrics
from peerdata.ops.status import with_ops_fields

log = logging.getLogger("peerdata.ops")


def sd_notify(state: str, env: dict[str, str] | None = None) -> bool:
    """Send `state` (e.g. "READY=1") to systemd's $NOTIFY_SOCKET; False when not under systemd."""
    path = (env if env is not None else os.environ).get("NOTIFY_SOCKET", "")
    if not path or path[0] not in "/@":
        return False
    address = "\0" + path[1:] if path[0] == "@" else path  # "@": the abstract namespace
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        try:
            sock.connect(address)
            sock.sendall(state.encode())
        except OSError as exc:
            log.warning("event=sd_notify_failed error=%r", str(exc))
            return False
    return True


async def start_ops(node: Node, home: Path, dispatch: Dispatch) -> tuple[Dispatch, str | None]:
    """Start the metrics endpoint (unless `metrics.listen` is ""); return the dispatch with
    the ops `status` fields added, and the metrics URL.

    Raises:
        ConfigError: the metrics address cannot be bound.
    """
    url: str | None = None
    extended = with_ops_fields(dispatch, node, home, lambda: url)
    listen = node.config.metrics.listen
    if listen:
        async def snapshot() -> dict[str, Any]:
            return await extended(ControlRequest(id=0, cmd="status"))

        url = await node.start_service(partial(serve_metrics, listen, snapshot))
        event(log, logging.INFO, "metrics_serving", url=url)
    return extended, url


def _changed(old: NodeConfig, new: NodeConfig) -> list[str]:
    a, b = asdict(old), asdict(new)
    out = []
    for section in sorted(set(a) | set(b)):
        va, vb = a.get(section), b.get(section)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += [f"{section}.{k}" for k in sorted(set(va) | set(vb)) if va.get(k) != vb.get(k)]
        elif va != vb:
            out.append(section)
    return out


def reload_config(home: Path, running: NodeConfig) -> NodeConfig:
    """Re-read HOME/config.toml; apply the log level; return the config now in effect.

    The node keeps running on `running` for everything else: changed settings other than
    `log.level` are logged (`reload_needs_restart`) and take effect at the next start.
    """
    try:
        new = load_config(home / CONFIG_FILE)
    except ConfigError as exc:
        event(log, logging.ERROR, "reload_refused", error=str(exc)[:300])
        return running
    changed = _changed(running, new)
    if new.log.level != running.log.level:
        set_level(level_of(new.log.level))
    later = [c for c in changed if c != "log.level"]
    event(log, logging.INFO, "reloaded", applied="log.level" if "log.level" in changed else "",
          needs_restart=",".join(later))
    if later:
        event(log, logging.WARNING, "reload_needs_restart", settings=",".join(later))
    # What is in effect: the running config with only the live-applied setting replaced.
    return replace(running, log=replace(running.log, level=new.log.level))
