"""Node identity: key file safety, peer IDs that match libp2p's, signatures."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from peerdata.errors import IdentityError, RemoteProtocolError, SignatureError
from peerdata.identity import (
    Identity,
    b58decode,
    b58encode,
    create_identity,
    key_path,
    load_identity,
    public_key_from_peer_id,
    verify,
)

SEED = bytes(range(32))


def test_create_writes_a_0600_pem_key_and_load_reads_it_back(tmp_path: Path) -> None:
    home = tmp_path / "home"
    created = create_identity(home)
    info = key_path(home).stat()
    assert stat.S_IMODE(info.st_mode) == 0o600
    assert key_path(home).read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert load_identity(home) == created
    assert [p.name for p in home.iterdir()] == ["node.key"]  # no temp file left behind


def test_create_never_overwrites_an_existing_key(tmp_path: Path) -> None:
    first = create_identity(tmp_path)
    before = key_path(tmp_path).read_bytes()
    again = create_identity(tmp_path)
    assert again == first
    assert key_path(tmp_path).read_bytes() == before


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660])
def test_group_or_world_readable_key_is_refused(tmp_path: Path, mode: int) -> None:
    create_identity(tmp_path)
    os.chmod(key_path(tmp_path), mode)
    with pytest.raises(IdentityError, match="refusing to start"):
        load_identity(tmp_path)
    with pytest.raises(IdentityError, match="refusing to start"):
        create_identity(tmp_path)  # an unsafe existing key is not silently reused


def test_missing_key_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(IdentityError, match="no key file"):
        load_identity(tmp_path)


def test_corrupt_key_is_refused(tmp_path: Path) -> None:
    path = key_path(tmp_path)
    path.write_bytes(b"-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n")
    os.chmod(path, 0o600)
    with pytest.raises(IdentityError, match="not a valid"):
        load_identity(tmp_path)


def test_non_ed25519_key_is_refused(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    path = key_path(tmp_path)
    path.write_bytes(pem)
    os.chmod(path, 0o600)
    with pytest.raises(IdentityError, match="expected Ed25519"):
        load_identity(tmp_path)


def test_peer_id_matches_libp2p() -> None:
    from libp2p.crypto.ed25519 import Ed25519PrivateKey
    from libp2p.peer.id import ID

    ours = Identity.from_private_bytes(SEED)
    private = Ed25519PrivateKey.from_bytes(ours.private_key_bytes)  # as the net layer does
    theirs = ID.from_pubkey(private.get_public_key())
    assert ours.peer_id == theirs.to_base58()
    assert ours.peer_id.startswith("12D3KooW")
    assert private.get_public_key().to_bytes() == ours.public_key_bytes
    assert public_key_from_peer_id(theirs.to_base58()) == ours.public_key_bytes


def test_sign_and_verify() -> None:
    identity = Identity.from_private_bytes(SEED)
    signature = identity.sign(b"data")
    verify(identity.peer_id, b"data", signature)
    with pytest.raises(SignatureError):
        verify(identity.peer_id, b"datA", signature)
    other = Identity.generate()
    with pytest.raises(SignatureError):
        verify(other.peer_id, b"data", signature)


def test_peer_ids_without_an_inlined_ed25519_key_are_rejected() -> None:
    rsa_style = "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"
    with pytest.raises(RemoteProtocolError, match="not an Ed25519"):
        public_key_from_peer_id(rsa_style)
    with pytest.raises(RemoteProtocolError, match="not base58"):
        public_key_from_peer_id("12D3KooW0OIl")
    with pytest.raises(SignatureError, match="cannot verify"):
        verify(rsa_style, b"data", b"\x00" * 64)


def test_base58_round_trip_keeps_leading_zeros() -> None:
    for data in (b"", b"\x00", b"\x00\x00\x01", bytes(range(40)), b"\xff" * 8):
        assert b58decode(b58encode(data)) == data
    assert b58encode(b"\x00\x00\x01") == "112"


def test_identity_repr_hides_the_private_key() -> None:
    identity = Identity.from_private_bytes(SEED)
    assert SEED.hex() not in repr(identity) and repr(SEED) not in repr(identity)


def test_identity_rejects_mismatched_parts() -> None:
    identity = Identity.from_private_bytes(SEED)
    with pytest.raises(IdentityError):
        Identity(identity.private_key_bytes, b"\x01" * 32, identity.peer_id)
