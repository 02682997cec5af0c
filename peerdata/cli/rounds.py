"""`peerdata rounds`: a running node's sharing rounds, one line each."""

from __future__ import annotations

from typing import Any

import typer

from peerdata.cli.init import HomeOption, TimeoutOption, ask
from peerdata.cli.output import FORMAT_OPTION, Format, guarded, table

HELP = """List a running node's sharing rounds.

Per round: images shared, signed votes received on them (late ones apart), feedback received
(and utilities recovered from votes when no feedback came), mean utility, accuracy on the
configured evaluation set (round.eval_npz) after the learn step, and whether it is complete
(every shared image has a utility). Oldest first.

Examples:

  peerdata rounds --home ~/.peerdata

  peerdata rounds --format json | jq '.rounds[-1].mean_utility'
"""


def fmt_float(value: Any, digits: int = 3) -> str:
    return "-" if value is None else f"{float(value):.{digits}f}"


def rounds(home: HomeOption = None, timeout_s: TimeoutOption = 10.0,
           fmt: Format = FORMAT_OPTION) -> None:
    """List a running node's sharing rounds (see `peerdata rounds --help`)."""
    if (result := ask(home, "rounds", None, timeout_s, fmt)) is None:
        return
    table(
        f"rounds of {result.get('peer_id')}",
        ["round", "shared", "votes", "late", "feedback", "recovered", "mean utility",
         "accuracy", "complete"],
        [(r["round_id"], r["shared"], r["votes_received"], r["late_votes"],
          r["feedback_received"], r["recovered"], fmt_float(r["mean_utility"]),
          fmt_float(r["accuracy"]), "yes" if r["complete"] else "no")
         for r in result.get("rounds", [])],
    )


def register(app: typer.Typer) -> None:
    app.command("rounds", help=HELP)(guarded(rounds))
