"""`peerdata doctor`: check a robot's home, key, config, disk, detector models, peers, clock."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.text import Text

from peerdata.cli.init import HomeOption, resolve_home
from peerdata.cli.output import FORMAT_OPTION, Format, emit_json, guarded, say
from peerdata.ops.doctor import CONNECT_TIMEOUT_S, MIN_FREE_BYTES, report, run_checks

HELP = """Check that HOME is ready to run a robot, and say what to fix.

Checks: home and key permissions (owner only), config.toml validity, free disk space, the
privacy filter's detector models (they load; YuNet matches its sha256), TCP reachability of
each bootstrap peer, and, when the daemon runs, the clock skew of peers (from their signed
messages). Warnings (`warn`) do not fail; the exit code is that of the first failed check:
3 config, 20 home permissions, 21 key permissions, 22 key missing/corrupt, 23 disk full,
24 detector model corrupt, 25 peer unreachable, 26 clock skew (docs/cli.md).

Examples:

  peerdata doctor --home ~/.peerdata

  peerdata doctor --format json | tail -1 | jq '.checks[] | select(.status != "ok")'

  peerdata doctor --min-free-bytes 10000000000   # fail below 10 GB free
"""

_MARK = {"ok": ("ok  ", "green"), "warn": ("warn", "yellow"), "fail": ("FAIL", "bold red")}


def doctor(
    home: HomeOption = None,
    min_free_bytes: Annotated[int, typer.Option(
        "--min-free-bytes", min=0, help="fail when the home's file system has less free")
    ] = MIN_FREE_BYTES,
    peer_timeout_s: Annotated[float, typer.Option(
        "--peer-timeout", min=0.1, help="seconds to wait for each bootstrap peer's TCP port")
    ] = CONNECT_TIMEOUT_S,
    fmt: Format = FORMAT_OPTION,
) -> None:
    """Check a robot's home (see `peerdata doctor --help`)."""
    checks = run_checks(resolve_home(home), min_free_bytes=min_free_bytes,
                        peer_timeout_s=peer_timeout_s)
    result = report(checks)
    if fmt is Format.json:
        emit_json(result)
    else:
        for c in checks:
            say(Text.assemble(_MARK[c.status], f"  {c.name:<7} {c.message}"))
        say(f"{result['failed']} failed, {result['warnings']} warning(s); "
            f"exit {result['exit_code']}")
    raise typer.Exit(result["exit_code"])


def register(app: typer.Typer) -> None:
    app.command("doctor", help=HELP)(guarded(doctor))
