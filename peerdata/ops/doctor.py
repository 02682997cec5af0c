"""`peerdata doctor`: one-command health check of a robot's home, disk, models, peers and clock.

Rule: every check is a function returning `Check` records and never raises; a check that cannot
run says why as a warning. Warnings never fail the doctor; the exit code is that of the first
failed check in `ORDER`, so each problem has its own stable code (docs/cli.md).
"""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Callable
from dataclasses import asdict, dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any

from peerdata.config import NodeConfig, load_config
from peerdata.errors import PeerdataError
from peerdata.node.home import CONFIG_FILE, CONTROL_SOCKET

MiB = 1024 * 1024
MIN_FREE_BYTES = 256 * MiB  # below this the store cannot take a round's images: fail
WARN_FREE_BYTES = 2048 * MiB
WARN_SKEW_S = 5.0
MAX_SKEW_S = 30.0  # the replay guard refuses signed messages further in the future than this
CONNECT_TIMEOUT_S = 3.0


class DoctorCode(IntEnum):
    """Exit codes of `peerdata doctor` (0 = no failure; warnings allowed)."""

    OK = 0
    CONFIG = 3  # config.toml missing or invalid (as everywhere in the CLI)
    HOME_PERMISSIONS = 20  # home missing, not ours, or writable by group/others
    KEY_PERMISSIONS = 21  # node.key readable or writable by group/others
    KEY_INVALID = 22  # node.key missing or corrupt
    DISK_FULL = 23  # free space on the home's file system below --min-free-bytes
    MODEL_CORRUPT = 24  # a detector model missing, corrupt or not matching its sha256
    PEER_UNREACHABLE = 25  # a configured bootstrap peer does not accept connections
    CLOCK_SKEW = 26  # a peer's clock is off by more than the replay guard accepts


ORDER = (DoctorCode.HOME_PERMISSIONS, DoctorCode.KEY_PERMISSIONS, DoctorCode.KEY_INVALID,
         DoctorCode.CONFIG, DoctorCode.DISK_FULL, DoctorCode.MODEL_CORRUPT,
         DoctorCode.PEER_UNREACHABLE, DoctorCode.CLOCK_SKEW)


@dataclass(frozen=True)
class Check:
    """One finding: `status` is ok | warn | fail; `code` is the exit code a failure maps to."""

    name: str
    status: str
    message: str
    code: int = 0


def _ok(name: str, message: str) -> Check:
    return Check(name, "ok", message)


def _warn(name: str, message: str) -> Check:
    return Check(name, "warn", message)


def _fail(name: str, code: DoctorCode, message: str) -> Check:
    return Check(name, "fail", message, int(code))


def check_home(home: Path) -> list[Check]:
    """The home exists, is ours, and is not writable (warn: readable) by group/others."""
    try:
        st = home.stat()
    except OSError as exc:
        return [_fail("home", DoctorCode.HOME_PERMISSIONS, f"{home}: {exc.strerror}; "
                      f"run `peerdata init --home {home}`")]
    if not stat.S_ISDIR(st.st_mode):
        return [_fail("home", DoctorCode.HOME_PERMISSIONS, f"{home}: not a directory")]
    mode = stat.S_IMODE(st.st_mode)
    if st.st_uid != os.geteuid():
        return [_fail("home", DoctorCode.HOME_PERMISSIONS,
                      f"{home}: owned by uid {st.st_uid}, not by this user ({os.geteuid()})")]
    if mode & 0o022:
        return [_fail("home", DoctorCode.HOME_PERMISSIONS,
                      f"{home}: mode {mode:04o} lets group/others write; run chmod 700 {home}")]
    if mode & 0o077:
        return [_warn("home", f"{home}: mode {mode:04o} lets group/others read private images; "
                      f"chmod 700 {home} is advised")]
    return [_ok("home", f"{home}: mode {mode:04o}")]


def check_key(home: Path) -> list[Check]:
    """node.key is owner-only and loads."""
    from peerdata.identity import load_identity

    path = home / "node.key"
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError as exc:
        return [_fail("key", DoctorCode.KEY_INVALID, f"{path}: {exc.strerror}")]
    if mode & 0o077:
        return [_fail("key", DoctorCode.KEY_PERMISSIONS,
                      f"{path}: mode {mode:04o} lets group/others read the private key; "
                      f"run chmod 600 {path} (and consider it leaked)")]
    try:
        identity = load_identity(home)
    except PeerdataError as exc:
        return [_fail("key", DoctorCode.KEY_INVALID, f"{path}: {exc}")]
    return [_ok("key", f"{path}: mode {mode:04o}, peer ID {identity.peer_id}")]


def check_config(home: Path) -> tuple[list[Check], NodeConfig | None]:
    """config.toml parses and validates."""
    try:
        config = load_config(home / CONFIG_FILE)
    except PeerdataError as exc:
        return [_fail("config", DoctorCode.CONFIG, str(exc))], None
    return [_ok("config", f"{home / CONFIG_FILE}: valid")], config


def check_disk(home: Path, min_free_bytes: int,
               free_bytes: Callable[[Path], int] | None = None) -> list[Check]:
    """Free space on the home's file system."""
    import shutil

    try:
        free = (free_bytes or (lambda p: shutil.disk_usage(p).free))(home)
    except OSError as exc:
        return [_warn("disk", f"{home}: cannot read free space: {exc.strerror}")]
    text = f"{free / MiB:.0f} MiB free on the file system of {home}"
    if free < min_free_bytes:
        return [_fail("disk", DoctorCode.DISK_FULL,
                      f"disk full: {text}, below the {min_free_bytes / MiB:.0f} MiB minimum; "
                      "free space or move the home")]
    if free < max(WARN_FREE_BYTES, 2 * min_free_bytes):
        return [_warn("disk", f"{text} (low)")]
    return [_ok("disk", text)]


def check_models(config: NodeConfig) -> list[Check]:
    """The privacy filter's detectors (Haar cascades, YuNet with its sha256) load."""
    from peerdata.ml.privacy import PrivacyFilter

    try:
        filt = PrivacyFilter.from_config(config.privacy)
    except PeerdataError as exc:
        return [_fail("models", DoctorCode.MODEL_CORRUPT,
                      f"detector model unusable: {exc}; nothing can be shared until it is "
                      "fixed (the filter fails closed)")]
    names = ", ".join(str(getattr(d, "name", type(d).__name__)) for d in filt.detectors)
    found = [] if config.privacy.yunet_sha256 or not config.privacy.yunet_model else [
        _warn("models", "privacy.yunet_model has no yunet_sha256: its integrity is not checked")]
    return [_ok("models", f"privacy filter detectors load: {names}"), *found]


def _tcp_target(addr: str) -> tuple[str, int] | None:
    parts = addr.strip("/").split("/")
    if len(parts) >= 4 and parts[0] in ("ip4", "ip6", "dns", "dns4", "dns6") and \
            parts[2] == "tcp" and parts[3].isdigit():
        return parts[1], int(parts[3])
    return None


def check_peers(config: NodeConfig, timeout_s: float = CONNECT_TIMEOUT_S,
                connected: set[str] | None = None) -> list[Check]:
    """Each bootstrap peer accepts TCP connections (or the running daemon is linked to it)."""
    if not config.net.bootstrap:
        return [_ok("peers", "no bootstrap peers configured (this robot waits to be dialled)")]
    out = []
    for addr in config.net.bootstrap:
        pid = addr.rsplit("/p2p/", 1)[-1] if "/p2p/" in addr else ""
        if connected is not None and pid in connected:
            out.append(_ok("peers", f"{addr}: linked (daemon)"))
            continue
        target = _tcp_target(addr)
        if target is None:
            out.append(_warn("peers", f"{addr}: not a /ip4|ip6|dns/HOST/tcp/PORT address; "
                                      "not probed"))
            continue
        try:
            with socket.create_connection(target, timeout=timeout_s):
                pass
        except OSError as exc:
            out.append(_fail("peers", DoctorCode.PEER_UNREACHABLE,
                             f"peer unreachable: {addr}: {exc.strerror or exc} "
                             f"(TCP {target[0]}:{target[1]}, {timeout_s:g} s)"))
            continue
        out.append(_ok("peers", f"{addr}: accepts TCP connections"))
    return out


def check_clock(status: dict[str, Any] | None) -> list[Check]:
    """Peers' clocks against ours, from the signed messages the daemon accepted."""
    if status is None:
        return [_warn("clock", "no daemon running: clock skew against peers not checked")]
    offsets = status.get("clock_offsets_s")
    if not isinstance(offsets, dict) or not offsets:
        return [_warn("clock", "no signed message from a peer yet: clock skew not measured")]
    out = []
    for peer, off in sorted(offsets.items()):
        text = (f"{peer}: its clock is {abs(off):.1f} s "
                f"{'behind' if off > 0 else 'ahead of'} ours (network delay included)")
        if off < -MAX_SKEW_S:
            out.append(_fail("clock", DoctorCode.CLOCK_SKEW,
                             f"clock skew: {text}; its signed messages are refused beyond "
                             f"{MAX_SKEW_S:g} s; fix NTP on one side"))
        elif abs(off) > WARN_SKEW_S:
            out.append(_warn("clock", f"clock skew: {text}"))
        else:
            out.append(_ok("clock", text))
    return out


def daemon_status(home: Path, timeout_s: float = 5.0) -> dict[str, Any] | None:
    """The running daemon's `status`, or None if none answers on HOME/control.sock."""
    from peerdata.control.client import call

    if not (home / CONTROL_SOCKET).exists():
        return None
    try:
        result = call(home, "status", timeout_s=timeout_s)
        peers = call(home, "peers", timeout_s=timeout_s)
    except PeerdataError:
        return None
    result["_connected"] = [p["peer_id"] for p in peers.get("peers", []) if p.get("connected")]
    return result


def run_checks(home: Path, *, min_free_bytes: int = MIN_FREE_BYTES,
               peer_timeout_s: float = CONNECT_TIMEOUT_S) -> list[Check]:
    """Every check, in order; later checks that need a valid config are skipped without one."""
    checks = check_home(home)
    if checks[0].status == "fail":
        return checks
    checks += check_key(home)
    found, config = check_config(home)
    checks += found
    checks += check_disk(home, min_free_bytes)
    if config is None:
        return checks
    checks += check_models(config)
    status = daemon_status(home)
    connected = set(status.get("_connected", [])) if status else None
    checks += check_peers(config, peer_timeout_s, connected)
    checks += check_clock(status)
    return checks


def exit_code(checks: list[Check]) -> int:
    """The code of the first failure in ORDER (0 when nothing failed)."""
    failed = {c.code for c in checks if c.status == "fail"}
    return next((int(code) for code in ORDER if int(code) in failed), 0)


def report(checks: list[Check]) -> dict[str, Any]:
    """The JSON object `peerdata doctor --format json` prints."""
    code = exit_code(checks)
    return {"ok": code == 0, "exit_code": code,
            "failed": sum(c.status == "fail" for c in checks),
            "warnings": sum(c.status == "warn" for c in checks),
            "checks": [asdict(c) for c in checks]}
