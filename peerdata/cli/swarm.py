"""`peerdata swarm`: a local fleet of real daemons on 127.0.0.1 that share images all-to-all."""

from __future__ import annotations

import signal
import tempfile
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from peerdata.cli.exit_codes import ExitCode
from peerdata.cli.output import FORMAT_OPTION, Format, console, emit_json, guarded, table

HELP = """Run a local fleet of N real daemons that share images all-to-all.

Starts N `peerdata run` daemons on 127.0.0.1, a home each under --out. They find each other
through robot 0 (the bootstrap); every robot offers a few generated PNG images to every other;
the command waits until each arrived verified, prints a per-robot table, and stops them all
(SIGTERM, then SIGKILL after a timeout), also on Ctrl-C or SIGTERM.

Exit code 0 when every robot received and verified every image, 1 otherwise.

Examples:

  peerdata swarm --robots 3

  peerdata swarm --robots 5 --rounds 2 --images 4 --out /tmp/fleet --format json
"""


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def swarm(
    robots: Annotated[
        int, typer.Option("--robots", "-n", min=1, max=64, help="how many daemons")
    ] = 3,
    rounds: Annotated[
        int, typer.Option("--rounds", min=1, help="sharing rounds (fresh images each)")
    ] = 1,
    images: Annotated[
        int, typer.Option("--images", min=1, help="images per robot pair and round")
    ] = 2,
    out: Annotated[Path | None, typer.Option(
        "--out", help="where homes and images go [default: a new temp dir]", show_default=False
    )] = None,
    timeout_s: Annotated[
        float, typer.Option("--timeout", help="seconds allowed for each wait")
    ] = 60.0,
    fmt: Format = FORMAT_OPTION,
) -> None:
    """Run a local swarm (see `peerdata swarm --help`)."""
    from peerdata.testing.swarm import run_swarm

    out_dir = out if out is not None else Path(tempfile.mkdtemp(prefix="peerdata-swarm-"))
    # SIGTERM must stop the fleet too: turn it into the same unwinding as Ctrl-C.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        report = run_swarm(robots, out_dir, rounds=rounds, images_per_pair=images,
                           timeout_s=timeout_s)
    finally:
        signal.signal(signal.SIGTERM, previous)
    if fmt is Format.json:
        emit_json(report.to_json())
    else:
        table(
            f"swarm of {robots} in {out_dir} ({report.expected_per_robot} images expected each)",
            ["robot", "peer ID", "peers", "sent", "received", "verified", "rejected",
             "bytes sent", "bytes received"],
            [(r.index, r.peer_id, r.peers, r.images_sent, r.images_received,
              r.images_verified, r.images_rejected, r.bytes_sent, r.bytes_received)
             for r in report.robots],
        )
        for note in report.notes:
            console.print(f"note: {note}", highlight=False)
        console.print("ok" if report.ok else "FAILED: not every image arrived verified")
    if not report.ok:
        raise typer.Exit(int(ExitCode.FAILURE))


def register(app: typer.Typer) -> None:
    app.command("swarm", help=HELP)(guarded(swarm))
