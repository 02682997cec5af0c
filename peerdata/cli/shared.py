"""`peerdata shared`: what left this robot, when, to whom, and its utility."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import typer

from peerdata.cli.init import HomeOption, TimeoutOption, ask
from peerdata.cli.output import FORMAT_OPTION, Format, guarded, table
from peerdata.cli.rounds import fmt_float

HELP = """List the images this robot shared: content ID, round, first peer, bytes, utility.

Each image leaves the robot once per round, to one first peer; the peers relay it among
themselves. Utility is the fraction of peers that found it novel (from the signed feedback,
or recovered from signed votes when no feedback came).

Examples:

  peerdata shared --home ~/.peerdata --round 3

  peerdata shared --format json | jq '[.shared[].utility] | add / length'
"""

RoundOption = Annotated[int | None, typer.Option("--round", help="only this round")]


def when(ts: float | None) -> str:
    return "-" if ts is None else dt.datetime.fromtimestamp(ts).strftime("%H:%M:%S")


def shared(home: HomeOption = None, round_id: RoundOption = None,
           timeout_s: TimeoutOption = 10.0, fmt: Format = FORMAT_OPTION) -> None:
    """List the images this robot shared (see `peerdata shared --help`)."""
    args = {} if round_id is None else {"round_id": round_id}
    if (result := ask(home, "shared", args, timeout_s, fmt)) is None:
        return
    table(
        f"shared by {result.get('peer_id')}",
        ["cid", "round", "to", "bytes", "at", "utility", "voters", "feedback at"],
        [(s["cid"][:16], s["round_id"], s["peer_id"][-12:], s["nbytes"], when(s["shared_at"]),
          fmt_float(s["utility"]), s["voters"], when(s["feedback_at"]))
         for s in result.get("shared", [])],
    )


def register(app: typer.Typer) -> None:
    app.command("shared", help=HELP)(guarded(shared))
