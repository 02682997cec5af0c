"""A node's Ed25519 identity: its key file, its libp2p peer ID, signing and verification.

Rule: the private key only ever lives in `home/node.key` (mode 0600, written atomically, never
overwritten) and in an `Identity`; nothing here imports libp2p, yet `peer_id` is exactly the ID
libp2p derives for the same key.

Key file format: an unencrypted PKCS#8 PEM ("-----BEGIN PRIVATE KEY-----"), readable by
`openssl pkey -in node.key -noout -text`.

The net layer builds its libp2p key pair from the 32-byte seed::

    from libp2p.crypto.ed25519 import Ed25519PrivateKey
    from libp2p.crypto.keys import KeyPair
    private = Ed25519PrivateKey.from_bytes(identity.private_key_bytes)
    key_pair = KeyPair(private, private.get_public_key())
"""

from __future__ import annotations

import contextlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from peerdata.errors import IdentityError, RemoteProtocolError, SignatureError
from peerdata.files import fsync_dir

KEY_FILE = "node.key"
SIGNATURE_BYTES = 64
PUBLIC_KEY_BYTES = 32

# libp2p PublicKey protobuf {Type: Ed25519 (1), Data: 32 bytes}, in an identity multihash
# (code 0x00, length 36). Base58btc of these bytes always starts with "12D3KooW".
_ED25519_PROTOBUF_PREFIX = b"\x08\x01\x12\x20"
_IDENTITY_MULTIHASH_PREFIX = b"\x00" + bytes([len(_ED25519_PROTOBUF_PREFIX) + PUBLIC_KEY_BYTES])
_PEER_ID_PREFIX = _IDENTITY_MULTIHASH_PREFIX + _ED25519_PROTOBUF_PREFIX

_B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {char: i for i, char in enumerate(_B58_ALPHABET)}
_MAX_PEER_ID_CHARS = 128


def b58encode(data: bytes) -> str:
    """Base58btc (Bitcoin alphabet) encoding, as used by libp2p peer IDs."""
    zeros = len(data) - len(data.lstrip(b"\x00"))
    number = int.from_bytes(data, "big")
    digits: list[str] = []
    while number:
        number, rem = divmod(number, 58)
        digits.append(_B58_ALPHABET[rem])
    return "1" * zeros + "".join(reversed(digits))


def b58decode(text: str) -> bytes:
    """Inverse of `b58encode`; raises ValueError on a character outside the alphabet."""
    number = 0
    for char in text:
        if char not in _B58_INDEX:
            raise ValueError(f"{char!r} is not a base58btc character")
        number = number * 58 + _B58_INDEX[char]
    zeros = len(text) - len(text.lstrip("1"))
    body = number.to_bytes((number.bit_length() + 7) // 8, "big") if number else b""
    return b"\x00" * zeros + body


def peer_id_from_public_key(public_key: bytes) -> str:
    """The libp2p peer ID ("12D3KooW...") of a 32-byte Ed25519 public key."""
    if len(public_key) != PUBLIC_KEY_BYTES:
        raise IdentityError(f"an Ed25519 public key is 32 bytes, got {len(public_key)}")
    return b58encode(_PEER_ID_PREFIX + public_key)


def public_key_from_peer_id(peer_id: str) -> bytes:
    """Recover the 32-byte Ed25519 public key inlined in a libp2p peer ID.

    Raises:
        RemoteProtocolError: `peer_id` is not base58, or not an Ed25519 identity-multihash ID
            (e.g. an RSA "Qm..." ID, whose key is not inlined).
    """
    if not isinstance(peer_id, str) or not 0 < len(peer_id) <= _MAX_PEER_ID_CHARS:
        raise RemoteProtocolError(f"peer ID must be a string of 1..{_MAX_PEER_ID_CHARS} chars")
    try:
        raw = b58decode(peer_id)
    except ValueError as exc:
        raise RemoteProtocolError(f"peer ID {peer_id!r} is not base58btc: {exc}") from None
    if len(raw) != len(_PEER_ID_PREFIX) + PUBLIC_KEY_BYTES or not raw.startswith(_PEER_ID_PREFIX):
        raise RemoteProtocolError(f"peer ID {peer_id!r} is not an Ed25519 identity peer ID")
    return raw[len(_PEER_ID_PREFIX):]


def verify(peer_id: str, data: bytes, signature: bytes) -> None:
    """Check that `signature` over `data` was made by the key behind `peer_id`.

    Raises:
        SignatureError: the signature does not verify, or `peer_id` carries no Ed25519 key.
    """
    try:
        public_key = public_key_from_peer_id(peer_id)
    except RemoteProtocolError as exc:
        raise SignatureError(f"cannot verify a signature by {peer_id!r}: {exc}") from None
    if len(signature) != SIGNATURE_BYTES:
        raise SignatureError(f"signature by {peer_id} is {len(signature)} bytes, expected 64")
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, data)
    except (InvalidSignature, ValueError):
        raise SignatureError(f"bad signature by {peer_id}") from None


@dataclass(frozen=True)
class Identity:
    """One node's Ed25519 key pair and the libp2p peer ID derived from it."""

    private_key_bytes: bytes = field(repr=False)  # the 32-byte seed; never logged
    public_key_bytes: bytes
    peer_id: str
    _key: Ed25519PrivateKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.private_key_bytes) != 32:
            raise IdentityError("an Ed25519 private key is a 32-byte seed")
        key = Ed25519PrivateKey.from_private_bytes(self.private_key_bytes)
        public = _public_of(key)
        if public != self.public_key_bytes or peer_id_from_public_key(public) != self.peer_id:
            raise IdentityError("public key or peer ID does not match the private key")
        object.__setattr__(self, "_key", key)

    @classmethod
    def from_private_bytes(cls, seed: bytes) -> Identity:
        """Build the identity of a 32-byte Ed25519 seed."""
        if len(seed) != 32:
            raise IdentityError(f"an Ed25519 private key is a 32-byte seed, got {len(seed)}")
        public = _public_of(Ed25519PrivateKey.from_private_bytes(seed))
        return cls(bytes(seed), public, peer_id_from_public_key(public))

    @classmethod
    def generate(cls) -> Identity:
        """A fresh random identity (not saved anywhere)."""
        return cls.from_private_bytes(_seed_of(Ed25519PrivateKey.generate()))

    def sign(self, data: bytes) -> bytes:
        """The 64-byte Ed25519 signature of `data`."""
        return self._key.sign(data)

    def to_pem(self) -> bytes:
        """The key file contents: unencrypted PKCS#8 PEM."""
        return self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def _public_of(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw,
                                         serialization.PublicFormat.Raw)


def _seed_of(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )


def key_path(home: Path) -> Path:
    """Where a node home keeps its private key."""
    return home / KEY_FILE


def load_identity(home: Path) -> Identity:
    """Read `home/node.key`.

    Raises:
        IdentityError: the file is missing, unreadable, not an Ed25519 PEM key, or readable by
            group or others (we refuse to run with a leaked-looking key).
    """
    path = key_path(home)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        raise IdentityError(f"{path}: no key file (run `peerdata init` first)") from None
    except OSError as exc:
        raise IdentityError(f"{path}: cannot open key file: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise IdentityError(f"{path}: key file is not a regular file")
        if info.st_mode & 0o077:
            raise IdentityError(
                f"{path}: key file has mode {stat.S_IMODE(info.st_mode):04o}, which lets group or "
                f"others read it; refusing to start (fix with `chmod 600 {path}`)"
            )
        try:
            pem = handle.read(64 * 1024)
        except OSError as exc:
            raise IdentityError(f"{path}: cannot read key file: {exc.strerror}") from None
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise IdentityError(f"{path}: not a valid unencrypted PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise IdentityError(f"{path}: key is {type(key).__name__}, expected Ed25519")
    return Identity.from_private_bytes(_seed_of(key))


def create_identity(home: Path) -> Identity:
    """Create `home/node.key` with a fresh key, or return the identity already there.

    The file is written to a temporary name with mode 0600, fsynced, then hard-linked into
    place, so a crash leaves no half-written key and a concurrent creator never overwrites ours.

    Raises:
        IdentityError: the home cannot be written, or an existing key file is unusable.
    """
    path = key_path(home)
    if path.exists() or path.is_symlink():
        return load_identity(home)
    identity = Identity.generate()
    tmp = home / f".{KEY_FILE}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
    try:
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.fchmod(fd, 0o600)  # the umask can only clear bits, but be explicit
            os.write(fd, identity.to_pem())
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # fails if a key appeared meanwhile, unlike rename
        except FileExistsError:
            return load_identity(home)
        with contextlib.suppress(OSError):  # some platforms cannot sync a directory
            fsync_dir(home)
    except OSError as exc:
        raise IdentityError(f"{path}: cannot create key file: {exc.strerror}") from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    return identity
