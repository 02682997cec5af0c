"""`peerdata send`: offer local image files to one peer through the running daemon."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from peerdata.cli.init import HomeOption, TimeoutOption, ask
from peerdata.cli.output import FORMAT_OPTION, Format, guarded, say
from peerdata.errors import DataError

HELP = """Offer image files to one peer through the running daemon.

The daemon passes each image through the privacy filter (faces and plates blurred or the image
dropped, per [privacy] in config.toml), stores the filter's output, offers its content ID, and
the peer fetches only the images it lacks, verifying each one's SHA-256 on arrival. The raw
files never leave the robot.

Examples:

  peerdata send cat.png dog.jpg --to 12D3KooWAbc...

  peerdata send frames/*.png --to 12D3KooWAbc... --label 3 --format json
"""


def send(
    images: Annotated[list[Path], typer.Argument(help="image files (PNG/JPEG) to offer")],
    to: Annotated[str, typer.Option("--to", help="receiver's peer ID (see `peerdata peers`)")],
    label: Annotated[
        int | None, typer.Option("--label", help="class label to attach to every image")
    ] = None,
    home: HomeOption = None,
    timeout_s: TimeoutOption = 60.0,
    fmt: Format = FORMAT_OPTION,
) -> None:
    """Offer image files to one peer (see `peerdata send --help`)."""
    paths = []
    for image in images:
        path = image.expanduser().resolve()
        if not path.is_file():
            raise DataError(f"{image}: no such image file")
        paths.append(str(path))
    args: dict[str, object] = {"paths": paths, "to": to}
    if label is not None:
        args["label"] = label
    if (result := ask(home, "send", args, timeout_s, fmt)) is None:
        return
    say(
        f"offered {result.get('offered', 0)} image(s) to {to}; "
        f"it wanted {result.get('wanted', 0)} (the rest it already had); "
        f"dropped by the privacy filter: {result.get('dropped_by_privacy', 0)}"
    )


def register(app: typer.Typer) -> None:
    app.command("send", help=HELP)(guarded(send))
