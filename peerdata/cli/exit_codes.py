"""The CLI's name for the stable exit codes (defined below the CLI: the daemon uses them too)."""

from peerdata.exit_codes import ExitCode

__all__ = ["ExitCode"]
