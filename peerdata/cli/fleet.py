"""`peerdata fleet`: the fleet authority admits robots and revokes them (docs/trust.md)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from peerdata.cli.output import FORMAT_OPTION, Format, emit_json, guarded, say
from peerdata.errors import ConfigError, ControlError

HELP = """Run the fleet authority: the key that decides which robots belong to the fleet.

Keep the authority directory off the robots (an operator's machine). A robot with
`trust.membership = "fleet"` talks only to peers that show a certificate from this
authority, not expired and not revoked; revocations spread to the whole fleet by gossip.

Examples:

  peerdata fleet init --authority ~/fleet-authority

  peerdata fleet admit 12D3KooWAbc... --authority ~/fleet-authority --home /robots/r1

  peerdata fleet revoke 12D3KooWAbc... --authority ~/fleet-authority --home /robots/r2
"""

INIT_HELP = """Create the fleet authority key in DIR (kept if it exists) and print its peer ID.

--psk also creates DIR/swarm.key, a pre-shared key that `fleet admit --home` installs on each
robot: connections from anyone without it fail before Noise starts (libp2p private network;
py-libp2p peers only, see docs/trust.md).

Examples:

  peerdata fleet init --authority ~/fleet-authority

  peerdata fleet init --authority ~/fleet-authority --psk --format json | jq -r .authority
"""

ADMIT_HELP = """Sign a membership certificate for each PEER_ID (valid --days days).

With --home (the robot's home, one PEER_ID), the certificate goes to HOME/fleet.cert and
HOME/config.toml is switched to fleet mode under this authority; restart the robot. Without
--home it is written to --out (default PEER_ID.cert in the current directory), to copy there.

Examples:

  peerdata fleet admit 12D3KooWAbc... --authority ~/fleet-authority --home /robots/r1

  peerdata fleet admit 12D3KooWAbc... 12D3KooWXyz... --authority ~/fa --days 30 --out certs/
"""

REVOKE_HELP = """Revoke each PEER_ID: sign the next revocation list and hand it to robots.

Each --home gets HOME/fleet.revocations; a daemon running there adopts it at once and gossips
it to the fleet, which drops the revoked robots' links. A robot that was offline learns it
from the next re-publish (every 60 s) or its own file at start.

Examples:

  peerdata fleet revoke 12D3KooWAbc... --authority ~/fleet-authority --home /robots/r2

  peerdata fleet revoke 12D3KooWAbc... --authority ~/fa --format json
"""

fleet_app = typer.Typer(help="Admit robots to the fleet and revoke them.",
                        no_args_is_help=True)
AuthorityOption = Annotated[Path, typer.Option("--authority", help="fleet authority directory")]


def init(authority: AuthorityOption,
         psk: Annotated[bool, typer.Option("--psk", help="also create a pre-shared swarm key")]
         = False,
         fmt: Format = FORMAT_OPTION) -> None:
    """Create the fleet authority (see `peerdata fleet init --help`)."""
    import secrets

    from peerdata.fleet import init_authority, load_swarm_key, write_swarm_key

    directory = authority.expanduser()
    identity = init_authority(directory)
    if psk and load_swarm_key(directory) is None:
        write_swarm_key(directory, secrets.token_hex(32))
    has_psk = load_swarm_key(directory) is not None
    if fmt is Format.json:
        emit_json({"authority": identity.peer_id, "directory": str(authority),
                   "swarm_key": has_psk})
        return
    say(f"fleet authority {identity.peer_id} in {authority}"
        + (" (with swarm.key)" if has_psk else ""))
    say(f"next: peerdata fleet admit ROBOT_PEER_ID --authority {authority} --home ROBOT_HOME")


def admit(
    peer_ids: Annotated[list[str], typer.Argument(help="robot peer IDs (peerdata status)")],
    authority: AuthorityOption,
    days: Annotated[float, typer.Option("--days", help="validity in days")] = 365.0,
    home: Annotated[Path | None, typer.Option(
        "--home", help="the robot's home: install the certificate and switch it to fleet "
                       "mode")] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", help="file (one robot) or directory for the certificate(s)")] = None,
    fmt: Format = FORMAT_OPTION,
) -> None:
    """Admit robots (see `peerdata fleet admit --help`)."""
    from peerdata.fleet import (
        CERT_FILE,
        issue_certificate,
        join_fleet_config,
        load_authority,
        load_swarm_key,
        write_message,
        write_swarm_key,
    )
    from peerdata.node.home import CONFIG_FILE

    if home is not None and len(peer_ids) != 1:
        raise ConfigError("--home takes exactly one PEER_ID")
    key = load_authority(authority.expanduser())
    now = time.time()
    results: list[dict[str, Any]] = []
    for peer in peer_ids:
        cert = issue_certificate(key, peer, now, days)
        if home is not None:
            path = home.expanduser() / CERT_FILE
            write_message(path, cert)
            switched = join_fleet_config(home.expanduser() / CONFIG_FILE, key.peer_id)
            swarm_key = load_swarm_key(authority.expanduser())
            if swarm_key is not None:
                write_swarm_key(home.expanduser(), swarm_key)
        else:
            target = out.expanduser() if out else Path(f"{peer}.cert")
            path = target / f"{peer}.cert" if target.is_dir() else target
            write_message(path, cert)
            switched = False
        results.append({"peer_id": peer, "certificate": str(path),
                        "expires_at": cert.expires_at, "config_switched": switched})
    if fmt is Format.json:
        emit_json({"authority": key.peer_id, "admitted": results})
        return
    for r in results:
        say(f"admitted {r['peer_id']} until {time.ctime(r['expires_at'])}: {r['certificate']}")
        if home is not None and not r["config_switched"]:
            say(f'edit {home}/config.toml: [trust] membership = "fleet", '
                f'fleet_authority = "{key.peer_id}"')


def revoke(
    peer_ids: Annotated[list[str], typer.Argument(help="robot peer IDs to revoke")],
    authority: AuthorityOption,
    homes: Annotated[list[Path] | None, typer.Option(
        "--home", help="robot home to hand the list to (repeatable)")] = None,
    fmt: Format = FORMAT_OPTION,
) -> None:
    """Revoke robots (see `peerdata fleet revoke --help`)."""
    from peerdata.control.client import call
    from peerdata.fleet import REVOCATIONS_FILE, load_authority, write_message
    from peerdata.fleet import revoke as sign_next
    from peerdata.wire.codec import encode

    directory = authority.expanduser()
    rl = sign_next(directory, load_authority(directory), tuple(peer_ids), time.time())
    delivered = []
    for home in homes or []:
        home = home.expanduser()
        write_message(home / REVOCATIONS_FILE, rl)
        try:
            call(home, "fleet_revocations", {"hex": encode(rl).hex()}, timeout_s=10.0)
            live = True
        except ControlError:
            live = False  # not running: it reads the file at start
        delivered.append({"home": str(home), "daemon_running": live})
    if fmt is Format.json:
        emit_json({"serial": rl.serial, "revoked": list(rl.revoked), "homes": delivered})
        return
    say(f"revocation list {rl.serial}: {len(rl.revoked)} revoked ({', '.join(peer_ids)} added)")
    for d in delivered:
        state = "adopted and gossiped" if d["daemon_running"] else "saved for its next start"
        say(f"  {d['home']}: {state}")


def register(app: typer.Typer) -> None:
    fleet_app.command("init", help=INIT_HELP)(guarded(init))
    fleet_app.command("admit", help=ADMIT_HELP)(guarded(admit))
    fleet_app.command("revoke", help=REVOKE_HELP)(guarded(revoke))
    app.add_typer(fleet_app, name="fleet", help=HELP)
