"""Entry point: builds the typer app from one module per command."""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="peerdata",
    help=(
        "Private, selective, peer-to-peer data sharing between robots.\n\n"
        "Start with `peerdata init --home DIR`, then `peerdata run --home DIR`. "
        "Inspect a running node with `status`, `peers`, `rounds`, `shared`, `votes`. "
        "Try a local fleet with `peerdata swarm`, or the paper's experiment with "
        "`peerdata experiment`."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Each module exposes `register(app)`; the order here is the order in `--help`.
_COMMAND_MODULES: list[str] = [
    "init", "run", "status", "peers", "send", "swarm", "experiment", "data", "privacy",
    "federated", "round", "rounds", "shared", "votes",
]


def _register_all() -> None:
    for name in _COMMAND_MODULES:
        importlib.import_module(f"peerdata.cli.{name}").register(app)


def main() -> None:
    _register_all()
    app()
