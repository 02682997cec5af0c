"""`peerdata dashboard`: a local, read-only web page of a running robot and what it shared."""

from __future__ import annotations

from typing import Annotated, Any

import trio
import typer

from peerdata.cli.init import HomeOption, resolve_home
from peerdata.cli.output import FORMAT_OPTION, Format, emit_json, guarded, say

HELP = """Serve a read-only dashboard of the robot at HOME on 127.0.0.1 until Ctrl-C.

It shows the peers and their state, rounds over time (images shared, votes, mean utility) and
an audit of everything that left the robot: each image exactly as sent (after the privacy
filter), to whom, when, with the filter's redaction counts. It reads the running daemon through
HOME/control.sock (exit 5 if none runs) and the sent bytes from HOME's store.

Only the owner can open it: the URL carries a fresh token, also written to
HOME/dashboard.token (mode 0600). Loopback only; no external assets.

Examples:

  peerdata dashboard --home ~/.peerdata            # prints http://127.0.0.1:PORT/?token=...

  peerdata dashboard --port 8377 --format json     # {"url": ...} on one line, then serves
"""


def dashboard(
    home: HomeOption = None,
    port: Annotated[int, typer.Option("--port", min=0, max=65535,
                                      help="port on 127.0.0.1 (0 = any free one)")] = 0,
    host: Annotated[str, typer.Option("--host", help="127.0.0.1 or ::1 (loopback only)")
                    ] = "127.0.0.1",
    fmt: Format = FORMAT_OPTION,
) -> None:
    """Serve the dashboard (see `peerdata dashboard --help`)."""
    from peerdata.control.client import call
    from peerdata.ops.dashboard import check_loopback, make_route, write_token
    from peerdata.ops.http import serve_http, url_of

    path = resolve_home(home)
    check_loopback(host)
    call(path, "status", timeout_s=10.0)  # a daemon must be running (ControlError: exit 5)
    token = write_token(path)

    def ask(cmd: str, args: dict[str, Any]) -> dict[str, Any]:
        return call(path, cmd, args, timeout_s=30.0)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            bound_host, bound_port = await nursery.start(serve_http, host, port,
                                                         make_route(path, token, ask))
            url = url_of(bound_host, bound_port, f"/?token={token}")
            if fmt is Format.json:
                emit_json({"url": url, "token_file": str(path / "dashboard.token")})
            else:
                say(f"dashboard: {url}  (Ctrl-C to stop)")

    try:
        trio.run(main)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


def register(app: typer.Typer) -> None:
    app.command("dashboard", help=HELP)(guarded(dashboard))


