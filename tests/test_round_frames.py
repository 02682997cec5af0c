"""A camera fleet: `[model] backbone = "efficientnet-lite0"`, real JPEG frames (PACS photos)
dropped into inbox/ with no sidecars; the robots bootstrap by themselves and share them."""

from __future__ import annotations

import os
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
import trio
import trio.testing
from round_support import round_config, start_robot

from peerdata.config import RoundConfig, config_from_dict
from peerdata.node.learning import LearnerHost, learner_config_for
from peerdata.testing.memory_network import MemoryNetwork

PACS = Path(os.environ.get("PEERDATA_DATA_DIR", "/nonexistent")) / "pacs"
pytestmark = [pytest.mark.data, pytest.mark.skipif(
    not (PACS / "photo").is_dir(), reason="PACS not present: set PEERDATA_DATA_DIR")]
MODEL = {"backbone": "efficientnet-lite0", "labels": "unlabelled", "input_size": 96,
         "head_size": 32, "calibration_images": 10, "epochs": 2, "fine_tune_epochs": 1}


def _frames(domain: str, count: int, skip: int = 0) -> list[Path]:
    out: list[Path] = []
    for cls in sorted(p for p in (PACS / domain).iterdir() if p.is_dir()):
        out += sorted(cls.glob("*.jpg"))[skip:skip + count]
    return out


def _host(name: str, seed: int) -> LearnerHost:
    cfg = config_from_dict({"name": name, "model": MODEL})  # the daemon's own config section
    learner = learner_config_for(RoundConfig(), cfg.model)
    assert learner.vision.backbone == "efficientnet-lite0" and learner.detector == "backbone_knn"
    return LearnerHost(name, learner, seed)


async def test_daemon_with_pretrained_backbone_shares_camera_jpegs(
    autojump_clock: trio.testing.MockClock, tmp_path: Path,
) -> None:
    with trio.fail_after(600):
        async with AsyncExitStack() as stack:
            net = MemoryNetwork()
            homes = [tmp_path / "a", tmp_path / "b"]
            for h in homes:
                h.mkdir()
            a = await start_robot(stack, net, "a", home=homes[0], host=_host("a", 0),
                                  rounds=round_config(inbox_poll_s=1.0, budget_fraction=0.5))
            b = await start_robot(stack, net, "b", home=homes[1], host=_host("b", 1),
                                  bootstrap=(f"/memory/{a.node.peer_id}/p2p/{a.node.peer_id}",),
                                  rounds=round_config(inbox_poll_s=1.0))
            await a.node.wait_until(lambda s: s.peers_connected == 1)
            drops = (_frames("photo", 3) + _frames("sketch", 1),  # 28 camera frames each
                     _frames("photo", 4, skip=3))
            for home, paths in zip(homes, drops, strict=True):
                for path in paths:
                    (home / "inbox" / f"{path.parent.name}_{path.name}").write_bytes(
                        path.read_bytes())
            for robot in (a, b):
                await robot.node.wait_until(
                    lambda _s, r=robot: r.service.host.statistics().bootstrapped)
            assert a.store.count_samples("local") == 28
            assert a.service.host.learner.local_images.shape[1:] == (96, 96, 3)
            start = await a.service.origin.round_now("gu")
            assert start.shared > 0
            shared = a.store.list_shared(start.round_id)
            await b.node.wait_until(
                lambda _s: b.store.count_samples("received") == len({s.cid for s in shared}))
            for s in shared:
                got = b.store.get_sample(s.cid)
                assert got is not None and got.label is None  # unlabelled: voted on, not trained
            assert b.service.host.statistics().received_images == 0
