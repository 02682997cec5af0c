"""Stable exit codes for the CLI and the daemon (documented in docs/cli.md)."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    FAILURE = 1  # an unexpected error; the message says what
    USAGE = 2  # bad command-line arguments (click's own code)
    CONFIG = 3  # invalid config, home, key or scenario
    DATA = 4  # missing or malformed dataset / image input
    UNREACHABLE = 5  # the daemon or a peer could not be reached
    INTERRUPTED = 130  # stopped by SIGINT / Ctrl-C
