"""A node's home directory: key, config, store, control socket, pid and log files.

Rule: `init_home` never overwrites an existing key or config; `check_home` is the one place
that decides whether a home is usable, and says why not with a ConfigError/IdentityError.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from peerdata.config import NetConfig, NodeConfig, load_config, render_config
from peerdata.errors import ConfigError
from peerdata.identity import Identity, create_identity, load_identity

CONFIG_FILE = "config.toml"
PID_FILE = "node.pid"
LOG_FILE = "node.log"
CONTROL_SOCKET = "control.sock"


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
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{home}: cannot create home directory: {exc.strerror}") from None
    if not home.is_dir():
        raise ConfigError(f"{home}: not a directory")
    had_key = (home / "node.key").exists()
    identity = create_identity(home)
    cfg_path = home / CONFIG_FILE
    created_config = False
    if not cfg_path.exists():
        text = render_config(name, listen, bootstrap)
        tmp = home / f".{CONFIG_FILE}.{os.getpid()}.tmp"
        try:
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, cfg_path)
        except OSError as exc:
            raise ConfigError(f"{cfg_path}: cannot write config: {exc.strerror}") from None
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()
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
    identity = load_identity(home)
    config = load_config(home / CONFIG_FILE)
    return identity, config


def write_pid_file(home: Path, info: dict[str, object]) -> Path:
    """Write `home/node.pid`: the pid on the first line, readiness JSON on the second."""
    path = home / PID_FILE
    tmp = home / f".{PID_FILE}.{os.getpid()}.tmp"
    tmp.write_text(f"{os.getpid()}\n{json.dumps(info, sort_keys=True)}\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def remove_pid_file(home: Path) -> None:
    """Remove `home/node.pid` if it is ours."""
    path = home / PID_FILE
    with contextlib.suppress(OSError, ValueError, IndexError):
        if int(path.read_text(encoding="utf-8").split()[0]) == os.getpid():
            path.unlink()
