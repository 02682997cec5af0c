"""`peerdata init`: create a node home (key, config). Never overwrites an existing key."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text

from peerdata.cli.output import FORMAT_OPTION, Format, emit_json, guarded, say
from peerdata.control.client import call
from peerdata.node.home import default_home, init_home

HELP = """Create a node home: a private key and a commented config.toml.

The key is HOME/node.key (mode 0600); the home directory is created with mode 0700.

Re-running on an existing home keeps its key and config: the peer ID never changes.

Examples:

  peerdata init --home ~/.peerdata --name robot-1

  peerdata init --home /tmp/r2 --listen /ip4/0.0.0.0/tcp/4001 \\
      --bootstrap /ip4/10.0.0.5/tcp/4001/p2p/12D3KooW...
"""


def resolve_home(home: Path | None) -> Path:
    """`--home`, else $PEERDATA_HOME, else ~/.peerdata."""
    return home.expanduser() if home is not None else default_home(dict(os.environ))


def ask(home: Path | None, cmd: str, args: dict[str, Any] | None, timeout_s: float,
        fmt: Format) -> dict[str, Any] | None:
    """The running daemon's answer to `cmd`; under `--format json` it is printed and None is
    returned (the caller renders the text form of what it gets)."""
    result = call(resolve_home(home), cmd, args, timeout_s=timeout_s)
    if fmt is Format.json:
        emit_json(result)
        return None
    return result


LOOPBACK_ANY_PORT = "/ip4/127.0.0.1/tcp/0"
HOME_HELP = "node home directory [default: $PEERDATA_HOME or ~/.peerdata]"
HomeOption = Annotated[
    Path | None, typer.Option("--home", help=HOME_HELP, show_default=False)
]
TimeoutOption = Annotated[
    float, typer.Option("--timeout", help="seconds to wait for the daemon's answer")
]
_LISTEN_HELP = "multiaddr to listen on (repeatable) [default: /ip4/127.0.0.1/tcp/0]"
_BOOTSTRAP_HELP = "peer multiaddr ending in /p2p/ID to dial at start (repeatable)"


def init(
    home: HomeOption = None,
    name: Annotated[str, typer.Option("--name", help="name shown to peers")] = "robot",
    listen: Annotated[list[str] | None, typer.Option("--listen", help=_LISTEN_HELP)] = None,
    bootstrap: Annotated[
        list[str] | None, typer.Option("--bootstrap", help=_BOOTSTRAP_HELP)
    ] = None,
    fmt: Format = FORMAT_OPTION,
) -> None:
    """Create a node home (see `peerdata init --help` for examples)."""
    result = init_home(resolve_home(home), name, tuple(listen or [LOOPBACK_ANY_PORT]),
                       tuple(bootstrap or []))
    if fmt is Format.json:
        emit_json({"home": str(result.home), "peer_id": result.peer_id,
                   "created_key": result.created_key, "created_config": result.created_config})
        return
    verb = "created" if result.created_key else "kept existing"
    say(Text.assemble(f"{verb} key for ", (result.peer_id, "bold"), f" in {result.home}"))
    if not result.created_config:
        say("config.toml already present; left unchanged")
    say(f"next: peerdata run --home {result.home}")


def register(app: typer.Typer) -> None:
    app.command("init", help=HELP)(guarded(init))
