"""`federation.mode = "async"`: FedBuff at the configured aggregator; robots push when ready.

Rule: nobody waits for the slowest robot. The aggregator (`federation.aggregator`, required)
keeps the last `MAX_STALENESS + 1` global versions, decodes each update against the version its
sender started from, and steps the global model every `buffer_size` updates, staleness-weighted
(`peerdata.ml.aggregate.fedbuff.FedBuff`), then sends the new version to every peer; it answers
an update whose base it no longer holds with its newest version. A robot trains from the newest
global it holds, sends its delta, adopts the newest version that arrived meanwhile, and trains
again at once, but sends at most `buffer_size` updates from one version: a robot that trains
faster than the aggregator steps (or a stalled aggregator) would otherwise fill its inbox with
updates from one base, the later ones stale by the time they are read. Received bytes cross the
same validator as in rounds; the network is reached only through the injected callables.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import trio

from peerdata.errors import PeerdataError, RemoteProtocolError
from peerdata.federated.exchange import FederatedPeer, LocalModel, RoundResult, SendUpdate
from peerdata.federated.inbox import ModelInbox
from peerdata.federated.tensors import BlobOptions, blobs_from_state, state_from_blobs
from peerdata.federated.validate import Expectation, Rejection, UpdateValidator
from peerdata.ml.aggregate import StateDict
from peerdata.ml.aggregate.fedbuff import FedBuff
from peerdata.wire.model_update import decode_model_update

logger = logging.getLogger("peerdata.federated")

MAX_STALENESS = 8  # versions an update may lag; older ones are refused (their base is gone)
BUFFER_SIZE = 3


class AsyncExchange:
    """One peer's side of asynchronous federation (server or robot, by configuration)."""

    def __init__(self, peer: FederatedPeer, inbox: ModelInbox, send: SendUpdate,
                 peers: Callable[[], tuple[str, ...]],
                 train_local: Callable[[StateDict, int], Awaitable[LocalModel]],
                 record: Callable[[RoundResult], Awaitable[None]],
                 buffer_size: int = BUFFER_SIZE) -> None:
        if not peer.config.aggregator:
            raise PeerdataError("federation.mode = async needs federation.aggregator")
        self._peer, self._inbox, self._send, self._peers = peer, inbox, send, peers
        self._train, self._record = train_local, record
        self._buffer_size = buffer_size

    async def run(self) -> None:
        """Serve as the buffer (if we are the configured aggregator) or push updates."""
        if self._peer.peer_id == self._peer.config.aggregator:
            await self._serve_buffer()
        else:
            await self._push()

    def _limit(self) -> int:
        return self._peer.config.max_update_bytes

    async def _serve_buffer(self) -> None:
        peer = self._peer
        server = FedBuff(peer.global_state, buffer_size=self._buffer_size,
                         max_staleness=MAX_STALENESS, version=peer.version)
        history: dict[int, StateDict] = {peer.version: peer.global_state}
        dense = BlobOptions(peer.config.update_dtype)
        included: list[str] = []
        latest: bytes | None = None  # the last global sent: a stale sender's catch-up
        while True:
            sender, payload = await self._inbox.receive_one()
            version = None
            try:
                version = decode_model_update(payload, self._limit()).base_version
                if version not in history:
                    raise RemoteProtocolError(f"update against version {version}, too stale")
                update = UpdateValidator(history[version]).check(
                    sender, payload, Expectation(version, version, frozenset({"update"}),
                                                 self._limit()))
            except RemoteProtocolError as exc:
                logger.warning("model update from %s rejected: %s", sender, exc)
                await self._record(RoundResult(
                    peer.version, "async", peer.peer_id, None, peer.version, (),
                    (Rejection(sender, str(exc)),), (), 0, 0))
                if latest is not None and version is not None and version not in history:
                    # it started from a version we no longer hold (it joined late, or missed
                    # our sends): without this it would retry from it until a step reached it
                    await peer.send_all([sender], latest, self._send)
                continue
            included.append(sender)
            if not server.submit(update.state, history[version], version, update.num_samples):
                continue
            payload = peer.encode_update(server.version, "global", server.global_state, None,
                                         base=None, base_version=server.version, options=dense)
            model = state_from_blobs(blobs_from_state(server.global_state, dense),
                                     peer.global_state)
            peer.adopt(model, server.version)
            history[server.version] = model
            history.pop(server.version - MAX_STALENESS - 1, None)
            latest = payload
            others = [p for p in self._peers() if p != peer.peer_id]
            sent = await peer.send_all(others, payload, self._send)
            await self._record(RoundResult(
                server.version, "async", peer.peer_id, model, server.version,
                tuple(included), (), (), sent * len(payload), update.wire_bytes))
            included = []

    async def _push(self) -> None:
        peer, server = self._peer, self._peer.config.aggregator
        delivered, sent = 0, 0  # updates the server took from the version we hold; last size
        while True:
            if delivered < self._buffer_size:
                local = await self._train(peer.global_state, peer.version)
                payload = peer.encode_update(peer.version, "update", local.state, local,
                                             base=peer.global_state, base_version=peer.version,
                                             options=peer.options)
                took = await peer.send_all([server], payload, self._send)
                delivered, sent = delivered + took, len(payload)
                arrived = self._inbox.drain()  # oldest first: the newest wins
            else:  # enough for a step from us alone: wait for a newer version (a step, or the
                # answer to a refusal) instead of queueing updates that go stale at the server
                arrived = [await self._inbox.receive_one()]
            for sender, data in arrived:
                if await self._maybe_adopt(sender, data, sent):
                    delivered = 0
            await trio.lowlevel.checkpoint()

    async def _maybe_adopt(self, sender: str, payload: bytes, sent: int) -> bool:
        peer = self._peer
        try:
            if sender != peer.config.aggregator:
                raise RemoteProtocolError("not the aggregator")
            version = decode_model_update(payload, self._limit()).base_version
            if version <= peer.version:
                raise RemoteProtocolError(f"global version {version} is not newer")
            update = UpdateValidator(peer.global_state).check(
                sender, payload, Expectation(version, version, frozenset({"global"}),
                                             self._limit()))
        except RemoteProtocolError as exc:
            logger.warning("model update from %s rejected: %s", sender, exc)
            return False
        peer.adopt(update.state, version)
        await self._record(RoundResult(version, "async", sender, update.state, version,
                                       (sender,), (), (), sent, update.wire_bytes))
        return True
