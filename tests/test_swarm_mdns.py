"""Robots on one LAN find each other by mDNS with no bootstrap configured: two real daemons,
each in its own network namespace on an emulated LAN (testing/netem.py; root only)."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import pytest

from peerdata.testing.swarm import open_swarm

pytestmark = [
    pytest.mark.swarm, pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/dev/net/tun"),
                       reason="network namespaces need root and /dev/net/tun"),
]
TIMEOUT = 60.0


def test_daemons_on_one_lan_find_each_other_without_bootstrap(tmp_path: Path) -> None:
    def lan_only(index: int) -> dict[str, dict[str, object]]:
        return {"net": {"bootstrap": [], "mdns": True}}

    with open_swarm(2, tmp_path / "s", ready_timeout_s=TIMEOUT, settings=lan_only,
                    netem="delay 5ms") as swarm:
        swarm.wait_peers(1, TIMEOUT)
        ids = {r.peer_id for r in swarm.robots}
        for r in swarm.robots:
            peers = swarm.call(r.index, "peers")["peers"]
            assert {p["peer_id"] for p in peers if p["connected"]} == ids - {r.peer_id}
            assert "bootstrap = []" in (r.home / "config.toml").read_text()
        # the first links came from mDNS (later ones may come from Hello introductions too)
        assert any(_logged(r.home / "node.log", "peer_discovered") for r in swarm.robots)


def _logged(log: Path, name: str) -> bool:
    """Whether the daemon's log (one JSON object a line) has an event `name`."""
    for line in log.read_text().splitlines():
        with contextlib.suppress(ValueError):
            if json.loads(line).get("event") == name:
                return True
    return False
