"""A node's home directory: key, config, store, control socket, pid and log files.

Rule: `init_home` never overwrites an existing key or config; `check_home` is the one place
that decides whether a home is usable, and says why not with a ConfigError/IdentityError.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from peerdata.config import NetConfig, NodeConfig, load_config, render_config
from peerdata.errors import ConfigError
from peerdata.files import replace_file
from peerdata.identity import Identity, create_identity, load_identity
from peerdata.node.logs import event

CONFIG_FILE = "config.toml"
PID_FILE = "node.pid"
LOG_FILE = "node.log"
CONTROL_SOCKET = "control.sock"
HOME_MODE = 0o700  # the store, raw images, key and log are this robot's alone

log = logging.getLogger("peerdata.node.home")


@dataclass(frozen=True)
class HomeInit:
    """What `init_home` did."""

    home: Path
    peer_id: str
    created_key: bool
    created_config: bool


def default_home(env: dict[str, str]) -> Path:
    """`$PEERDATA_HOME`, else `~/.peerdata` (the caller passes the environment in)."""
    value = env.get("PEERDATA_HOME")
    return Path(value).expanduser() if value else Path("~/.peerdata").expanduser()


def init_home(home: Path, name: str = "robot", listen: tuple[str, ...] = NetConfig.listen,
              bootstrap: tuple[str, ...] = ()) -> HomeInit:
    """Create `home` (mode 0700), its key (0600) and a commented config.toml.

    Re-running keeps the existing key and config untouched.

    Raises:
        ConfigError: the directory cannot be created or written.
        IdentityError: an existing key is unsafe or corrupt.
    """
    try:
        home.mkdir(mode=HOME_MODE, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{home}: cannot create home directory: {exc.strerror}") from None
    if not home.is_dir():
        raise ConfigError(f"{home}: not a directory")
    enforce_home_mode(home, home.stat().st_mode)
    had_key = (home / "node.key").exists()
    identity = create_identity(home)
    cfg_path = home / CONFIG_FILE
    created_config = False
    if not cfg_path.exists():
        text = render_config(name, listen, bootstrap)
        try:
            replace_file(cfg_path, text.encode("utf-8"))
        except OSError as exc:
            raise ConfigError(f"{cfg_path}: cannot write config: {exc.strerror}") from None
        created_config = True
    return HomeInit(home, identity.peer_id, not had_key, created_config)


def check_home(home: Path) -> tuple[Identity, NodeConfig]:
    """Load the identity and config of an existing home, refusing an unusable one.

    Raises:
        ConfigError: the home is missing, not a directory, not readable/writable by us, or
            its config is invalid.
        IdentityError: the key is missing, corrupt, or readable by group/others.
    """
    try:
        st = home.stat()
    except FileNotFoundError:
        raise ConfigError(f"{home}: no such home (run `peerdata init --home {home}`)") from None
    except OSError as exc:
        raise ConfigError(f"{home}: cannot read home: {exc.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{home}: home is not a directory")
    if not os.access(home, os.R_OK | os.W_OK | os.X_OK):
        raise ConfigError(f"{home}: home is not readable and writable by this user")
    enforce_home_mode(home, st.st_mode)
    identity = load_identity(home)
    config = load_config(home / CONFIG_FILE)
    return identity, config


def enforce_home_mode(home: Path, mode: int) -> None:
    """Make `home` mode 0700 if group or others may use it (with a warning), since it holds
    raw images, the store and the log.

    Raises:
        ConfigError: the mode cannot be changed (e.g. the home belongs to another user).
    """
    if stat.S_IMODE(mode) & 0o077 == 0:
        return
    try:
        os.chmod(home, HOME_MODE)
    except OSError as exc:
        raise ConfigError(f"{home}: home is mode {stat.S_IMODE(mode):o} (readable by others) "
                          f"and cannot be made 0700: {exc.strerror}") from None
    event(log, logging.WARNING, "home_mode_fixed", home=str(home),
          was=f"{stat.S_IMODE(mode):o}", now=f"{HOME_MODE:o}")


def write_pid_file(home: Path, info: dict[str, object]) -> Path:
    """Write `home/node.pid`: the pid on the first line, readiness JSON on the second."""
    path = home / PID_FILE
    replace_file(path, f"{os.getpid()}\n{json.dumps(info, sort_keys=True)}\n".encode())
    return path


def remove_pid_file(home: Path) -> None:
    """Remove `home/node.pid` if it is ours."""
    path = home / PID_FILE
    with contextlib.suppress(OSError, ValueError, IndexError):
        if int(path.read_text(encoding="utf-8").split()[0]) == os.getpid():
            path.unlink()
