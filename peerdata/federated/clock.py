"""The fleet's round clock: round numbers that separate processes agree on without talking.

Rule: a round's number comes only from wall time (round `r` starts at wall time
`r * interval_s`), never from `trio.current_time()`, whose origin is a random offset per
process. Robots' wall clocks may disagree by up to `skew_s` (NTP keeps real fleets within tens
of milliseconds; the default tolerance is far wider): every deadline measured from a round's
start is extended by `skew_s`, and an update that arrives one round early is held for its round
instead of being refused. Clocks further apart than the tolerance lose rounds, never data:
their updates are refused as "wrong round", logged, and the daemon stays up.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from peerdata.errors import ConfigError


@dataclass(frozen=True)
class FleetClock:
    """Round boundaries every `interval_s` seconds of wall time, tolerant of `skew_s`.

    `wall` is injected (tests give each simulated robot its own offset); it defaults to
    `time.time`.
    """

    interval_s: float
    skew_s: float = 2.0
    wall: Callable[[], float] = field(default=time.time, compare=False)

    def __post_init__(self) -> None:
        if self.interval_s <= 0:
            raise ConfigError("the round interval must be > 0")
        if not 0 <= self.skew_s < self.interval_s / 2:
            raise ConfigError("clock skew tolerance must be in [0, interval_s / 2)")

    def next_round(self, after: int = 0) -> tuple[int, float]:
        """The next round to play (> `after`) and the seconds to wait until it starts."""
        now = self.wall()
        round_id = max(math.floor(now / self.interval_s) + 1, after + 1)
        return round_id, max(0.0, round_id * self.interval_s - now)

