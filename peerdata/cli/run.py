"""`peerdata run`: the daemon in the foreground until SIGINT/SIGTERM."""

from __future__ import annotations

import contextlib
import functools
import logging
from typing import Annotated

import trio
import typer

from peerdata.cli.init import HomeOption, resolve_home
from peerdata.cli.output import guarded
from peerdata.node.logs import configure_logging, remove_handlers

HELP = """Run the node of HOME in the foreground until SIGINT/SIGTERM.

It listens, dials its bootstrap peers (retrying with back-off), answers offers and fetches,
and serves HOME/control.sock for `status`, `peers` and `send`. Logs go to stderr and
HOME/node.log, one `event=... key=value` line each.

SIGTERM stops it gracefully (exit 0); SIGINT / Ctrl-C too (exit 130).

Examples:

  peerdata run --home ~/.peerdata

  peerdata run --home /tmp/r1 --ready-fd 3 3>ready.json   # one JSON line when ready
"""

_READY_HELP = ("write one JSON line {peer_id, listen_addrs, control, pid} to this file "
               "descriptor once ready, then close it")


def run(
    home: HomeOption = None,
    ready_fd: Annotated[int | None, typer.Option("--ready-fd", help=_READY_HELP)] = None,
    log_level: Annotated[
        str, typer.Option("--log-level", help="debug|info|warning|error")
    ] = "info",
) -> None:
    """Run a node in the foreground (see `peerdata run --help`)."""
    from peerdata.control.daemon import run_daemon

    level = getattr(logging, log_level.upper(), None)
    if not isinstance(level, int):
        raise typer.BadParameter(f"unknown log level {log_level!r}", param_hint="--log-level")
    path = resolve_home(home)
    # A log file that cannot be written (disk full, read-only home) must not print a
    # traceback per line: the store's own error says what is wrong, with exit code 6.
    logging.raiseExceptions = False
    handlers = configure_logging(path if path.is_dir() else None, level)
    try:
        code = trio.run(functools.partial(run_daemon, path, ready_fd=ready_fd))
    finally:
        with contextlib.suppress(OSError):  # disk full: closing the log file fails as well
            remove_handlers(handlers)
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.command("run", help=HELP)(guarded(run))


def main() -> None:
    """`peerdata run` alone, without importing the other commands (the swarm launcher's
    daemons use it: the same code path, about 35 MB less per process)."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    register(app)
    app()
