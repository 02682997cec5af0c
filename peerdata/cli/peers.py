"""`peerdata peers`: the peers a running node knows, with link age and traffic."""

from __future__ import annotations

from typing import Annotated

import typer

from peerdata.cli.init import HomeOption, TimeoutOption, resolve_home
from peerdata.cli.output import FORMAT_OPTION, Format, emit_json, guarded, table
from peerdata.control.client import call

HELP = """List the peers of a running node, with link age and traffic.

Columns: peer ID, name, address, connected, connection age, bytes in/out, how long ago the
last message arrived, and the weight its votes carry (0-1, from its reputation: how far its
votes agree with the fleet's beyond chance; "-" before any evidence or with
`[trust] reputation = false`). `--all` includes peers known but not connected now.
`peerdata status --format json | jq .reputation` shows every voter, connected or not.

Examples:

  peerdata peers --home ~/.peerdata

  peerdata peers --format json | jq '.peers[] | select(.connected) | .peer_id'
"""


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def peers(
    home: HomeOption = None,
    all_known: Annotated[
        bool, typer.Option("--all", help="include peers not connected now")
    ] = False,
    timeout_s: TimeoutOption = 10.0,
    fmt: Format = FORMAT_OPTION,
) -> None:
    """List a running node's peers (see `peerdata peers --help`)."""
    result = call(resolve_home(home), "peers", timeout_s=timeout_s)
    rows = [p for p in result.get("peers", []) if all_known or p.get("connected")]
    if fmt is Format.json:
        emit_json({"peer_id": result.get("peer_id"), "peers": rows})
        return
    table(
        f"peers of {result.get('peer_id')}",
        ["peer ID", "name", "address", "connected", "age", "bytes in", "bytes out", "last msg",
         "vote weight"],
        [
            (p["peer_id"], p.get("name") or "", p.get("address") or "",
             "yes" if p.get("connected") else "no", _age(p.get("connection_age_s")),
             p.get("bytes_in", 0), p.get("bytes_out", 0), _age(p.get("last_message_age_s")),
             "-" if p.get("vote_weight") is None else f"{p['vote_weight']:.2f}")
            for p in rows
        ],
    )


def register(app: typer.Typer) -> None:
    app.command("peers", help=HELP)(guarded(peers))
