"""Replay protection for signed gossip: remember (signer, nonce) pairs for a time window.

Rule: pure bookkeeping. The caller passes `now` (from its injected clock) and calls `check` only
after the signature verified, so a forger cannot fill the guard with nonces of others.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from peerdata.errors import LocalProtocolError, RemoteProtocolError


@dataclass(frozen=True)
class ReplayGuardStats:
    """A snapshot of the guard, for the CLI."""

    remembered: int
    rejected: int


MAX_OFFSETS = 1024  # signers whose clock offset is remembered (a fleet is smaller)


class ReplayGuard:
    """Accept each (signer, nonce) once, and only with a timestamp near `now`.

    A message older than `window_s` is refused as too old, so forgetting nonces older than that
    is safe. If more than `max_entries` fresh nonces are held at once, new ones are refused
    (never silently forgotten, which would re-open a replay).
    """

    def __init__(self, window_s: float = 300.0, max_skew_s: float = 30.0,
                 max_entries: int = 100_000) -> None:
        if window_s <= 0 or max_skew_s < 0 or max_entries <= 0:
            raise LocalProtocolError("ReplayGuard needs window_s > 0, max_skew_s >= 0, "
                                     "max_entries > 0")
        self._window_s = window_s
        self._max_skew_s = max_skew_s
        self._max_entries = max_entries
        self._seen: set[tuple[str, bytes]] = set()
        self._expiry: list[tuple[float, str, bytes]] = []  # heap by timestamp
        self._rejected = 0
        self._offsets: dict[str, float] = {}  # signer -> our clock minus its (last accepted)

    def check(self, signer: str, nonce: bytes, timestamp: float, now: float) -> None:
        """Record (signer, nonce), or raise if it was seen or its timestamp is out of range.

        Raises:
            RemoteProtocolError: replayed nonce, timestamp older than the window, timestamp too
                far in the future, or the guard is full.
        """
        self._forget_before(now - self._window_s)
        key = (signer, bytes(nonce))
        why = None
        if timestamp < now - self._window_s:
            why = f"timestamp {timestamp:.3f} is older than the {self._window_s:g} s window"
        elif timestamp > now + self._max_skew_s:
            why = (f"timestamp {timestamp:.3f} is more than {self._max_skew_s:g} s "
                   f"in the future (now {now:.3f})")
        elif key in self._seen:
            why = f"replayed nonce {nonce.hex()} from {signer}"
        elif len(self._seen) >= self._max_entries:
            why = f"replay guard full ({self._max_entries} fresh nonces); try again later"
        if why is not None:
            self._rejected += 1
            raise RemoteProtocolError(why)
        self._seen.add(key)
        heapq.heappush(self._expiry, (timestamp, signer, key[1]))
        if signer in self._offsets or len(self._offsets) < MAX_OFFSETS:
            self._offsets[signer] = now - timestamp

    def clock_offsets(self) -> dict[str, float]:
        """Per signer: our clock minus its timestamp on its last accepted message (its clock
        skew plus the message's delay; `peerdata doctor` reads it)."""
        return dict(self._offsets)

    def _forget_before(self, cutoff: float) -> None:
        while self._expiry and self._expiry[0][0] < cutoff:
            _, signer, nonce = heapq.heappop(self._expiry)
            self._seen.discard((signer, nonce))

    def statistics(self) -> ReplayGuardStats:
        """How many nonces are remembered and how many messages were refused."""
        return ReplayGuardStats(remembered=len(self._seen), rejected=self._rejected)
