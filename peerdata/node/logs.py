"""Structured logs: one event per record; JSON lines in `home/node.log`, `key=value` on stderr.

Rule: node code logs through `event()`, never with free text, so every record carries its event
name and fields (peer, round_id, cid, ...). `configure_logging` (called once by the daemon entry
point) writes them as one JSON object per line to `home/node.log`, rotated by size (the file
never grows past `max_bytes`; `backups` old files are kept), and as a readable `event=NAME k=v`
line to stderr (a terminal, or the journal under systemd). Records from other loggers (libp2p,
the privacy filter) become `{"event": "message", "message": ...}`.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import sys
import time
from pathlib import Path

FORMAT = "%(asctime)s level=%(levelname)s logger=%(name)s %(message)s"
MAX_FIELD_CHARS = 2000  # a field longer than this is cut, so one record stays small
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
          "error": logging.ERROR}
_EVENT = "peerdata_event"
_FIELDS = "peerdata_fields"


def _value(v: object) -> str:
    text = str(v)
    if text == "" or any(c.isspace() or c in '"=' for c in text):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


def event(logger: logging.Logger, level: int, name: str, /, **fields: object) -> None:
    """Log one structured event: `event=name k=v ...` (values quoted when they hold spaces,
    quotes or '='; None fields left out); the fields travel with the record for the JSON file."""
    if logger.isEnabledFor(level):
        kept = {k: v for k, v in fields.items() if v is not None}
        text = " ".join([f"event={name}", *(f"{k}={_value(v)}" for k, v in kept.items())])
        logger.log(level, "%s", text, extra={_EVENT: name, _FIELDS: kept})


def _json_value(v: object) -> object:
    if isinstance(v, bool | int | float) or v is None:
        return v
    if isinstance(v, bytes):
        v = v.hex()
    text = str(v)
    return text if len(text) <= MAX_FIELD_CHARS else text[:MAX_FIELD_CHARS] + "..."


class JsonLineFormatter(logging.Formatter):
    """One JSON object per record: ts (UTC, ISO 8601), level, logger, event, then the fields."""

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        obj: dict[str, object] = {"ts": f"{ts}.{int(record.msecs):03d}Z",
                                  "level": record.levelname.lower(), "logger": record.name}
        name = getattr(record, _EVENT, None)
        if name is None:
            obj["event"] = "message"
            obj["message"] = _json_value(record.getMessage())
        else:
            obj["event"] = name
            for k, v in getattr(record, _FIELDS, {}).items():
                if k not in obj:
                    obj[k] = _json_value(v)
        if record.exc_info:
            obj["exception"] = _json_value(self.formatException(record.exc_info))
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def level_of(name: str) -> int:
    """The logging level for a config/CLI name (debug|info|warning|error).

    Raises:
        ValueError: an unknown name.
    """
    try:
        return LEVELS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown log level {name!r} (one of {', '.join(LEVELS)})") from None


def configure_logging(home: Path | None, level: int = logging.INFO, *,
                      max_bytes: int = 10 * 1024 * 1024, backups: int = 3
                      ) -> list[logging.Handler]:
    """Attach stderr (key=value) and, if `home`, `home/node.log` (JSON lines) handlers to the
    `peerdata` logger.

    Returns the handlers so the caller can remove them on shutdown.
    """
    root = logging.getLogger("peerdata")
    root.setLevel(level)
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(logging.Formatter(FORMAT))
    handlers: list[logging.Handler] = [stderr]
    if home is not None:
        try:  # JSON lines, rotated before the file would pass `max_bytes`
            file = logging.handlers.RotatingFileHandler(
                home / "node.log", maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
            file.setFormatter(JsonLineFormatter())
            handlers.append(file)
        except OSError:
            pass  # an unusable home is reported by check_home, with a proper exit code
    for h in handlers:
        root.addHandler(h)
    return handlers


def set_level(level: int) -> None:
    """Change the `peerdata` logger's level (a config reload)."""
    logging.getLogger("peerdata").setLevel(level)


def remove_handlers(handlers: list[logging.Handler]) -> None:
    """Detach and close handlers returned by `configure_logging`."""
    root = logging.getLogger("peerdata")
    for h in handlers:
        root.removeHandler(h)
        h.close()
