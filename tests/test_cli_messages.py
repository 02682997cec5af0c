"""One-line CLI messages stay on one line whatever the terminal width."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from peerdata.cli.main import app
from peerdata.exit_codes import ExitCode


@pytest.mark.parametrize("columns", ["20", "40", "80"])
def test_error_message_is_not_wrapped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      columns: str) -> None:
    monkeypatch.setenv("COLUMNS", columns)
    deep = tmp_path / "a-rather-long-directory-name" / "and-another-one" / "nope.png"
    result = CliRunner().invoke(app, ["send", str(deep), "--to", "12D3KooWx",
                                      "--home", str(tmp_path)])
    assert result.exit_code == ExitCode.DATA
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == [f"error: {deep}: no such image file"]


def test_message_with_brackets_is_printed_literally(tmp_path: Path) -> None:
    odd = tmp_path / "[bold]x[/]" / "nope.png"
    result = CliRunner().invoke(app, ["send", str(odd), "--to", "12D3KooWx",
                                      "--home", str(tmp_path)])
    assert result.exit_code == ExitCode.DATA
    assert f"error: {odd}: no such image file" in result.output
