"""Golden vectors decode and re-encode byte for byte; proto/schema.json matches the code."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

from peerdata.errors import RemoteProtocolError
from peerdata.wire import Feedback, Vote, decode, encode, verify_feedback, verify_vote
from peerdata.wire import versions as v
from peerdata.wire.fields import field_hints, type_name
from peerdata.wire.messages import MESSAGE_TYPES, RECORD_TYPES

ROOT = Path(__file__).resolve().parent.parent
VECTORS = ROOT / "proto" / "vectors"
SCHEMA = json.loads((ROOT / "proto" / "schema.json").read_text(encoding="utf-8"))
VECTOR_FILES = sorted(VECTORS.glob("*.hex"))


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_vectors", ROOT / "scripts" /
                                                  "make_vectors.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("path", VECTOR_FILES, ids=lambda p: p.stem)
def test_vector_decodes_and_reencodes_byte_for_byte(path: Path) -> None:
    data = bytes.fromhex(path.read_text(encoding="ascii").strip())
    msg = decode(data)
    assert encode(msg) == data
    if isinstance(msg, Vote):
        verify_vote(msg)
    if isinstance(msg, Feedback):
        verify_feedback(msg)


def test_every_message_type_has_a_vector() -> None:
    seen = {type(decode(bytes.fromhex(p.read_text(encoding="ascii").strip())))
            for p in VECTOR_FILES}
    assert seen == set(MESSAGE_TYPES)


def test_invalid_vectors_are_refused_with_their_error() -> None:
    invalid = json.loads((VECTORS / "invalid.json").read_text(encoding="utf-8"))
    assert invalid
    for name, case in invalid.items():
        with pytest.raises(RemoteProtocolError) as info:
            decode(bytes.fromhex(case["hex"]))
        assert case["error"] in str(info.value), name


def test_vectors_on_disk_are_what_this_code_encodes() -> None:
    rendered = load_script().render()
    on_disk = {p.name: p.read_text(encoding="ascii") for p in VECTORS.iterdir()
               if p.suffix in (".hex", ".json")}
    assert on_disk == rendered, "stale vectors: run scripts/make_vectors.py and review the diff"


def test_schema_matches_the_message_classes() -> None:
    assert SCHEMA["protocol_version"] == v.PROTOCOL_VERSION
    assert set(SCHEMA["messages"]) == {cls.__name__ for cls in MESSAGE_TYPES}
    assert set(SCHEMA["records"]) == {cls.__name__ for cls in RECORD_TYPES}
    for cls in MESSAGE_TYPES + RECORD_TYPES:
        entry = SCHEMA["messages"].get(cls.__name__) or SCHEMA["records"][cls.__name__]
        if cls in MESSAGE_TYPES:
            assert entry["tag"] == cls.TAG, cls.__name__
        expected = [(name, type_name(hint)) for name, hint in field_hints(cls).items()]
        assert [(f["name"], f["type"]) for f in entry["fields"]] == expected, cls.__name__
        assert all(f["constraints"] for f in entry["fields"]), cls.__name__


def test_schema_matches_protocol_ids_and_topics() -> None:
    ids = {p["id"] for p in SCHEMA["protocols"].values()}
    assert ids == {*v.REQUEST_PROTOCOLS, v.MODEL_PROTOCOL}
    assert {t["name"] for t in SCHEMA["topics"].values()} == set(v.TOPICS)
    names = {cls.__name__ for cls in MESSAGE_TYPES}
    for proto in SCHEMA["protocols"].values():
        if proto["request"] is not None:
            assert {proto["request"], *proto["reply"]} <= names
    assert SCHEMA["signing"]["signer"] == {"Vote": "voter", "Feedback": "reporter",
                                           "MemberCert": "authority",
                                           "Revocations": "authority"}
