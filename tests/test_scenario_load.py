"""Scenarios as data: shipped files load, user files validate, bad values name file and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from peerdata.errors import ConfigError
from peerdata.scenario import builtin_scenarios, load_scenario

MINIMAL = """
name = "mini"
datasets = ["synthetic-bars", "synthetic-rings"]
{extra}
[[robots]]
name = "A"
mix = {{ synthetic-bars = 1.0 }}

[[robots]]
name = "B"
mix = {{ synthetic-bars = 0.5, synthetic-rings = 0.5 }}
"""


def _write(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "mini.toml"
    path.write_text(MINIMAL.format(extra=extra))
    return path


def test_shipped_scenarios_load() -> None:
    assert {"paper-3", "synthetic-3", "fleet-10"} <= set(builtin_scenarios())
    paper = load_scenario("paper-3")
    assert paper.datasets == ("mnist", "kmnist", "fashion_mnist")
    assert [r.name for r in paper.robots] == ["A", "B", "C"]
    assert paper.robots[0].datasets == {"mnist"}
    assert paper.robots[1].datasets == {"mnist", "kmnist"}
    assert paper.robots[2].datasets == {"mnist", "fashion_mnist"}
    assert paper.vision.num_classes == 30 and paper.label_offset("fashion_mnist") == 20
    assert paper.novel_domains("A") == frozenset()
    assert paper.novel_domains("B") == {"kmnist"} and paper.novel_domains("C") == {"fashion_mnist"}
    assert len(load_scenario("fleet-10").robots) == 10
    assert len(load_scenario("fleet-20").robots) == 20
    assert all(d.startswith("synthetic-") for d in load_scenario("synthetic-3").datasets)


def test_user_file_by_path(tmp_path: Path) -> None:
    scenario = load_scenario(str(_write(tmp_path, "rounds = 2\n[sharing]\nbudget = 0.5\n")))
    assert scenario.rounds == 2 and scenario.budget == 0.5 and scenario.vision.num_classes == 20
    assert scenario.source.endswith("mini.toml")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("[sharing]\nbudget = 1.5\n", "budget must lie in"),
        ("[sharing]\nbudget = 0.0\n", "budget must lie in"),
        ("policies = ['gu', 'psychic']\n", "unknown policy 'psychic'"),
        ("colour = 'red'\n", "unknown key"),
        ("[vision]\nwidht = 3\n", r"\[vision\]: unknown key"),
        ("[sharing]\ndetector = 'odin'\n", "unknown detector"),
        ("rounds = 0\n", "rounds"),
        ("[sharing]\nmin_utility = 1.0\n", "min_utility must lie in"),
    ],
)
def test_invalid_values_name_the_file(tmp_path: Path, extra: str, message: str) -> None:
    path = _write(tmp_path, extra)
    with pytest.raises(ConfigError, match=message) as info:
        load_scenario(str(path))
    assert str(path) in str(info.value)


def test_robot_mix_errors(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(MINIMAL.format(extra="").replace("synthetic-rings = 0.5", "emnist = 0.5"))
    with pytest.raises(ConfigError, match="dataset 'emnist', which is not in `datasets`"):
        load_scenario(str(path))
    uneven = MINIMAL.format(extra="").replace("synthetic-rings = 0.5", "synthetic-rings = 0.4")
    path.write_text(uneven)
    with pytest.raises(ConfigError, match="sum to 1"):
        load_scenario(str(path))


def test_unreadable_and_unknown(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown scenario 'paper-99'"):
        load_scenario("paper-99")
    broken = tmp_path / "broken.toml"
    broken.write_text("name = [unclosed")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_scenario(str(broken))
    with pytest.raises(ConfigError, match="cannot read"):
        load_scenario(str(tmp_path / "absent.toml"))


def test_overrides_are_validated() -> None:
    paper = load_scenario("paper-3")
    assert paper.with_overrides(rounds=2).rounds == 2
    with pytest.raises(ConfigError, match="budget"):
        paper.with_overrides(budget=2.0)
