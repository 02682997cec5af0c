"""Control commands of the sharing round: observe, round_now, wait_round, learn, evaluate,
rounds, shared, votes (docs/cli.md has their JSON).

Rule: each command checks its arguments (ControlError), calls one method of the RoundService
`round_commands` binds it to and returns a plain JSON object; nothing here touches the learner
or the network directly.
"""

from __future__ import annotations

import dataclasses
import math
from functools import partial
from pathlib import Path
from typing import Any

from peerdata.control.commands import MAX_WAIT_S, Command, _arg
from peerdata.errors import ControlError
from peerdata.node.node import Node
from peerdata.node.rounds import RoundService
from peerdata.sharing import POLICIES


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else value


def _path(args: dict[str, Any], name: str) -> Path:
    value = _arg(args, name, str)
    if not value:
        raise ControlError(f"argument {name!r} (a path) is required")
    return Path(value)


async def observe(service: RoundService, node: Node, args: dict[str, Any]) -> dict[str, Any]:
    """{"npz", "bootstrap"?, "seed"?} -> {"added", "duplicates"}."""
    bootstrap = args.get("bootstrap", False)
    if not isinstance(bootstrap, bool):
        raise ControlError("argument 'bootstrap' must be true or false")
    seed = _arg(args, "seed", int)
    added, dups = await service.observer.observe_npz(_path(args, "npz"), bootstrap=bootstrap,
                                                     seed=seed)
    return {"added": added, "duplicates": dups}


async def round_now(service: RoundService, node: Node, args: dict[str, Any]) -> dict[str, Any]:
    """{"policy"?, "novel_domains"?, "learn"?} -> what left this robot in the new round."""
    policy = _arg(args, "policy", str)
    if policy is not None and policy not in POLICIES:
        raise ControlError(f"unknown policy {policy!r}; known: {', '.join(POLICIES)}")
    novel = args.get("novel_domains")
    if novel is not None and (not isinstance(novel, list)
                              or not all(isinstance(d, str) for d in novel)):
        raise ControlError("argument 'novel_domains' must be a list of strings")
    if args.get("learn", False) is True:
        await service.learn()
    start = await service.origin.round_now(policy, novel)
    return dataclasses.asdict(start)


def _view(view: Any) -> dict[str, Any]:
    out = dataclasses.asdict(view)
    out["mean_utility"] = _finite(out["mean_utility"])
    return out


async def wait_round(service: RoundService, node: Node, args: dict[str, Any]) -> dict[str, Any]:
    """{"round_id", "timeout_s"} -> the round record once complete/finished or timed out."""
    round_id = _arg(args, "round_id", int)
    timeout = _arg(args, "timeout_s", float, 30.0)
    if round_id is None:
        raise ControlError("argument 'round_id' is required")
    if not 0 < timeout <= MAX_WAIT_S:
        raise ControlError(f"timeout_s must be in (0, {MAX_WAIT_S}]")
    return _view(await service.origin.wait_round(round_id, timeout))


async def learn(service: RoundService, node: Node, args: dict[str, Any]) -> dict[str, Any]:
    """{} -> {"ranker_loss", "fine_tune_loss", "received_pending", "feedback_used", "accuracy"}."""
    result, accuracy = await service.learn()
    out = dataclasses.asdict(result)
    out["accuracy"] = accuracy
    return out


async def evaluate(service: RoundService, node: Node, args: dict[str, Any]) -> dict[str, Any]:
    """{"npz"} -> {"accuracy": {domain: float, ..., "all": float}, "n"}."""
    acc, n = await service.evaluate(_path(args, "npz"))
    return {"accuracy": acc, "n": n}


async def rounds(service: RoundService, node: Node, args: dict[str, Any]) -> dict[str, Any]:
    """{} -> {"rounds": [round record, ...]} oldest first."""

    def read() -> list[dict[str, Any]]:
        views = (service.desk.view(r.round_id) for r in node.store.list_rounds())
        return [_view(v) for v in views if v is not None]

    return {"peer_id": node.peer_id, "rounds": await node.offload(read)}


async def shared(service: RoundService, node: Node, args: dict[str, Any]) -> dict[str, Any]:
    """{"round_id"?} -> {"shared": [{cid, round_id, peer_id, nbytes, shared_at, utility, ...}]}."""
    round_id = _arg(args, "round_id", int)
    store = node.store

    def read() -> list[dict[str, Any]]:
        feedback = {f.cid: f for f in store.list_feedback(round_id)}
        out = []
        for r in store.list_shared(round_id):
            sample = store.get_sample(r.cid)
            fb = feedback.get(r.cid)
            out.append({
                "cid": r.cid.hex(), "round_id": r.round_id, "peer_id": r.peer_id,
                # the local image it was filtered from (the same cid when the filter kept it)
                "source_cid": store.get_meta(f"derived.{r.cid.hex()}") or r.cid.hex(),
                "nbytes": r.nbytes, "shared_at": r.shared_at, "utility": r.utility,
                "voters": r.voters, "novel_votes": r.novel_votes,
                "domain": sample.domain if sample else None,
                "label": sample.label if sample else None,
                "feedback_at": fb.received_at if fb else None,
                "reporter": fb.reporter if fb else None,
                "recovered": bool(fb and fb.reporter == node.peer_id),
            })
        return out

    return {"peer_id": node.peer_id, "shared": await node.offload(read)}


async def votes(service: RoundService, node: Node, args: dict[str, Any]) -> dict[str, Any]:
    """{"round_id"?} -> {"votes": [...]}: votes this robot cast and votes on its images."""
    round_id = _arg(args, "round_id", int)

    def read() -> list[dict[str, Any]]:
        return [{"cid": v.cid.hex(), "origin": v.origin, "voter": v.voter,
                 "round_id": v.round_id, "novel": v.novel, "score": v.score,
                 "received_at": v.received_at, "late": v.late,
                 "cast": v.voter == node.peer_id}
                for v in node.store.list_votes(round_id=round_id)]

    return {"peer_id": node.peer_id, "votes": await node.offload(read)}


def round_commands(service: RoundService) -> dict[str, Command]:
    """The commands of `service`, to pass as `make_dispatch(..., extra=...)`."""
    return {fn.__name__: partial(fn, service) for fn in
            (observe, round_now, wait_round, learn, evaluate, rounds, shared, votes)}
