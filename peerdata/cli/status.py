"""`peerdata status`: one running node's identity, links and transfer counters."""

from __future__ import annotations

import typer

from peerdata.cli.init import HomeOption, TimeoutOption, ask
from peerdata.cli.output import FORMAT_OPTION, Format, guarded, say

HELP = """Show a running node: peer ID, listen addresses, peers, images and bytes moved.

Asks the daemon through its control socket (HOME/control.sock); exits 5 if none is running.
`metrics_url` is the daemon's Prometheus endpoint (its counters are these).

Examples:

  peerdata status --home ~/.peerdata

  peerdata status --format json | jq .images_received

  curl -s "$(peerdata status --format json | tail -1 | jq -r .metrics_url)"
"""

_ROWS = [
    ("peer ID", "peer_id"), ("name", "name"), ("pid", "pid"), ("uptime (s)", "uptime_s"),
    ("peers connected", "peers_connected"), ("images sent", "images_sent"),
    ("images received", "images_received"), ("images verified", "images_verified"),
    ("images rejected", "images_rejected"), ("bytes sent", "bytes_sent"),
    ("bytes received", "bytes_received"), ("local samples", "samples_local"),
    ("received samples", "samples_received"), ("sharing policy", "policy"),
    ("rounds", "rounds"), ("rounds completed", "rounds_completed"),
    ("feedback received", "feedback_received"), ("ranker fits", "ranker_trained"),
    ("images shared", "images_shared"), ("store (bytes)", "store_bytes"),
    ("disk free (bytes)", "disk_free_bytes"), ("control", "control"), ("metrics", "metrics_url"),
]


def status(
    home: HomeOption = None,
    timeout_s: TimeoutOption = 10.0,
    fmt: Format = FORMAT_OPTION,
) -> None:
    """Show a running node (see `peerdata status --help`)."""
    if (result := ask(home, "status", None, timeout_s, fmt)) is None:
        return
    width = max(len(label) for label, _ in _ROWS)
    for label, key in _ROWS:
        value = result.get(key)
        if value is None:
            continue
        if isinstance(value, float):
            value = f"{value:.1f}"
        say(f"{label:<{width}}  {value}")
    for addr in result.get("listen_addrs", []):
        say(f"{'listening':<{width}}  {addr}")


def register(app: typer.Typer) -> None:
    app.command("status", help=HELP)(guarded(status))
