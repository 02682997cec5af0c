"""The local dashboard: peers, rounds over time, and an audit of everything that left the robot.

Rule: read-only and local. It binds loopback only, answers GET only, and every request must carry
the owner's token (HOME/dashboard.token, mode 0600, made afresh per start), compared in constant
time. It reads the daemon through its control socket (status, peers, rounds, shared) and the
bytes that were sent from the blob store, verified against their content ID; the redaction
counts come from the store's `redactions.CID` records. The page is rendered on the server: no
external assets, no script but one inline (nonce) line, and a CSP that allows only this origin.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import secrets
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import trio

from peerdata.errors import ConfigError, PeerdataError
from peerdata.files import replace_file
from peerdata.node.transfer import media_type_of
from peerdata.ops.http import Reply

TOKEN_FILE = "dashboard.token"
LOOPBACK = ("127.0.0.1", "::1", "localhost")
MAX_AUDIT = 500  # most recent images shown


def write_token(home: Path) -> str:
    """A fresh random token in HOME/dashboard.token (0600, replaced atomically)."""
    token = secrets.token_urlsafe(24)
    replace_file(home / TOKEN_FILE, f"{token}\n".encode())
    return token


def check_loopback(host: str) -> None:
    """Raise ConfigError unless `host` is a loopback address (the dashboard is local only)."""
    if host not in LOOPBACK:
        raise ConfigError(f"the dashboard serves loopback only (127.0.0.1 or ::1), not {host}")


def redactions(home: Path) -> dict[str, dict[str, int]]:
    """cid hex -> {"blur": n, "keep": n}, read from the store (read-only)."""
    db = home / "store.sqlite"
    if not db.exists():
        return {}
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        rows = conn.execute("SELECT key, value FROM meta WHERE key LIKE 'redactions.%'")
        return {k.split(".", 1)[1]: json.loads(v) for k, v in rows}
    finally:
        conn.close()


def sent_bytes(home: Path, cid_hex: str) -> bytes | None:
    """The bytes of blob `cid_hex` if present and matching its content ID."""
    if len(cid_hex) != 64 or any(c not in "0123456789abcdef" for c in cid_hex):
        return None
    path = home / "blobs" / cid_hex[:2] / cid_hex
    try:
        data = path.read_bytes()
    except OSError:
        return None
    return data if hashlib.sha256(data).hexdigest() == cid_hex else None


def _esc(v: object) -> str:
    return html.escape("" if v is None else str(v))


def _when(t: float | None) -> str:
    return "" if t is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def _plot(title: str, points: list[tuple[float, float]], cls: str) -> str:
    """An inline SVG line plot of (x, y) points."""
    w, h, pad = 360, 140, 28
    if not points:
        return (f'<figure class="{cls}"><figcaption>{_esc(title)}</figcaption>'
                '<p>no data</p></figure>')
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = min(0.0, min(ys)), max(ys) if max(ys) > min(0.0, min(ys)) else 1.0
    def sx(x: float) -> float:
        return pad + (x - x0) / (x1 - x0) * (w - 2 * pad)
    def sy(y: float) -> float:
        return h - pad - (y - y0) / (y1 - y0) * (h - 2 * pad)
    path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in points)
    dots = "".join(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5"/>' for x, y in points)
    return (f'<figure class="{cls}"><figcaption>{_esc(title)}</figcaption>'
            f'<svg width="{w}" height="{h}" role="img" aria-label="{_esc(title)}">'
            f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" class="axis"/>'
            f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{h - pad}" class="axis"/>'
            f'<text x="2" y="{pad}">{y1:.3g}</text><text x="2" y="{h - pad}">{y0:.3g}</text>'
            f'<text x="{w - pad}" y="{h - 6}">round {x1:.0f}</text>'
            f'<polyline points="{path}"/>{dots}</svg></figure>')


def render_page(data: dict[str, Any], token: str, nonce: str) -> str:
    """The whole page for one snapshot (`collect`'s dict)."""
    status, peers, rounds, audit = data["status"], data["peers"], data["rounds"], data["audit"]
    q = f"?token={token}"
    names = {p["peer_id"]: p.get("name") or "" for p in peers}
    peer_rows = "".join(
        f'<tr class="peer" data-peer="{_esc(p["peer_id"])}"><td><code>{_esc(p["peer_id"])}'
        f'</code></td><td>{_esc(p.get("name"))}</td>'
        f'<td class="{"up" if p["connected"] else "down"}">'
        f'{"connected" if p["connected"] else "down"}</td><td>{_esc(p.get("address"))}</td>'
        f'<td>{p.get("bytes_in", 0)}</td><td>{p.get("bytes_out", 0)}</td></tr>' for p in peers)
    round_rows = "".join(
        f'<tr><td>{r["round_id"]}</td><td>{_esc(_when(r.get("started_at")))}</td>'
        f'<td>{r.get("shared")}</td><td>{r.get("votes_received")}</td>'
        f'<td>{_esc(r.get("mean_utility"))}</td><td>{_esc(r.get("complete"))}</td></tr>'
        for r in rounds)
    audit_rows = "".join(
        f'<tr class="sent" data-cid="{a["cid"]}" data-blurred="{a["blurred"]}">'
        f'<td><img class="thumb" alt="as sent" src="/sent/{a["cid"]}{q}"></td>'
        f'<td>{_esc(_when(a["shared_at"]))}</td><td>{a["round_id"]}</td>'
        f'<td><code>{_esc(a["peer_id"])}</code> {_esc(names.get(a["peer_id"], ""))}</td>'
        f'<td>{a["nbytes"]}</td><td class="blurred">{a["blurred"]}</td><td>{a["kept"]}</td>'
        f'<td>{_esc(a.get("utility"))}</td><td><code>{a["cid"][:16]}</code></td></tr>'
        for a in audit)
    plots = "".join([
        _plot("images shared per round",
              [(r["round_id"], r.get("shared") or 0) for r in rounds], "plot-shared"),
        _plot("votes received per round",
              [(r["round_id"], r.get("votes_received") or 0) for r in rounds], "plot-votes"),
        _plot("mean utility per round", [(r["round_id"], r["mean_utility"]) for r in rounds
                                         if r.get("mean_utility") is not None], "plot-utility"),
    ])
    privacy = status.get("privacy") or {}
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>peerdata: {_esc(status.get("name"))}</title>
<meta name="referrer" content="no-referrer">
<style nonce="{nonce}">
body {{ font: 14px system-ui, sans-serif; margin: 1.5em; color: #222; }}
table {{ border-collapse: collapse; margin-bottom: 1.5em; }}
td, th {{ border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: middle; }}
.up {{ color: #070; }} .down {{ color: #a00; }} img.thumb {{ max-width: 96px; max-height: 96px; }}
figure {{ display: inline-block; margin: 0 1em 1em 0; }} svg text {{ font-size: 10px; }}
polyline {{ fill: none; stroke: #36c; stroke-width: 2; }} circle {{ fill: #36c; }}
.axis {{ stroke: #999; }}
</style></head><body>
<h1>{_esc(status.get("name"))} <small><code>{_esc(status.get("peer_id"))}</code></small></h1>
<p>uptime {float(status.get("uptime_s", 0)):.0f} s; peers connected
<b id="peers-connected">{status.get("peers_connected")}</b>; rounds {status.get("rounds")};
images shared {status.get("images_shared")}; privacy filter: {privacy.get("images_seen", 0)}
seen, {privacy.get("regions_blurred", 0)} regions blurred, {privacy.get("images_dropped", 0)}
dropped. Read-only; refreshed on reload.</p>
<h2>Peers</h2>
<table id="peers"><tr><th>peer ID</th><th>name</th><th>state</th><th>address</th>
<th>bytes in</th><th>bytes out</th></tr>{peer_rows}</table>
<h2>Rounds</h2>{plots}
<table id="rounds"><tr><th>round</th><th>started</th><th>shared</th><th>votes</th>
<th>mean utility</th><th>complete</th></tr>{round_rows}</table>
<h2>What left this robot</h2>
<p>Each image exactly as sent (after the privacy filter), to whom and when, with the filter's
redactions (regions blurred / kept). Newest first; at most {MAX_AUDIT}.</p>
<table id="audit"><tr><th>as sent</th><th>when</th><th>round</th><th>to</th><th>bytes</th>
<th>blurred</th><th>kept</th><th>utility</th><th>content ID</th></tr>{audit_rows}</table>
<script nonce="{nonce}">addEventListener("load", () => document.querySelectorAll("img.thumb")
.forEach(i => i.dataset.loaded = i.complete ? i.naturalWidth : 0));</script>
</body></html>"""


Call = Callable[[str, dict[str, Any]], dict[str, Any]]
"""A control-socket call (cmd, args) -> result (blocking; run in a thread)."""


def collect(home: Path, call: Call) -> dict[str, Any]:
    """(blocking) One snapshot of the daemon and the audit."""
    status = call("status", {})
    peers = call("peers", {}).get("peers", [])
    rounds = call("rounds", {}).get("rounds", [])
    shared = call("shared", {}).get("shared", [])
    red = redactions(home)
    audit = []
    for s in sorted(shared, key=lambda s: -float(s.get("shared_at") or 0))[:MAX_AUDIT]:
        counts = red.get(s["cid"], {})
        audit.append({"cid": s["cid"], "peer_id": s.get("peer_id") or s.get("to") or "",
                      "round_id": s.get("round_id"), "shared_at": s.get("shared_at"),
                      "nbytes": s.get("nbytes"), "utility": s.get("utility"),
                      "blurred": counts.get("blur", 0), "kept": counts.get("keep", 0)})
    return {"status": status, "peers": peers, "rounds": rounds, "audit": audit}


def make_route(home: Path, token: str, call: Call) -> Callable[[str], Any]:
    """The dashboard's request handler (checks the token first, on every path)."""
    security = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer",
                "X-Frame-Options": "DENY"}

    async def route(target: str) -> Reply:
        url = urlsplit(target)
        given = parse_qs(url.query).get("token", [""])[0]
        if not hmac.compare_digest(given.encode(), token.encode()):
            return Reply(403, b"forbidden: open the URL `peerdata dashboard` printed\n",
                         headers=security)
        if url.path == "/":
            try:
                data = await trio.to_thread.run_sync(collect, home, call)
            except PeerdataError as exc:
                return Reply(200, f"<!doctype html><p>daemon not answering: "
                                  f"{_esc(exc)}</p>".encode(), "text/html; charset=utf-8",
                             security)
            nonce = secrets.token_urlsafe(12)
            csp = (f"default-src 'none'; img-src 'self'; style-src 'nonce-{nonce}'; "
                   f"script-src 'nonce-{nonce}'")
            return Reply(200, render_page(data, token, nonce).encode(),
                         "text/html; charset=utf-8",
                         {**security, "Content-Security-Policy": csp})
        if url.path == "/api/state":
            data = await trio.to_thread.run_sync(collect, home, call)
            return Reply(200, json.dumps(data).encode(), "application/json", security)
        if url.path.startswith("/sent/"):
            data_bytes = await trio.to_thread.run_sync(sent_bytes, home, url.path[6:])
            if data_bytes is None:
                return Reply(404, b"no such image\n", headers=security)
            return Reply(200, data_bytes, media_type_of(data_bytes), security)
        return Reply(404, b"not found\n", headers=security)

    return route
