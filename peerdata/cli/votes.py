"""`peerdata votes`: the signed votes this robot cast and those it received on its images."""

from __future__ import annotations

import typer

from peerdata.cli.init import HomeOption, TimeoutOption, ask
from peerdata.cli.output import FORMAT_OPTION, Format, guarded, table
from peerdata.cli.shared import RoundOption, when

HELP = """List votes: those this robot cast on images peers shared (cast = yes) and the signed
votes peers published on images it shared. Round numbers are the origin's. Votes that arrived
after the origin's deadline are marked late and are not counted.

Examples:

  peerdata votes --home ~/.peerdata --round 2

  peerdata votes --format json | jq '[.votes[] | select(.novel)] | length'
"""


def votes(home: HomeOption = None, round_id: RoundOption = None,
          timeout_s: TimeoutOption = 10.0, fmt: Format = FORMAT_OPTION) -> None:
    """List votes (see `peerdata votes --help`)."""
    args = {} if round_id is None else {"round_id": round_id}
    if (result := ask(home, "votes", args, timeout_s, fmt)) is None:
        return
    table(
        f"votes at {result.get('peer_id')}",
        ["cid", "round", "origin", "voter", "novel", "score", "at", "late", "cast"],
        [(v["cid"][:16], v["round_id"], v["origin"][-12:], v["voter"][-12:],
          "yes" if v["novel"] else "no", f"{v['score']:.3f}", when(v["received_at"]),
          "yes" if v["late"] else "no", "yes" if v["cast"] else "no")
         for v in result.get("votes", [])],
    )


def register(app: typer.Typer) -> None:
    app.command("votes", help=HELP)(guarded(votes))
