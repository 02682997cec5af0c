"""`peerdata run`: the daemon in the foreground until SIGINT/SIGTERM."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated

import trio
import typer

from peerdata.cli.init import HomeOption, resolve_home
from peerdata.cli.output import guarded
from peerdata.config import LogConfig
from peerdata.node.logs import configure_logging, level_of, remove_handlers

HELP = """Run the node of HOME in the foreground until SIGINT/SIGTERM.

It listens, dials its bootstrap peers (retrying with back-off), answers offers and fetches,
and serves HOME/control.sock for `status`, `peers` and `send`. Logs go to stderr (one
`event=... key=value` line each) and HOME/node.log (one JSON object per line, rotated by size:
[log] in config.toml). SIGHUP re-reads config.toml and applies what is safe to change live
(the log level); it logs which other changes need a restart.

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
        str | None, typer.Option("--log-level", help="debug|info|warning|error (default: "
                                 "[log] level of config.toml, else info)")
    ] = None,
) -> None:
    """Run a node in the foreground (see `peerdata run --help`)."""
    from peerdata.control.daemon import run_daemon

    path = resolve_home(home)
    log = log_settings(path)
    try:
        level = level_of(log_level or log.level)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--log-level") from None
    handlers = configure_logging(path if path.is_dir() else None, level,
                                 max_bytes=log.max_bytes, backups=log.backups)
    try:
        code = trio.run(functools.partial(run_daemon, path, ready_fd=ready_fd))
    finally:
        remove_handlers(handlers)
    raise typer.Exit(code)


def log_settings(home: Path) -> LogConfig:
    """The [log] section of HOME/config.toml; the defaults when it cannot be read (the daemon
    then refuses the home with its proper exit code)."""
    from peerdata.config import load_config
    from peerdata.errors import ConfigError
    from peerdata.node.home import CONFIG_FILE

    try:
        return load_config(home / CONFIG_FILE).log
    except ConfigError:
        return LogConfig()


def register(app: typer.Typer) -> None:
    app.command("run", help=HELP)(guarded(run))


def main() -> None:
    """`peerdata run` alone, without importing the other commands (the swarm launcher's
    daemons use it: the same code path, about 35 MB less per process)."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    register(app)
    app()
