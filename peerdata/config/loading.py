"""Reading a `config.toml`: the only place that touches a config file."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any

from peerdata.config.model import ModelConfig
from peerdata.config.node import NodeConfig
from peerdata.errors import ConfigError

# [section] -> its dataclass, as NodeConfig declares them (each field's default_factory)
_SECTIONS: dict[str, Any] = {
    f.name: f.default_factory for f in dataclasses.fields(NodeConfig) if f.name != "name"
}


def _build_section(name: str, cls: type, raw: Any) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"[{name}] must be a table")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ConfigError(f"unknown setting(s) in [{name}]: {', '.join(unknown)}")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        default = known[key].default
        if cls is ModelConfig and key == "labels":
            if not (value == "unlabelled" or (isinstance(value, list)
                                              and all(isinstance(v, str) for v in value))):
                raise ConfigError('model.labels must be a list of class names or "unlabelled"')
            value = value if isinstance(value, str) else tuple(value)
        elif isinstance(default, tuple):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{name}.{key} must be a list of strings")
            value = tuple(value)
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                raise ConfigError(f"{name}.{key} must be true or false")
        elif isinstance(default, int | float) and not isinstance(default, bool):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"{name}.{key} must be a number")
            if isinstance(default, int) and not isinstance(value, int):
                raise ConfigError(f"{name}.{key} must be an integer")
        elif value is not None and not isinstance(value, str):
            raise ConfigError(f"{name}.{key} must be a string")
        values[key] = value
    return cls(**values)


def config_from_dict(raw: dict[str, Any]) -> NodeConfig:
    """Build and validate a NodeConfig from parsed TOML."""
    unknown = sorted(set(raw) - set(_SECTIONS) - {"name"})
    if unknown:
        raise ConfigError(f"unknown top-level setting(s): {', '.join(unknown)}")
    name = raw.get("name", "robot")
    if not isinstance(name, str) or not name:
        raise ConfigError("name must be a non-empty string")
    sections = {key: _build_section(key, cls, raw.get(key, {})) for key, cls in _SECTIONS.items()}
    return NodeConfig(name=name, **sections)


def load_config(path: Path) -> NodeConfig:
    """Read and validate a `config.toml`.

    Raises:
        ConfigError: the file is missing, not TOML, or holds an invalid setting.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file (run `peerdata init` first)") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    try:
        return config_from_dict(raw)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
