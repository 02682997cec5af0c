"""Entry point: builds the typer app from one module per command."""

from __future__ import annotations

import importlib
import inspect

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
    "federated", "round", "rounds", "shared", "votes", "doctor", "dashboard",
]


def reflow(text: str) -> str:
    """Join hard-wrapped lines of each paragraph so the terminal, not the source, wraps them.

    Paragraphs are separated by blank lines; a paragraph with an indented line (an example
    command, a list) is kept as written.
    """
    paragraphs = text.strip("\n").split("\n\n")
    out = []
    for para in paragraphs:
        lines = para.split("\n")
        if any(line[:1].isspace() or line.startswith(("-", "*")) for line in lines):
            out.append(para)
        else:
            out.append(" ".join(line.strip() for line in lines))
    return "\n\n".join(out)


def _reflow_help(typer_app: typer.Typer) -> None:
    for command in typer_app.registered_commands:
        text = command.help or (command.callback and inspect.getdoc(command.callback))
        if text:
            command.help = reflow(text)
    for group in typer_app.registered_groups:
        if group.help:
            group.help = reflow(group.help)
        if group.typer_instance is not None:
            _reflow_help(group.typer_instance)


def _register_all() -> None:
    if app.registered_commands:  # already built (tests call main() more than once)
        return
    for name in _COMMAND_MODULES:
        importlib.import_module(f"peerdata.cli.{name}").register(app)
    _reflow_help(app)


def main() -> None:
    _register_all()
    app()
