"""The daemon's round service on its own: ingest (API, inbox folder, npz feed), budgets, the
privacy filter as the only path out, checkpoints, and the control commands' JSON."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import trio
import trio.testing
from round_support import Robot, fleet, images, mixed, round_config, start_robot, tiny_learner

from peerdata.control.commands import make_dispatch
from peerdata.control.protocol import ControlRequest
from peerdata.control.rounds import round_commands
from peerdata.datasets.synthetic import generate
from peerdata.errors import ControlError, DataError
from peerdata.ml.privacy import Action, Box, PrivacyFilter, RegionKind
from peerdata.ml.privacy.imageformat import encode_png
from peerdata.node.daemon import Daemon
from peerdata.node.learning import LearnerHost, LearnResult, Observation
from peerdata.node.node import thread_offload
from peerdata.store import Sample, SqliteStore, content_id
from peerdata.testing.memory_network import MemoryNetwork


class EveryImageHasAFace:
    """A stand-in face detector: a 6x6 'face' in the top-left corner of every image."""

    name = "test_face"
    version = "test"  # RegionDetector now names its model version (privacy filter's log)
    kind = RegionKind.FACE
    min_size = (8, 8)
    version = "test-stand-in"

    def detect(self, frame: object) -> list[Box]:
        return [Box(0, 0, 6, 6)]


def faces(action: Action) -> PrivacyFilter:
    return PrivacyFilter([EveryImageHasAFace()], {RegionKind.FACE: action})


async def test_observe_from_api_and_inbox_folder(
    autojump_clock: trio.testing.MockClock, tmp_path: Path,
) -> None:
    with trio.fail_after(120):
        async with AsyncExitStack() as stack:
            r = await start_robot(stack, MemoryNetwork(), "r", home=tmp_path,
                                  rounds=round_config(inbox_poll_s=1.0))
            img = generate("bars", 3, 1).images
            png = encode_png(img[0])
            cid = await r.service.observer.observe_one(png, 3, "bars")
            assert cid == content_id(png)
            same = await r.service.observer.observe_one(img[0], 3, None)
            assert same == cid  # same pixels, same PNG
            assert r.store.count_samples("local") == 1
            sample = r.store.get_sample(cid)
            assert sample is not None and sample.label == 3 and sample.domain == "bars"
            assert sample.prediction is not None and sample.embedding is not None
            inbox = tmp_path / "inbox"
            (inbox / "a.png").write_bytes(encode_png(img[1]))
            (inbox / "a.json").write_text(json.dumps({"label": 4, "domain": "yard"}))
            (inbox / "b.png").write_bytes(encode_png(img[2]))  # no sidecar: unlabelled
            (inbox / "bad.png").write_bytes(b"not an image")
            await r.node.wait_until(lambda _s: r.store.count_samples("local") == 3)
            a = r.store.get_sample(content_id(encode_png(img[1])))
            assert a is not None and (a.label, a.domain) == (4, "yard")
            await r.node.wait_until(lambda _s: (inbox / "done" / "b.png").exists())
            assert (inbox / "rejected" / "bad.png").exists()
            assert sorted(p.name for p in (inbox / "done").iterdir()) == ["a.json", "a.png",
                                                                          "b.png"]
            # the unlabelled one joins the pool (ranked, shared, voted on) but never trains
            assert r.service.host.statistics().local_images == 3
            assert sorted(r.service.host.learner.local_labels.tolist()) == [-1, 3, 4]
            with pytest.raises(DataError):
                await r.service.observer.observe_one(b"\x89PNG\r\n\x1a\nbroken", None, None)


async def test_budgets_and_privacy_are_enforced(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(300):
        async with AsyncExitStack() as stack:
            net = MemoryNetwork()
            robots = await fleet(stack, net, 2, rounds=round_config(max_images_per_round=4))
            for i, r in enumerate(robots):
                await r.service.observer.observe(images("bars", 60, 80 + i), bootstrap=True, seed=i)
                await r.service.observer.observe(mixed({"bars": 40}, 3 + i))
            start = await robots[0].service.origin.round_now("all")
            assert start.selected == 40 and start.shared == 4 and start.over_budget == 36
            nbytes = {s.nbytes for s in robots[0].store.list_shared(start.round_id)}
            byte_cap = round_config(max_bytes_per_round=2 * max(nbytes) + 1)
            r2 = await start_robot(stack, net, "r2", rounds=byte_cap,
                                   bootstrap=(f"/memory/{robots[0].node.peer_id}/p2p/"
                                              f"{robots[0].node.peer_id}",))
            await r2.node.wait_until(lambda s: s.peers_connected >= 1)
            await r2.service.observer.observe(images("bars", 60, 90), bootstrap=True, seed=5)
            await r2.service.observer.observe(mixed({"bars": 40}, 9))
            start = await r2.service.origin.round_now("all")
            assert start.shared <= 2 and start.bytes_sent <= byte_cap.max_bytes_per_round
            # per-peer bytes are recorded once the receiver fetched
            view = await robots[0].service.origin.wait_round(1, 60)
            assert view.complete
            traffic = {p.peer_id: p for p in robots[0].store.list_peers()}
            assert traffic[robots[1].node.peer_id].bytes_out >= view.bytes_sent


@pytest.mark.parametrize("action", [Action.DROP, Action.BLUR])
async def test_privacy_filter_is_the_only_way_out(
    autojump_clock: trio.testing.MockClock, action: Action,
) -> None:
    with trio.fail_after(300):
        async with AsyncExitStack() as stack:
            net = MemoryNetwork()
            a, b = await fleet(stack, net, 2)
            robots = [a, b]
            for i, r in enumerate(robots):
                await r.service.observer.observe(images("bars", 60, 40 + i), bootstrap=True, seed=i)
            a.service.origin.privacy = faces(action)
            await a.service.observer.observe(mixed({"bars": 20, "rings": 20}, 2))
            start = await a.service.origin.round_now("gu")
            assert start.selected == 10
            if action is Action.DROP:
                assert start.shared == 0 and start.dropped_by_privacy == 10
                assert b.store.count_samples("received") == 0
                return
            assert start.shared == 10 and start.dropped_by_privacy == 0
            view = await a.service.origin.wait_round(start.round_id, 60)
            assert view.complete
            local_cids = set(a.service.host.local_cids)
            for s in a.store.list_shared(start.round_id):
                assert s.cid not in local_cids  # what left is the blurred copy
                assert b.store.get_blob(s.cid) == a.store.get_blob(s.cid)
            result, _ = await a.service.learn()
            assert result.ranker_loss is not None and result.feedback_used == 10


def test_checkpoint_round_trip_and_corruption(tmp_path: Path) -> None:
    path = tmp_path / "learner.ckpt"
    host = LearnerHost("r", tiny_learner(), 0, path)
    obs = [Observation(content_id(i.data), i.image, i.label, i.domain)
           for i in images("bars", 60, 1)]
    host.bootstrap(obs, seed=3)
    host.observe([Observation(content_id(i.data), i.image, i.label, i.domain)
                  for i in images("rings", 20, 2)])
    host.note_shared(host.local_cids[-1], len(host.local_cids) - 1)
    host.learn([(host.local_cids[-1], 0.5)], train_ranker=True)
    host.save()
    again = LearnerHost.load("r", tiny_learner(), 0, path)
    assert again.statistics() == host.statistics()
    assert again.local_cids == host.local_cids and again.shared == host.shared
    x = np.stack([o.image for o in obs[:8]])
    assert np.array_equal(again.predict(x)[0], host.predict(x)[0])
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match="corrupt"):
        LearnerHost.load("r", tiny_learner(), 0, path)


async def test_control_commands(autojump_clock: trio.testing.MockClock, tmp_path: Path) -> None:
    with trio.fail_after(300):
        async with AsyncExitStack() as stack:
            a, b = await fleet(stack, MemoryNetwork(), 2)
            dispatch = {id(r): make_dispatch(r.node, "c", lambda: None,
                                             extra=round_commands(r.service),
                                             services=Daemon(r.node, rounds=r.service))
                        for r in (a, b)}

            async def ask(r: Robot, cmd: str, **args: object) -> dict[str, Any]:
                return await dispatch[id(r)](ControlRequest(1, cmd, dict(args)))

            for i, r in enumerate((a, b)):
                data = generate("bars", 60, 20 + i)
                npz = tmp_path / f"boot{i}.npz"
                np.savez(npz, x=data.images, y=data.labels, domain=np.full(60, "bars"))
                assert await ask(r, "observe", npz=str(npz), bootstrap=True, seed=i) == {
                    "added": 60, "duplicates": 0}
                assert (await ask(r, "observe", npz=str(npz)))["duplicates"] == 60
                more = tmp_path / f"more{i}.npz"
                d2 = generate("spots", 20, 30 + i)
                np.savez(more, x=d2.images, y=d2.labels + 20, domain=np.full(20, "spots"))
                await ask(r, "observe", npz=str(more))
            started = await ask(a, "round_now", policy="oracle", novel_domains=["spots"])
            assert started["shared"] == 5 and started["round_id"] == 1
            done = await ask(a, "wait_round", round_id=1, timeout_s=60)
            assert done["complete"] and done["feedback_received"] == 5
            rows = (await ask(a, "shared", round_id=1))["shared"]
            assert len(rows) == 5 and {r["domain"] for r in rows} == {"spots"}
            assert all(r["utility"] is not None and r["feedback_at"] for r in rows)
            assert len((await ask(a, "rounds"))["rounds"]) == 1
            assert (await ask(b, "votes"))["votes"][0]["cast"]
            learned = await ask(a, "learn")
            assert learned["ranker_loss"] is None  # the oracle round does not train the ranker
            assert learned["fine_tune_loss"] is not None
            acc = await ask(a, "evaluate", npz=str(tmp_path / "more0.npz"))
            assert acc["n"] == 20 and set(acc["accuracy"]) == {"spots", "all"}
            status = await ask(b, "status")
            assert status["samples"] == {"local": 80, "received": 5}
            assert status["learner"]["received_pending"] == 5
            for bad in ({"policy": "best"}, {"novel_domains": "spots"}):
                with pytest.raises(ControlError):
                    await ask(a, "round_now", **bad)
            with pytest.raises(DataError):
                await ask(a, "observe", npz=str(tmp_path / "missing.npz"))


async def test_rounds_run_on_the_schedule(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(300):
        async with AsyncExitStack() as stack:
            a, b = await fleet(stack, MemoryNetwork(), 2, rounds=round_config(interval_s=30.0))
            for i, r in enumerate((a, b)):
                await r.service.observer.observe(images("bars", 60, 60 + i), bootstrap=True, seed=i)
                await r.service.observer.observe(mixed({"bars": 20}, 7 + i))
            # the schedule learns, then shares; the next scheduled learn retrains the ranker
            await a.node.wait_until(lambda _s: a.store.last_round_id() >= 2)
            assert a.store.get_round(1) is not None
            await a.node.wait_until(lambda _s: a.service.host.statistics().ranker_fits >= 1)


class SlowLearner(LearnerHost):
    """A learner whose learn step waits (in its worker thread) until the test lets it go."""

    def __init__(self) -> None:
        super().__init__("slow", tiny_learner(), 0)
        self.entered, self.release = threading.Event(), threading.Event()

    def learn(self, feedback: Sequence[tuple[bytes, float]], train_ranker: bool) -> LearnResult:
        self.entered.set()
        self.release.wait(30)
        return super().learn(feedback, train_ranker)


async def test_node_answers_while_it_learns() -> None:
    with trio.fail_after(60):  # real clock: the learn step runs in a real worker thread
        async with AsyncExitStack() as stack:
            host = SlowLearner()
            r = await start_robot(stack, MemoryNetwork(), "r", host=host,
                                  ml_offload=thread_offload(trio.CapacityLimiter(1)))
            dispatch = make_dispatch(r.node, "c", lambda: None, extra=round_commands(r.service),
                                     services=Daemon(r.node, rounds=r.service))
            done = trio.Event()

            async def learn() -> None:
                await r.service.learn()
                done.set()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(learn)
                await trio.to_thread.run_sync(host.entered.wait)
                status = await dispatch(ControlRequest(1, "status", {}))
                assert status["peer_id"] == r.node.peer_id and not done.is_set()
                host.release.set()
            assert done.is_set()


async def test_restart_gives_the_learner_what_the_checkpoint_missed(
    autojump_clock: trio.testing.MockClock, tmp_path: Path,
) -> None:
    with trio.fail_after(120), SqliteStore.open(tmp_path / "home") as store:
        img = generate("rings", 2, 3).images
        local, theirs = encode_png(img[0]), encode_png(img[1])
        garbage = b"\x89PNG\r\n\x1a\n" + b"\x00" * 40  # hashes fine, decodes to nothing
        for data, source, origin in ((local, "local", None), (theirs, "received", "Q" * 46),
                                     (garbage, "received", "Q" * 46)):
            store.add_sample(Sample(cid=store.put_blob(data), source=source, label=12,
                                    origin=origin, domain="rings", prediction=None,
                                    confidence=None, embedding=None, observed_round=0,
                                    created_at=0.0))
        async with AsyncExitStack() as stack:  # as after a kill -9 before the checkpoint
            r = await start_robot(stack, MemoryNetwork(), "r", store=store)
            stats = r.service.host.statistics()
            assert (stats.local_images, stats.received_images) == (1, 1)
            assert r.service.host.known(content_id(local))
