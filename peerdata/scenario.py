"""Scenarios as data: which robot sees which datasets, how much per round, budget, rounds, seeds.

Rule: a scenario is a TOML file, either shipped in `peerdata/scenarios/<name>.toml` (referenced
by name) or given by path; `load_scenario` is the only entry point that reads one, and every
value is validated here, with errors naming the file and the field.

Labels live in one unified space: dataset i of `datasets` owns labels 10*i .. 10*i+9, unless
`shared_labels = true` ([data]): then every dataset's class k is label k (the same classes seen
in different domains: PACS photo/art/cartoon/sketch, CIFAR-10 clear/foggy).
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from peerdata.errors import ConfigError
from peerdata.ml.ood import DETECTORS
from peerdata.ml.ranker import RankerConfig
from peerdata.ml.vision import VisionConfig

POLICIES: tuple[str, ...] = ("gu", "random", "oracle", "all", "none")
CLASSES_PER_DATASET = 10


@dataclass(frozen=True)
class RobotSpec:
    """One robot: its name and the share of each dataset in its local stream (sums to 1)."""

    name: str
    mix: tuple[tuple[str, float], ...]

    @property
    def datasets(self) -> frozenset[str]:
        return frozenset(d for d, share in self.mix if share > 0)


@dataclass(frozen=True)
class Scenario:
    """A validated experiment scenario (see `peerdata/scenarios/paper-3.toml` for every field)."""

    name: str
    description: str
    source: str
    datasets: tuple[str, ...]
    robots: tuple[RobotSpec, ...]
    rounds: int = 5
    seeds: tuple[int, ...] = (0,)
    policies: tuple[str, ...] = ("gu", "random", "oracle")
    bootstrap_images: int = 2000
    images_per_round: int = 500
    calibration_images: int = 300
    eval_fraction: float = 0.2
    eval_per_dataset: int = 2000
    split_seed: int = 0
    shared_labels: bool = False
    budget: float = 0.10
    detector: str = "combined"
    ood_tpr: float = 0.95
    min_utility: float = 0.0
    vision: VisionConfig = VisionConfig()
    ranker: RankerConfig = RankerConfig()

    def label_offset(self, dataset: str) -> int:
        """First unified label of `dataset`."""
        if self.shared_labels:
            return 0
        return CLASSES_PER_DATASET * self.datasets.index(dataset)

    def novel_domains(self, robot: str) -> frozenset[str]:
        """Ground truth: the robot's datasets that at least one peer never observes locally."""
        mine = next(r for r in self.robots if r.name == robot).datasets
        peers = [r.datasets for r in self.robots if r.name != robot]
        return frozenset(d for d in mine if any(d not in p for p in peers))

    def with_overrides(self, **changes: Any) -> Scenario:
        """A copy with some top-level fields replaced, validated again."""
        return _validated(dataclasses.replace(self, **changes))


def builtin_scenarios() -> list[str]:
    """Names of the scenarios shipped with the package."""
    folder = resources.files("peerdata") / "scenarios"
    return sorted(
        p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml")
    )


def _read(name_or_path: str) -> tuple[str, str]:
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        try:
            return str(path), path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read scenario file ({exc.strerror})") from None
    if name_or_path in builtin_scenarios():
        ref = resources.files("peerdata") / "scenarios" / f"{name_or_path}.toml"
        return f"builtin:{name_or_path}", ref.read_text(encoding="utf-8")
    raise ConfigError(
        f"unknown scenario {name_or_path!r}: not a file, and not one of "
        f"{', '.join(builtin_scenarios())}"
    )


def _sub(cls: type, raw: Any, where: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a table")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")
    try:
        return cls(**raw)
    except (TypeError, ValueError, ConfigError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def load_scenario(name_or_path: str) -> Scenario:
    """Read a shipped scenario by name, or a user scenario by path, and validate it.

    Raises:
        ConfigError: unreadable file, bad TOML, unknown keys, or invalid values (names the file).
    """
    source, text = _read(name_or_path)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML ({exc})") from None
    raw = dict(raw)
    sections = {"data": raw.pop("data", {}), "sharing": raw.pop("sharing", {})}
    vision = _sub(VisionConfig, raw.pop("vision", {}), f"{source} [vision]")
    ranker = _sub(RankerConfig, raw.pop("ranker", {}), f"{source} [ranker]")
    robots_raw = raw.pop("robots", None)
    if not isinstance(robots_raw, list) or not robots_raw:
        raise ConfigError(f"{source}: needs at least one [[robots]] table")
    robots = []
    for i, r in enumerate(robots_raw):
        if not isinstance(r, dict) or set(r) != {"name", "mix"} or not isinstance(r["mix"], dict):
            raise ConfigError(f"{source}: robots[{i}] needs exactly `name` and a `mix` table")
        mix = tuple(sorted((str(k), float(v)) for k, v in r["mix"].items()))
        robots.append(RobotSpec(str(r["name"]), mix))
    fields: dict[str, Any] = {}
    for section, values in sections.items():
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: [{section}] must be a table")
        fields.update(values)
    fields.update(raw)
    known = {f.name for f in dataclasses.fields(Scenario)} - {
        "source",
        "vision",
        "ranker",
        "robots",
    }
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {unknown}")
    for key in ("datasets", "seeds", "policies"):
        if key in fields:
            if not isinstance(fields[key], list):
                raise ConfigError(f"{source}: `{key}` must be a list")
            fields[key] = tuple(fields[key])
    if "name" not in fields or "datasets" not in fields:
        raise ConfigError(f"{source}: `name` and `datasets` are required")
    fields.setdefault("description", "")
    try:
        scenario = Scenario(
            source=source, robots=tuple(robots), vision=vision, ranker=ranker, **fields
        )
    except TypeError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    return _validated(scenario)


def _validated(s: Scenario) -> Scenario:
    def bad(msg: str) -> ConfigError:
        return ConfigError(f"{s.source}: {msg}")

    if not 0.0 < s.budget <= 1.0:
        raise bad(f"budget must lie in (0, 1], got {s.budget}")
    if not 0.0 <= s.min_utility < 1.0:
        raise bad(f"min_utility must lie in [0, 1), got {s.min_utility}")
    if not 0.0 < s.ood_tpr < 1.0:
        raise bad(f"ood_tpr must lie in (0, 1), got {s.ood_tpr}")
    if not 0.0 < s.eval_fraction < 1.0:
        raise bad(f"eval_fraction must lie in (0, 1), got {s.eval_fraction}")
    if s.rounds < 1 or s.images_per_round < 1 or s.eval_per_dataset < 1:
        raise bad("rounds, images_per_round and eval_per_dataset must be >= 1")
    if s.calibration_images < 10 or s.bootstrap_images < s.calibration_images + 10:
        raise bad("calibration_images must be >= 10 and bootstrap_images > calibration_images + 10")
    if not s.seeds or not all(isinstance(x, int) for x in s.seeds):
        raise bad("seeds must be a non-empty list of integers")
    if len(set(s.datasets)) != len(s.datasets) or not s.datasets:
        raise bad("datasets must be a non-empty list of distinct names")
    for p in s.policies:
        if p not in POLICIES:
            raise bad(f"unknown policy {p!r}; known: {', '.join(POLICIES)}")
    if s.detector not in DETECTORS:
        raise bad(f"unknown detector {s.detector!r}; known: {', '.join(DETECTORS)}")
    if len({r.name for r in s.robots}) != len(s.robots) or len(s.robots) < 2:
        raise bad("needs at least two robots with distinct names")
    for r in s.robots:
        for d, share in r.mix:
            if d not in s.datasets:
                raise bad(f"robot {r.name!r} uses dataset {d!r}, which is not in `datasets`")
            if share < 0:
                raise bad(f"robot {r.name!r}: share of {d!r} is negative")
        if abs(sum(share for _, share in r.mix) - 1.0) > 1e-6:
            raise bad(f"robot {r.name!r}: mix shares must sum to 1")
    if not isinstance(s.shared_labels, bool):
        raise bad("shared_labels must be true or false")
    need = CLASSES_PER_DATASET * (1 if s.shared_labels else len(s.datasets))
    if s.vision.num_classes != need:
        s = dataclasses.replace(s, vision=dataclasses.replace(s.vision, num_classes=need))
    return s
