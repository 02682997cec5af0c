"""The daemon's learner settings come from the same scenario mapping as the in-process runner."""

from __future__ import annotations

from dataclasses import replace

from peerdata.config import RoundConfig
from peerdata.node.learning import learner_config_for
from peerdata.scenario import load_scenario
from peerdata.sharing import LearnerConfig


def test_daemon_and_runner_agree_on_every_learner_setting() -> None:
    scenario = load_scenario("paper-3")
    assert scenario.min_utility > 0  # the setting that once went missing in the daemon
    expected = LearnerConfig.of_scenario(scenario)
    assert learner_config_for(RoundConfig(scenario="paper-3")) == expected


def test_round_config_overrides_only_the_sizes_it_names() -> None:
    base = LearnerConfig.of_scenario(load_scenario("paper-3"))
    got = learner_config_for(RoundConfig(scenario="paper-3", vision_width=4, vision_epochs=1))
    assert got == replace(base, vision=replace(base.vision, width=4, epochs=1))
