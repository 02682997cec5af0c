"""Rendering for every command: `--format text` for people, `--format json` for scripts."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from peerdata.errors import (
    ConfigError,
    ControlError,
    DataError,
    IdentityError,
    PeerdataError,
    StoreError,
    TransportError,
)
from peerdata.exit_codes import ExitCode


class Format(StrEnum):
    text = "text"
    json = "json"


FORMAT_OPTION = typer.Option(
    Format.text, "--format", "-f", help="text for people, json for scripts"
)

console = Console()
err_console = Console(stderr=True)


def emit_json(obj: Any) -> None:
    """Print one JSON object on one line (the last stdout line is what scripts parse)."""
    sys.stdout.write(json.dumps(obj, sort_keys=True, default=str) + "\n")
    sys.stdout.flush()


def say(message: str | Text, *, err: bool = False) -> None:
    """Print a one-line message, never wrapped at the terminal width.

    Scripts grep these lines and users paste them, so a path or a sentence must stay on one line
    whatever `COLUMNS` says; only tables are laid out to the terminal's width. Plain strings are
    printed literally (no rich markup), so brackets in paths and peer messages are safe.
    """
    text = message if isinstance(message, Text) else Text(message)
    (err_console if err else console).print(text, soft_wrap=True, highlight=False)


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print a rich table to stdout."""
    t = Table(title=title)
    for c in columns:
        t.add_column(c)
    for row in rows:
        t.add_row(*("" if v is None else str(v) for v in row))
    console.print(t)


_CODES: list[tuple[type[PeerdataError], ExitCode]] = [
    (ConfigError, ExitCode.CONFIG),
    (IdentityError, ExitCode.CONFIG),
    (DataError, ExitCode.DATA),
    (ControlError, ExitCode.UNREACHABLE),
    (TransportError, ExitCode.UNREACHABLE),
    (StoreError, ExitCode.STORAGE),
]


def fail(exc: PeerdataError) -> NoReturn:
    """Print a one-line error and exit with the code its type maps to."""
    code = next((c for t, c in _CODES if isinstance(exc, t)), ExitCode.FAILURE)
    say(Text.assemble(("error: ", "bold red"), str(exc)), err=True)
    raise typer.Exit(int(code))


def guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator: turn PeerdataError into a clean message and a stable exit code."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except PeerdataError as exc:
            fail(exc)
        except KeyboardInterrupt:
            say("interrupted", err=True)
            raise typer.Exit(int(ExitCode.INTERRUPTED)) from None

    return wrapper
