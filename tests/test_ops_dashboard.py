"""The dashboard's protections without a daemon: the token on every path (constant-time
compare), content IDs checked before any file is read, loopback only, a 0600 token file."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import pytest

from peerdata.errors import ConfigError
from peerdata.ops.dashboard import check_loopback, make_route, write_token


def never(cmd: str, args: dict) -> dict:
    raise AssertionError(f"the daemon must not be asked ({cmd}) without a valid token")


async def test_token_and_content_id_checks(tmp_path: Path) -> None:
    token = write_token(tmp_path)
    assert stat.S_IMODE((tmp_path / "dashboard.token").stat().st_mode) == 0o600
    assert (tmp_path / "dashboard.token").read_text().strip() == token
    data = b"\x89PNG\r\n\x1a\nnot really"
    cid = hashlib.sha256(data).hexdigest()
    (tmp_path / "blobs" / cid[:2]).mkdir(parents=True)
    (tmp_path / "blobs" / cid[:2] / cid).write_bytes(data)
    (tmp_path / "node.key").write_bytes(b"secret")
    route = make_route(tmp_path, token, never)
    wrong = token[:-1] + ("y" if token[-1] == "x" else "x")  # one character off
    for target in ("/", f"/sent/{cid}", f"/sent/{cid}?token=", f"/?token={wrong}",
                   f"/api/state?token={token}extra", f"/api/state?token={token[:-1]}"):
        reply = await route(target)
        assert reply.code == 403, target
    ok = await route(f"/sent/{cid}?token={token}")
    assert (ok.code, ok.body, ok.content_type) == (200, data, "image/png")
    assert ok.headers["Cache-Control"] == "no-store"
    for bad in ("../node.key", "..%2Fnode.key", cid[:-1] + "0", cid.upper(), "x" * 64):
        assert (await route(f"/sent/{bad}?token={token}")).code == 404, bad
    (tmp_path / "blobs" / cid[:2] / cid).write_bytes(data + b"tampered")
    assert (await route(f"/sent/{cid}?token={token}")).code == 404  # bytes must match the cid
    assert write_token(tmp_path) != token  # a fresh token per start


def test_loopback_only() -> None:
    check_loopback("127.0.0.1")
    check_loopback("::1")
    with pytest.raises(ConfigError, match="loopback only"):
        check_loopback("0.0.0.0")
