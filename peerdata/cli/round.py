"""`peerdata round now`: learn from what is pending, then start a sharing round at once."""

from __future__ import annotations

from typing import Annotated

import typer

from peerdata.cli.init import HomeOption, TimeoutOption, ask
from peerdata.cli.output import FORMAT_OPTION, Format, guarded, say

HELP = """Start a sharing round on a running node now (as the schedule, round.interval_s, does).

The daemon first learns from anything pending (retrains its ranker on all feedback so far,
fine-tunes on the images peers shared), then ranks its new images, caches the top budget,
passes them through the privacy filter and offers them to its peers. Answers once the offers
went out; follow the votes with `peerdata rounds`.

Examples:

  peerdata round now --home ~/.peerdata

  peerdata round now --policy random --no-learn --format json | jq .shared
"""

app = typer.Typer(name="round", help="Sharing rounds on demand.", no_args_is_help=True)


@app.command("now", help=HELP)
@guarded
def now(
    home: HomeOption = None,
    policy: Annotated[str | None, typer.Option(
        "--policy", help="gu | random | oracle | all | none [default: round.policy]")] = None,
    learn: Annotated[bool, typer.Option("--learn/--no-learn",
                                        help="learn from pending feedback first")] = True,
    timeout_s: TimeoutOption = 600.0,
    fmt: Format = FORMAT_OPTION,
) -> None:
    """Start a sharing round now (see `peerdata round now --help`)."""
    args: dict[str, object] = {"learn": learn}
    if policy:
        args["policy"] = policy
    if (result := ask(home, "round_now", args, timeout_s, fmt)) is None:
        return
    say(
        f"round {result['round_id']} ({result['policy']}): selected {result['selected']}, "
        f"shared {result['shared']} ({result['bytes_sent']} bytes), dropped by privacy "
        f"{result['dropped_by_privacy']}, over budget {result['over_budget']}")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="round")
