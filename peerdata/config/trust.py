"""The [trust] section: fleet membership and what one peer may use of this robot."""

from __future__ import annotations

from dataclasses import dataclass

from peerdata.config.sections import GiB, MiB
from peerdata.errors import ConfigError

MEMBERSHIP_MODES = ("open", "fleet")


@dataclass(frozen=True)
class TrustConfig:
    """Who may take part, and how much of this robot one peer may use (docs/trust.md)."""

    membership: str = "open"  # open (any key; local experiments only) | fleet (certificates)
    fleet_authority: str = ""  # peer ID of the fleet authority key (membership = "fleet")
    max_store_bytes: int = 16 * GiB  # all blobs together; offers beyond it are refused
    max_peer_bytes: int = 2 * GiB  # blobs received from one peer
    min_free_bytes: int = 256 * MiB  # free disk kept under the store; offers refused below it
    # Weight each voter by its reputation (round/reputation.py): a lying member's votes stop
    # counting. Takes effect only with round.gossip_votes (it needs the votes on the other
    # origins' images; from our own images' voters alone the weights are noise).
    reputation: bool = True

    def __post_init__(self) -> None:
        if self.membership not in MEMBERSHIP_MODES:
            raise ConfigError(f"trust.membership must be one of {MEMBERSHIP_MODES}")
        if self.membership == "fleet" and not self.fleet_authority:
            raise ConfigError('trust.membership = "fleet" needs trust.fleet_authority '
                              "(the peer ID `peerdata fleet init` printed)")
        for name in ("max_store_bytes", "max_peer_bytes", "min_free_bytes"):
            if getattr(self, name) < 0 or (name.startswith("max_") and getattr(self, name) == 0):
                raise ConfigError(f"trust.{name} must be > 0 (min_free_bytes >= 0)")
