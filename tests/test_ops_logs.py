"""The daemon's log: JSON lines with the event's fields, and size-based rotation that keeps the
files under the configured size over 10,000 rounds of synthetic activity (the logger is driven
directly: no real rounds)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from peerdata.config import config_from_dict
from peerdata.errors import ConfigError
from peerdata.node.logs import configure_logging, event, level_of, remove_handlers

MAX_BYTES = 64 * 1024
BACKUPS = 2


@pytest.fixture
def logs(tmp_path: Path) -> Iterator[Path]:
    handlers = configure_logging(tmp_path, logging.INFO, max_bytes=MAX_BYTES, backups=BACKUPS)
    handlers[0].setLevel(logging.CRITICAL)  # keep stderr quiet; the file is under test
    try:
        yield tmp_path
    finally:
        remove_handlers(handlers)


def test_one_json_object_per_event_with_its_fields(logs: Path) -> None:
    log = logging.getLogger("peerdata.node.test")
    event(log, logging.INFO, "round_started", round_id=7, peer="12D3KooWpeer",
          cid=b"\x01\x02", note='quote " and\nnewline', skipped=None)
    event(log, logging.DEBUG, "too_quiet", round_id=8)  # below the level: not written
    logging.getLogger("peerdata.other").warning("free text %s", "here")
    lines = (logs / "node.log").read_text().splitlines()
    first, second = (json.loads(x) for x in lines)
    assert len(lines) == 2
    assert first["event"] == "round_started" and first["level"] == "info"
    assert (first["round_id"], first["peer"], first["cid"]) == (7, "12D3KooWpeer", "0102")
    assert first["note"] == 'quote " and\nnewline' and "skipped" not in first
    assert first["ts"].endswith("Z") and first["logger"] == "peerdata.node.test"
    assert second == {**second, "event": "message", "message": "free text here",
                      "level": "warning"}


def test_rotation_keeps_the_log_under_the_configured_size(logs: Path) -> None:
    log = logging.getLogger("peerdata.node.rounds")
    for rnd in range(1, 10_001):  # what a round logs: start, an arrival, a late vote, finish
        event(log, logging.INFO, "round_started", round_id=rnd, policy="gu", selected=10,
              shared=3, dropped_by_privacy=0, over_budget=0, peers=2)
        event(log, logging.INFO, "image_arrived", round_id=rnd, peer=f"12D3KooW{rnd:040d}",
              cid=f"{rnd:064x}", nbytes=1234 + rnd)
        event(log, logging.WARNING, "vote_late", round_id=rnd, peer="12D3KooWlate" * 3)
        event(log, logging.INFO, "round_finished", round_id=rnd, shared=3, feedback=3,
              recovered=0, mismatched=0, complete=True)
        if rnd % 1000 == 0:
            files = sorted(logs.glob("node.log*"))
            assert all(f.stat().st_size <= MAX_BYTES for f in files), files
    files = sorted(logs.glob("node.log*"))
    assert [f.name for f in files] == ["node.log", "node.log.1", "node.log.2"]
    assert all(f.stat().st_size <= MAX_BYTES for f in files)
    assert sum(f.stat().st_size for f in files) <= (BACKUPS + 1) * MAX_BYTES
    last = [json.loads(x) for x in (logs / "node.log").read_text().splitlines()]
    assert last[-1]["event"] == "round_finished" and last[-1]["round_id"] == 10_000


def test_log_settings_are_validated() -> None:
    assert config_from_dict({"log": {"level": "debug", "max_bytes": 8192}}).log.backups == 3
    with pytest.raises(ConfigError, match="log.level"):
        config_from_dict({"log": {"level": "loud"}})
    with pytest.raises(ConfigError, match="log.max_bytes"):
        config_from_dict({"log": {"max_bytes": 10}})
    with pytest.raises(ValueError, match="unknown log level"):
        level_of("chatty")
