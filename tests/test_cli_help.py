"""Every command's --help renders, teaches with an example, and wraps to the terminal."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from peerdata.cli import main

COMMANDS = ["init", "run", "status", "peers", "send", "swarm", "experiment", "federated",
            "rounds", "shared", "votes", "round now", "data list", "privacy check"]


def test_reflow_joins_wrapped_prose_and_keeps_examples() -> None:
    text = "First line\nof prose.\n\nExamples:\n\n  peerdata x --y\n  peerdata z\n\n- a\n- b"
    assert main.reflow(text) == (
        "First line of prose.\n\nExamples:\n\n  peerdata x --y\n  peerdata z\n\n- a\n- b"
    )


@pytest.mark.parametrize("command", COMMANDS)
def test_help_renders_with_an_example(command: str) -> None:
    main._register_all()
    result = CliRunner().invoke(main.app, [*command.split(), "--help"],
                                 env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.output
    assert "peerdata " + command.split()[0] in result.output  # an example invocation
