"""A lying fleet member for benchmarks: `peerdata run` with this robot's votes falsified.

Rule (testing only): nothing in the daemon imports this module; a benchmark runs it *instead
of* `peerdata run`'s entry (`LIAR_ENTRY`, see `scripts/bench_liars_swarm.py`). It reads which
robots lie from PEERDATA_TEST_LIARS ("robot-1=invert,robot-2=never-novel": config name = lie
mode, `peerdata.sharing.liars.LIE_MODES`), falsifies `LearnerHost.vote` for a robot so named,
then runs the ordinary daemon: its lies are signed and sent by the real vote path.
"""

from __future__ import annotations

import os
import sys
import tomllib
from pathlib import Path

import numpy as np

LIAR_ENTRY = "from peerdata.testing.liar import main; main()"
LIARS_ENV = "PEERDATA_TEST_LIARS"


def liars_from_env(value: str) -> dict[str, str]:
    """{robot name: lie mode} from "name=mode,name=mode"."""
    from peerdata.sharing.liars import LIE_MODES

    out: dict[str, str] = {}
    for item in filter(None, (x.strip() for x in value.split(","))):
        name, _, mode = item.partition("=")
        if mode not in LIE_MODES:
            raise SystemExit(f"{LIARS_ENV}: unknown lie mode {mode!r} (known: {LIE_MODES})")
        out[name] = mode
    return out


def _home_name(argv: list[str]) -> str:
    home = Path(argv[argv.index("--home") + 1])
    with open(home / "config.toml", "rb") as f:
        return str(tomllib.load(f).get("name", ""))


def install(mode: str) -> None:
    """From now on every LearnerHost in this process votes as `mode` lies."""
    from peerdata.node.learning import LearnerHost
    from peerdata.sharing.liars import lie

    honest = LearnerHost.vote

    def vote(self: LearnerHost, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        novel, score = honest(self, images)
        return np.array([lie(mode, bool(n)) for n in novel], bool), score

    LearnerHost.vote = vote  # type: ignore[method-assign]


def main() -> None:
    """`peerdata run` (same arguments), lying when this home's robot is listed."""
    mode = liars_from_env(os.environ.get(LIARS_ENV, "")).get(_home_name(sys.argv))
    if mode is not None:
        install(mode)
        print(f"peerdata.testing.liar: this robot lies ({mode})", file=sys.stderr)
    from peerdata.cli.run import main as run_main

    run_main()
