"""Shared fixtures: where the real datasets and models are, if this machine has them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def _env_dir(name: str) -> Path | None:
    value = os.environ.get(name)
    if not value:
        return None
    path = Path(value)
    return path if path.is_dir() else None


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real datasets (PEERDATA_DATA_DIR); skips the test when they are not on this machine."""
    path = _env_dir("PEERDATA_DATA_DIR")
    if path is None:
        pytest.skip(
            "real datasets not present: set PEERDATA_DATA_DIR "
            "(scripts/test does when ../shared/data exists)"
        )
    return path


@pytest.fixture(scope="session")
def models_dir() -> Path:
    """Pre-trained model files (PEERDATA_MODELS_DIR); skips the test when absent."""
    path = _env_dir("PEERDATA_MODELS_DIR")
    if path is None:
        pytest.skip(
            "model files not present: set PEERDATA_MODELS_DIR "
            "(scripts/test does when ../shared/models exists)"
        )
    return path


@pytest.fixture(autouse=True)
def _plain_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pin what a user's shell would otherwise vary: terminal type, colour and locale.

    `COLUMNS` is left as the shell has it on purpose: `.ci/run` runs the CLI tests with it unset
    and at 40 columns, so a message that wraps with the terminal's width fails there.
    """
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    monkeypatch.setenv("LANG", "C.UTF-8")
