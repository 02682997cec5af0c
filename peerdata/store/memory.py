"""An in-memory Store for fast tests of node logic.

Rule: behave exactly like SqliteStore (same return values, same errors, same ordering); the
contract suite in tests/test_store_contract.py runs against both to keep it so. Nothing
survives `close()`.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence

from peerdata.errors import StoreError
from peerdata.store.base import (
    FeedbackRecord,
    NotFoundError,
    PeerRecord,
    Provenance,
    RoundRecord,
    Sample,
    SampleSource,
    SharedRecord,
    Store,
    VoteRecord,
    check_cid,
    check_count,
    check_finite,
    content_id,
    merge_provenance,
)
from peerdata.store.outbox import OutboxRecord

_Utility = tuple[float, int, int]  # utility, voters, novel_votes


class MemoryStore(Store):
    """A Store held in dicts. Thread-safe; calls are serialised by one lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._closed = False
        self._blobs: dict[bytes, bytes] = {}
        self._provenance: dict[bytes, tuple[Provenance, str | None]] = {}
        self._samples: dict[bytes, Sample] = {}
        self._shared: dict[tuple[bytes, int, str], SharedRecord] = {}
        self._utilities: dict[bytes, _Utility] = {}
        self._votes: dict[tuple[bytes, str], VoteRecord] = {}
        self._feedback: dict[tuple[bytes, str, int], FeedbackRecord] = {}
        self._peers: dict[str, PeerRecord] = {}
        self._rounds: dict[int, RoundRecord] = {}
        self._meta: dict[str, str] = {}
        self._outbox: dict[tuple[str, bytes], OutboxRecord] = {}

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("memory store is closed")

    def close(self) -> None:
        with self._lock:
            self._closed = True

    # -- blobs ---------------------------------------------------------------------------------
    def put_blob(self, data: bytes, provenance: Provenance = "local",
                 received_from: str | None = None) -> bytes:
        data = bytes(data)
        cid = content_id(data)
        with self._lock:
            self._check_open()
            old, sender = self._provenance.get(cid, (None, None))
            merged = merge_provenance(old, provenance)
            self._blobs.setdefault(cid, data)
            self._provenance[cid] = (merged, sender if old is not None else received_from)
        return cid

    def blob_provenance(self, cid: bytes) -> Provenance | None:
        check_cid(cid)
        with self._lock:
            self._check_open()
            found = self._provenance.get(cid)
        return None if found is None else found[0]

    def stored_bytes(self, received_from: str | None = None) -> int:
        with self._lock:
            self._check_open()
            return sum(len(self._blobs[c]) for c, (_, s) in self._provenance.items()
                       if received_from is None or s == received_from)

    def get_blob(self, cid: bytes) -> bytes:
        check_cid(cid)
        with self._lock:
            self._check_open()
            data = self._blobs.get(cid)
        if data is None:
            raise NotFoundError(f"no blob {cid.hex()} in memory store")
        if content_id(data) != cid:
            raise StoreError(f"blob {cid.hex()} is corrupt: its bytes do not match its ID")
        return data

    def has_blob(self, cid: bytes) -> bool:
        check_cid(cid)
        with self._lock:
            self._check_open()
            return cid in self._blobs

    # -- samples -------------------------------------------------------------------------------
    def add_sample(self, sample: Sample) -> bool:
        with self._lock:
            self._check_open()
            if sample.cid not in self._blobs:
                raise NotFoundError(f"sample {sample.cid_hex}: put_blob its bytes first")
            if sample.cid in self._samples:
                return False
            self._samples[sample.cid] = sample
            return True

    def get_sample(self, cid: bytes) -> Sample | None:
        check_cid(cid)
        with self._lock:
            self._check_open()
            return self._samples.get(cid)

    def list_samples(
        self,
        source: SampleSource | None = None,
        since_round: int | None = None,
        limit: int | None = None,
    ) -> list[Sample]:
        if limit is not None:
            check_count("limit", limit)
        with self._lock:
            self._check_open()
            found = [
                s
                for s in self._samples.values()
                if (source is None or s.source == source)
                and (since_round is None or s.observed_round >= since_round)
            ]
        return found if limit is None else found[:limit]

    def count_samples(self, source: SampleSource | None = None) -> int:
        with self._lock:
            self._check_open()
            return sum(1 for s in self._samples.values() if source is None or s.source == source)

    def update_prediction(
        self, cid: bytes, prediction: int, confidence: float, embedding: bytes | None
    ) -> None:
        check_cid(cid)
        check_finite("confidence", confidence)
        with self._lock:
            self._check_open()
            sample = self._samples.get(cid)
            if sample is None:
                raise NotFoundError(f"no sample {cid.hex()} in memory store")
            self._samples[cid] = dataclasses.replace(
                sample, prediction=prediction, confidence=confidence, embedding=embedding
            )

    # -- shared items --------------------------------------------------------------------------
    def record_shared(
        self, cid: bytes, round_id: int, peer_id: str, nbytes: int, at: float
    ) -> bool:
        record = SharedRecord(cid, round_id, peer_id, nbytes, at)  # validates
        with self._lock:
            self._check_open()
            if cid not in self._samples:
                raise NotFoundError(f"cannot record sharing {cid.hex()}: not a stored sample")
            key = (cid, round_id, peer_id)
            if key in self._shared:
                return False
            self._shared[key] = record
            return True

    def list_shared(self, round_id: int | None = None) -> list[SharedRecord]:
        with self._lock:
            self._check_open()
            found = []
            for record in self._shared.values():
                if round_id is not None and record.round_id != round_id:
                    continue
                utility = self._utilities.get(record.cid)
                if utility is not None:
                    u, voters, novel = utility
                    record = dataclasses.replace(
                        record, utility=u, voters=voters, novel_votes=novel
                    )
                found.append(record)
            return found

    def set_utility(self, cid: bytes, utility: float, voters: int, novel_votes: int) -> None:
        check_cid(cid)
        check_finite("utility", utility)
        check_count("voters", voters)
        check_count("novel_votes", novel_votes)
        with self._lock:
            self._check_open()
            if not any(key[0] == cid for key in self._shared):
                raise NotFoundError(f"cannot set utility of {cid.hex()}: it was never shared")
            self._utilities[cid] = (utility, voters, novel_votes)

    # -- votes and feedback --------------------------------------------------------------------
    def add_vote(self, vote: VoteRecord) -> bool:
        with self._lock:
            self._check_open()
            key = (vote.cid, vote.voter)
            if key in self._votes:
                return False
            self._votes[key] = vote
            return True

    def list_votes(self, cid: bytes | None = None, round_id: int | None = None) -> list[VoteRecord]:
        if cid is not None:
            check_cid(cid)
        with self._lock:
            self._check_open()
            return [
                v
                for v in self._votes.values()
                if (cid is None or v.cid == cid) and (round_id is None or v.round_id == round_id)
            ]

    def add_feedback(self, record: FeedbackRecord) -> bool:
        with self._lock:
            self._check_open()
            key = (record.cid, record.reporter, record.round_id)
            if key in self._feedback:
                return False
            self._feedback[key] = record
            return True

    def list_feedback(self, round_id: int | None = None) -> list[FeedbackRecord]:
        with self._lock:
            self._check_open()
            return [
                f for f in self._feedback.values() if round_id is None or f.round_id == round_id
            ]

    def feedback_count(self) -> int:
        with self._lock:
            self._check_open()
            return len(self._feedback)

    # -- peers ---------------------------------------------------------------------------------
    def upsert_peer(self, peer_id: str, address: str, at: float) -> None:
        check_finite("at", at)
        with self._lock:
            self._check_open()
            old = self._peers.get(peer_id)
            if old is None:
                self._peers[peer_id] = PeerRecord(peer_id, address, at, at, 0, 0, None)
            else:
                self._peers[peer_id] = dataclasses.replace(
                    old, address=address, last_seen=max(old.last_seen, at)
                )

    def add_peer_traffic(self, peer_id: str, bytes_in: int, bytes_out: int, at: float) -> None:
        check_count("bytes_in", bytes_in)
        check_count("bytes_out", bytes_out)
        check_finite("at", at)
        with self._lock:
            self._check_open()
            old = self._peers.get(peer_id)
            if old is None:
                self._peers[peer_id] = PeerRecord(peer_id, "", at, at, bytes_in, bytes_out, at)
            else:
                last_message = at if old.last_message_at is None else max(old.last_message_at, at)
                self._peers[peer_id] = dataclasses.replace(
                    old,
                    bytes_in=old.bytes_in + bytes_in,
                    bytes_out=old.bytes_out + bytes_out,
                    last_seen=max(old.last_seen, at),
                    last_message_at=last_message,
                )

    def list_peers(self) -> list[PeerRecord]:
        with self._lock:
            self._check_open()
            return [self._peers[p] for p in sorted(self._peers)]

    # -- rounds --------------------------------------------------------------------------------
    def start_round(self, round_id: int, at: float) -> bool:
        record = RoundRecord(round_id, at)  # validates
        with self._lock:
            self._check_open()
            if round_id in self._rounds:
                return False
            self._rounds[round_id] = record
            return True

    def finish_round(self, record: RoundRecord) -> None:
        if record.finished_at is None:
            raise StoreError(f"finish_round: round {record.round_id} has no finished_at")
        with self._lock:
            self._check_open()
            self._rounds[record.round_id] = record

    def get_round(self, round_id: int) -> RoundRecord | None:
        with self._lock:
            self._check_open()
            return self._rounds.get(round_id)

    def list_rounds(self) -> list[RoundRecord]:
        with self._lock:
            self._check_open()
            return [self._rounds[r] for r in sorted(self._rounds)]

    def last_round_id(self) -> int:
        with self._lock:
            self._check_open()
            return max(self._rounds, default=0)

    # -- node state ----------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        with self._lock:
            self._check_open()
            return self._meta.get(key)

    def set_meta(self, key: str, value: str) -> None:
        with self._lock:
            self._check_open()
            self._meta[key] = value

    # -- outbox --------------------------------------------------------------------------------
    def put_outbox(self, records: Sequence[OutboxRecord]) -> None:
        with self._lock:
            self._check_open()
            for r in records:
                self._outbox[(r.kind, r.key)] = r

    def list_outbox(self, kind: str | None = None) -> list[OutboxRecord]:
        with self._lock:
            self._check_open()
            return sorted((r for r in self._outbox.values() if kind in (None, r.kind)),
                          key=lambda r: (r.created_at, r.kind, r.key))

    def remove_outbox(self, kind: str, keys: Sequence[bytes]) -> int:
        with self._lock:
            self._check_open()
            return sum(self._outbox.pop((kind, k), None) is not None for k in keys)
