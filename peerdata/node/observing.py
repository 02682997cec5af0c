"""Ingest: new local images into the store and the learner (control commands, the inbox folder,
and at start-up what the store holds but the learner's checkpoint missed).

Rule: an image is stored once (cid = SHA-256 of its bytes) before the learner sees it; the
learner is reached only through its `LearnerTask`; store reads and writes run in threads.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import trio

from peerdata.errors import DataError, PeerdataError
from peerdata.node.ingest import (
    DONE,
    REJECTED,
    Incoming,
    file_away,
    from_array,
    from_bytes,
    npz_incoming,
    scan_inbox,
    to_pixels,
)
from peerdata.node.learner_task import LearnerTask
from peerdata.node.learning import LearnerHost, Observation
from peerdata.node.logs import event
from peerdata.node.node import Node
from peerdata.store import Sample, Store, content_id

log = logging.getLogger("peerdata.node.rounds")


def _missing(host: LearnerHost, store: Store
             ) -> tuple[list[Observation], list[tuple[bytes, np.ndarray, int]]]:
    """(learner worker) What the store holds and the learner does not."""

    def pixels(cid: bytes) -> np.ndarray | None:
        try:
            return to_pixels(store.get_blob(cid), host.spec)
        except PeerdataError as exc:  # a peer's undecodable image: never trained on
            event(log, logging.WARNING, "reconcile_skipped", cid=cid.hex()[:16],
                  error=str(exc)[:100])
            return None

    local, received = [], []
    for s in store.list_samples():
        if s.source == "local" and not host.known(s.cid) and s.cid not in host.shared \
                and store.get_meta(f"derived.{s.cid.hex()}") is None:
            px = pixels(s.cid)
            if px is not None:
                local.append(Observation(s.cid, px, s.label, s.domain))
        elif s.source == "received" and s.cid not in host.received and s.label is not None:
            px = pixels(s.cid)
            if px is not None:
                received.append((s.cid, px, s.label))
    return local, received


class Observer:
    """Takes in local images (see the module rule)."""

    def __init__(self, node: Node, learner: LearnerTask, notify: Callable[[], None],
                 inbox_dir: Path | None) -> None:
        self.node, self.store, self.learner = node, node.store, learner
        self.inbox_dir, self._notify = inbox_dir, notify
        self.counts = {"observed": 0, "inbox_rejected": 0}

    async def reconcile(self) -> None:
        """Give the learner what the store holds but the last checkpoint missed (a crash
        between storing an image and saving the learner)."""
        store = self.store

        def fill(host: LearnerHost) -> tuple[int, int]:
            local, received = _missing(host, store)
            if local:
                host.observe(local)
            if received:
                host.accept([c for c, _, _ in received], np.stack([p for _, p, _ in received]),
                            np.array([lb for _, _, lb in received], np.int64))
            if local or received:
                host.save()
            return len(local), len(received)

        local, received = await self.learner.call(fill)
        if local or received:
            event(log, logging.INFO, "learner_reconciled", local=local, received=received)

    async def observe(self, incoming: Sequence[Incoming], *, bootstrap: bool = False,
                      seed: int | None = None) -> tuple[int, int]:
        """Store new local images once each, give them to the learner (`bootstrap`: train a
        fresh model on them), record predictions; returns (added, duplicates)."""
        store, now = self.store, self.node.wall_time()
        round_id = await self.node.offload(store.last_round_id)

        def put() -> tuple[list[Observation], list[Observation]]:
            fresh, every = [], []
            seen: set[bytes] = set()
            for inc in incoming:
                cid = store.put_blob(inc.data)
                if cid in seen:
                    continue
                seen.add(cid)
                obs = Observation(cid, inc.image, inc.label, inc.domain)
                every.append(obs)
                if store.add_sample(Sample(cid=cid, source="local", label=inc.label, origin=None,
                                           domain=inc.domain, prediction=None, confidence=None,
                                           embedding=None, observed_round=round_id,
                                           created_at=now)):
                    fresh.append(obs)
            return fresh, every

        fresh, every = await self.node.offload(put)

        def learn_of(host: LearnerHost) -> tuple[list[Observation], Any]:
            if bootstrap:
                host.bootstrap(every, seed)
                scored = every
            else:
                scored = [o for o in fresh if not host.known(o.cid)]
                host.observe(scored)
            predicted = host.predict(np.stack([o.image for o in scored])) if scored else None
            host.save()
            return scored, predicted

        scored, predicted = await self.learner.call(learn_of)
        if not bootstrap:
            fresh = scored
        if predicted is not None and scored:
            labels, conf, emb = predicted

            def record() -> None:
                with store.batch():  # one commit for the whole pass
                    for i, o in enumerate(scored):
                        store.update_prediction(o.cid, int(labels[i]), float(conf[i]),
                                                np.asarray(emb[i], np.float32).tobytes())
            await self.node.offload(record)
        self.counts["observed"] += len(fresh)
        event(log, logging.INFO, "observed", added=len(fresh),
              duplicates=len(incoming) - len(fresh), bootstrap=bootstrap)
        self._notify()
        return len(fresh), len(incoming) - len(fresh)

    async def observe_one(self, image: Any, label: int | None, domain: str | None) -> bytes:
        """One image as PNG/JPEG bytes or a uint8 array; returns its cid."""
        spec = self.learner.spec
        inc = (from_bytes(bytes(image), label, domain, spec) if isinstance(image, bytes | bytearray)
               else from_array(np.asarray(image), label, domain, spec))
        await self.observe([inc])
        return content_id(inc.data)

    async def observe_npz(self, path: Path, *, bootstrap: bool, seed: int | None
                          ) -> tuple[int, int]:
        """A scenario feed: npz with x, y and optional domain."""
        incoming = await self.node.offload(npz_incoming, path, self.learner.spec)
        return await self.observe(incoming, bootstrap=bootstrap, seed=seed)

    async def watch_inbox(self, poll_s: float) -> None:
        """Observe image files dropped into the inbox folder; file them away after."""
        assert self.inbox_dir is not None
        folder = self.inbox_dir
        while True:
            found = await self.node.offload(scan_inbox, folder,
                                            self.node.config.limits.max_image_bytes,
                                            self.learner.spec)
            good = []
            for path, got in found:
                if isinstance(got, DataError):
                    self.counts["inbox_rejected"] += 1
                    event(log, logging.WARNING, "inbox_rejected", file=path.name,
                          reason=str(got)[:200])
                    await self.node.offload(file_away, path, REJECTED)
                else:
                    good.append((path, got))
            if good:
                try:
                    await self.observe([g for _, g in good])
                except PeerdataError as exc:
                    event(log, logging.WARNING, "inbox_failed", error=str(exc)[:200])
                else:
                    for path, _ in good:
                        await self.node.offload(file_away, path, DONE)
            if found:
                self._notify()
            await trio.sleep(poll_s)
