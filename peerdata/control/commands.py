"""What each control command does to a running node; the daemon serves these.

Rule: commands only read `Node.statistics()` or call a method of the node or of the daemon's
services (`node.daemon.Daemon`, handed to `make_dispatch`); results are plain JSON
objects (the shape the CLI and scripts see); bad arguments raise ControlError.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from peerdata.control.protocol import ControlRequest
from peerdata.control.server import Dispatch
from peerdata.errors import ControlError, DataError
from peerdata.node.node import Node, NodeStats
from peerdata.node.share import media_type_of
from peerdata.store import Sample

if TYPE_CHECKING:  # torch-heavy, started by the daemon; typed here only
    from peerdata.federated.service import Federation
    from peerdata.node.daemon import Daemon

MAX_WAIT_S = 600.0
MAX_SEND_FILES = 10_000


def status_result(stats: NodeStats, control: str) -> dict[str, Any]:
    """The `status` object: node identity and counters, share counters flattened in."""
    result: dict[str, Any] = {
        "peer_id": stats.peer_id, "name": stats.name, "listen_addrs": list(stats.listen_addrs),
        "uptime_s": round(stats.uptime_s, 3), "peers_connected": stats.peers_connected,
        "samples_local": stats.samples_local, "samples_received": stats.samples_received,
        "gossip_received": stats.gossip_received, "gossip_rejected": stats.gossip_rejected,
        "links_dropped": stats.links_dropped, "pid": os.getpid(), "control": control,
    }
    result.update(dataclasses.asdict(stats.share))
    return result


def peers_result(stats: NodeStats) -> dict[str, Any]:
    """The `peers` object: one entry per known peer."""
    return {"peer_id": stats.peer_id, "peers": [dataclasses.asdict(p) for p in stats.peers]}


def _arg(args: dict[str, Any], name: str, kind: type, default: Any = None) -> Any:
    value = args.get(name, default)
    if value is None or (isinstance(value, kind) and not isinstance(value, bool)):
        return value
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    raise ControlError(f"argument {name!r} must be {kind.__name__}")


def _read_images(paths: list[str], max_bytes: int) -> list[bytes]:
    images = []
    for p in paths:
        path = Path(p)
        try:
            size = path.stat().st_size
            if size > max_bytes:
                raise DataError(f"{p}: {size} bytes exceeds limits.max_image_bytes={max_bytes}")
            data = path.read_bytes()
        except OSError as exc:
            raise DataError(f"{p}: cannot read image: {exc.strerror}") from None
        if not data:
            raise DataError(f"{p}: empty file")
        if media_type_of(data) == "application/octet-stream":
            raise DataError(f"{p}: not a PNG or JPEG image")
        images.append(data)
    return images


def _privacy_filter(node: Node, privacy: Any) -> Any:
    """The daemon's privacy filter, else (a bare node) one built from `[privacy]`."""
    if privacy is None:  # a node without the daemon's services (tests, tools): built now
        from peerdata.ml.privacy import PrivacyFilter

        privacy = PrivacyFilter.from_config(node.config.privacy)
    return privacy


async def send(node: Node, args: dict[str, Any], privacy: Any = None) -> dict[str, Any]:
    """Pass image files through the privacy filter, store each output as a local sample and
    offer them to one peer. The raw files never leave: only filter outputs are offered, and
    images the filter drops are counted, not sent."""
    to = _arg(args, "to", str)
    paths = args.get("paths")
    label = _arg(args, "label", int)
    if not to:
        raise ControlError("send needs 'to' (a peer ID)")
    if not isinstance(paths, list) or not paths or not all(isinstance(p, str) for p in paths):
        raise ControlError("send needs 'paths': a non-empty list of file paths")
    if len(paths) > MAX_SEND_FILES:
        raise ControlError(f"send takes at most {MAX_SEND_FILES} files at once")
    images = await node.offload(_read_images, paths, node.config.limits.max_image_bytes)
    store = node.store
    now = node.wall_time()
    privacy = await node.offload(_privacy_filter, node, privacy)

    def put_all() -> tuple[list[bytes], dict[str, int]]:
        from peerdata.ml.privacy import DroppedImage, require_filtered

        cids: list[bytes] = []
        dropped: dict[str, int] = {}
        for data in images:
            result = privacy.filter_image(data)
            if isinstance(result, DroppedImage):
                reason = str(result.reason)
                dropped[reason] = dropped.get(reason, 0) + 1
                continue
            cid = store.put_blob(require_filtered(result).png, "filtered")
            if store.get_sample(cid) is None:
                store.add_sample(Sample(cid=cid, source="local", label=label, origin=None,
                                        domain=None, prediction=None, confidence=None,
                                        embedding=None, observed_round=0, created_at=now))
            cids.append(cid)
        return cids, dropped

    cids, dropped = await node.offload(put_all)
    wanted = await node.share.offer(to, cids) if cids else ()
    return {"to": to, "offered": len(set(cids)), "wanted": len(wanted),
            "dropped_by_privacy": sum(dropped.values()), "dropped_reasons": dropped,
            "cids": [c.hex() for c in dict.fromkeys(cids)]}


async def wait(node: Node, args: dict[str, Any], control: str,
               federation: Federation | None = None) -> dict[str, Any]:
    """Block until every given threshold holds (peers, images_received, samples_received,
    federation_rounds), or time out."""
    peers = _arg(args, "peers", int)
    received = _arg(args, "images_received", int)
    stored = _arg(args, "samples_received", int)
    fed_rounds = _arg(args, "federation_rounds", int)
    timeout = _arg(args, "timeout_s", float, 30.0)
    if not 0 < timeout <= MAX_WAIT_S:
        raise ControlError(f"timeout_s must be in (0, {MAX_WAIT_S}]")

    def done(s: NodeStats) -> bool:
        return ((peers is None or s.peers_connected >= peers)
                and (received is None or s.share.images_verified >= received)
                and (stored is None or s.samples_received >= stored)
                and (fed_rounds is None or (federation is not None
                                            and federation.statistics().rounds >= fed_rounds)))

    with trio.move_on_after(timeout):
        return status_result(await node.wait_until(done), control)
    s = await node.statistics()
    raise ControlError(
        f"not reached within {timeout} s: peers {s.peers_connected}/{peers}, "
        f"images verified {s.share.images_verified}/{received}, "
        f"samples received {s.samples_received}/{stored}"
    )


async def fleet_revocations(node: Node, args: dict[str, Any]) -> dict[str, Any]:
    """Adopt a revocation list from `peerdata fleet revoke --home` and gossip it."""
    from peerdata.errors import RemoteProtocolError
    from peerdata.wire.codec import decode_as
    from peerdata.wire.messages import Revocations

    hex_ = _arg(args, "hex", str)
    if not hex_:
        raise ControlError("fleet_revocations needs 'hex' (an encoded Revocations)")
    if node.membership.is_open:
        raise ControlError("this node runs in open mode: it has no fleet to revoke from")
    try:
        rl = decode_as(bytes.fromhex(hex_), Revocations)
        adopted = await node.members.adopt(rl)
    except (ValueError, RemoteProtocolError) as exc:
        raise ControlError(f"not a valid revocation list for this fleet: {exc}") from None
    return {"serial": rl.serial, "adopted": adopted, "revoked": len(rl.revoked)}


def federation_result(stats: Any) -> dict[str, Any]:
    """`status`'s `federation` object, from a `FederationStats` (JSON-ready)."""
    return {"rounds": stats.rounds, "version": stats.version, "last_round": stats.last_round,
            "last_included": list(stats.last_included), "last_missing": list(stats.last_missing),
            "rejected": stats.rejected_total, "bytes_sent": stats.bytes_sent,
            "bytes_received": stats.bytes_received, "model_digest": stats.model_digest}


# A command a later feature adds (rounds, shared, votes...): (node, args) -> result object.
Command = Callable[[Node, dict[str, Any]], Awaitable[dict[str, Any]]]


def make_dispatch(node: Node, control: str, stop: Callable[[], None],
                  extra: Mapping[str, Command] | None = None, *,
                  services: Daemon | None = None) -> Dispatch:
    """The control endpoint's handler for `node` (`stop` ends the daemon gracefully).

    `extra` adds commands by name (serve them with `commands=COMMANDS | extra.keys()`);
    `services`: the daemon's services on `node` (status, privacy filter, federation).
    """
    extra = dict(extra or {})
    rounds = services.rounds if services is not None else None
    federation = services.federation if services is not None else None
    privacy = services.privacy if services is not None else None

    async def dispatch(req: ControlRequest) -> dict[str, Any]:
        if req.cmd == "status":
            result = status_result(await node.statistics(), control)
            if rounds is not None:
                result.update(await rounds.status_fields())
            if federation is not None:
                result["federation"] = federation_result(federation.statistics())
            return result
        if req.cmd == "peers":
            result = peers_result(await node.statistics())
            if rounds is not None:  # each peer's vote weight (reputation; None: unknown)
                weights = await node.offload(rounds.desk.weights)
                for p in result["peers"]:
                    p["vote_weight"] = weights.get(p["peer_id"], {}).get("weight")
            return result
        if req.cmd == "send":
            return await send(node, req.args, privacy)
        if req.cmd == "wait":
            return await wait(node, req.args, control, federation)
        if req.cmd == "fleet_revocations":
            return await fleet_revocations(node, req.args)
        if req.cmd == "stop":
            stop()
            return {"stopping": True}
        command = extra.get(req.cmd)
        if command is not None:
            return await command(node, req.args)
        raise ControlError(f"command {req.cmd!r} is not implemented by this daemon")

    return dispatch
