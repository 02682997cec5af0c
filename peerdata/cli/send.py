"""`peerdata send`: offer local image files to one peer through the running daemon."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from peerdata.cli.init import HomeOption, TimeoutOption, resolve_home
from peerdata.cli.output import FORMAT_OPTION, Format, emit_json, guarded, say
from peerdata.control.client import call
from peerdata.errors import DataError

HELP = """Offer image files to one peer through the running daemon.

The daemon stores each image, offers its content ID, and the peer fetches only the images it
lacks, verifying each one's SHA-256 on arrival.

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
    result = call(resolve_home(home), "send", args, timeout_s=timeout_s)
    if fmt is Format.json:
        emit_json(result)
        return
    say(
        f"offered {result.get('offered', 0)} image(s) to {to}; "
        f"it wanted {result.get('wanted', 0)} (the rest it already had)",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    app.command("send", help=HELP)(guarded(send))
