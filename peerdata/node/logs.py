"""Structured logs: one line per event, `event=NAME key=value ...`, peer ID where remote.

Rule: node code logs through `event()`, never with free text, so a line can be grepped and
parsed; `configure_logging` (called once by the daemon entry point) sends the lines to stderr
and to `home/node.log`.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

FORMAT = "%(asctime)s level=%(levelname)s logger=%(name)s %(message)s"


def _value(v: object) -> str:
    text = str(v)
    if text == "" or any(c.isspace() or c in '"=' for c in text):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


def format_event(name: str, /, **fields: object) -> str:
    """`event=name k=v ...` with values quoted when they hold spaces, quotes or '='."""
    parts = [f"event={name}"]
    parts += [f"{k}={_value(v)}" for k, v in fields.items() if v is not None]
    return " ".join(parts)


def event(logger: logging.Logger, level: int, name: str, /, **fields: object) -> None:
    """Log one structured event line."""
    if logger.isEnabledFor(level):
        logger.log(level, "%s", format_event(name, **fields))


def configure_logging(home: Path | None, level: int = logging.INFO) -> list[logging.Handler]:
    """Attach stderr and (if `home`) `home/node.log` handlers to the `peerdata` logger.

    Returns the handlers so the caller can remove them on shutdown.
    """
    root = logging.getLogger("peerdata")
    root.setLevel(level)
    formatter = logging.Formatter(FORMAT)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if home is not None:
        try:
            handlers.append(logging.FileHandler(home / "node.log", encoding="utf-8"))
        except OSError:
            pass  # an unusable home is reported by check_home, with a proper exit code
    for h in handlers:
        h.setFormatter(formatter)
        root.addHandler(h)
    return handlers


def remove_handlers(handlers: list[logging.Handler]) -> None:
    """Detach and close handlers returned by `configure_logging`."""
    root = logging.getLogger("peerdata")
    for h in handlers:
        root.removeHandler(h)
        h.close()
