"""Each robot's data as npz files a daemon can `observe` / `evaluate`: bootstrap, rounds, eval.

Rule: the files hold exactly the batches `build_experiment_data` drew (never re-drawn here), with
keys `x` (uint8 at the model's image spec: N x 28 x 28 gray or N x S x S x 3 RGB), `y` (unified
labels) and `domain` (ground-truth dataset names).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tomlkit

from peerdata.datasets import LabelledImages
from peerdata.experiment.data import ExperimentData
from peerdata.scenario import Scenario
from peerdata.sharing import Batch

_DATA_KEYS = ("bootstrap_images", "images_per_round", "calibration_images", "eval_fraction",
              "eval_per_dataset", "split_seed", "shared_labels")
_SHARING_KEYS = ("budget", "detector", "ood_tpr", "min_utility")


def _plain(value: Any) -> Any:
    """Tuples as TOML arrays (tomlkit writes lists)."""
    return [_plain(v) for v in value] if isinstance(value, tuple | list) else value


def write_scenario(scenario: Scenario, path: Path) -> Path:
    """The scenario, overrides included, as a TOML file `load_scenario` reads back equal.

    The daemons load their learner settings (vision, ranker, detector) from it.
    """
    doc = tomlkit.document()
    for key in ("name", "description", "datasets", "rounds", "seeds", "policies"):
        doc[key] = _plain(getattr(scenario, key))
    sections: dict[str, Mapping[str, Any]] = {
        "data": {k: getattr(scenario, k) for k in _DATA_KEYS},
        "sharing": {k: getattr(scenario, k) for k in _SHARING_KEYS},
        "vision": dataclasses.asdict(scenario.vision),
        "ranker": dataclasses.asdict(scenario.ranker),
    }
    for name, values in sections.items():
        doc[name] = {k: _plain(v) for k, v in values.items()}
    robots = tomlkit.aot()
    for robot in scenario.robots:
        mix = tomlkit.inline_table()
        mix.update(dict(robot.mix))
        robots.append(tomlkit.table().add("name", robot.name).add("mix", mix))
    doc["robots"] = robots
    path.write_text(tomlkit.dumps(doc), encoding="utf-8")
    return path


@dataclass(frozen=True)
class RobotFiles:
    """Where one robot's data lies, and the ground-truth domains of each round's batch."""

    bootstrap: Path
    rounds: tuple[Path, ...]
    evaluation: Path
    round_domains: tuple[tuple[str, ...], ...]


def write_npz(path: Path, images: np.ndarray, labels: np.ndarray, domains: np.ndarray) -> Path:
    """One npz in the daemon's `observe` format (no pickled objects)."""
    np.savez(
        path,
        x=np.ascontiguousarray(images, dtype=np.uint8),
        y=np.asarray(labels, dtype=np.int64),
        domain=np.asarray([str(d) for d in domains], dtype=str),
    )
    return path


def _write_batch(path: Path, batch: Batch) -> Path:
    return write_npz(path, batch.images, batch.labels, batch.domains)


def write_evaluation(path: Path, evaluation: Mapping[str, LabelledImages]) -> Path:
    """Every dataset's held-out split in one npz (`domain` tells them apart)."""
    names = list(evaluation)
    return write_npz(
        path,
        np.concatenate([evaluation[d].images for d in names]),
        np.concatenate([evaluation[d].labels for d in names]),
        np.concatenate([np.full(len(evaluation[d]), d, dtype=object) for d in names]),
    )


def write_robot_files(
    scenario: Scenario, data: ExperimentData, folder: Path
) -> dict[str, RobotFiles]:
    """Write `folder/eval.npz` and `folder/<robot>/{bootstrap,round-NN}.npz`; robot -> files."""
    folder.mkdir(parents=True, exist_ok=True)
    evaluation = write_evaluation(folder / "eval.npz", data.evaluation)
    out: dict[str, RobotFiles] = {}
    for robot in scenario.robots:
        stream = data.streams[robot.name]
        mine = folder / robot.name
        mine.mkdir(exist_ok=True)
        out[robot.name] = RobotFiles(
            bootstrap=_write_batch(mine / "bootstrap.npz", stream.bootstrap),
            rounds=tuple(
                _write_batch(mine / f"round-{r + 1:02d}.npz", batch)
                for r, batch in enumerate(stream.rounds)
            ),
            evaluation=evaluation,
            round_domains=tuple(
                tuple(str(d) for d in batch.domains) for batch in stream.rounds
            ),
        )
    return out
