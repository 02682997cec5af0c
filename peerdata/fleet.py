"""Fleet membership: an authority key admits robots with signed certificates and revokes them.

Rule: `Membership.is_member` is the one answer to "may this peer take part?". In fleet mode a
peer is a member only while it has shown a certificate that names its own peer ID, is signed by
our authority, has not expired (wall clock, `SKEW_S` tolerance) and is not revoked by the
highest-serial revocation list we hold. Open mode answers yes for every key (local experiments
only; the daemon says so loudly). Nothing here does I/O on the network; files are read and
written only by the functions that name them.

Files: an authority directory holds the authority key (`node.key`, the same format and mode as
a robot's) and `revocations` (its latest signed list). A robot's home holds `fleet.cert` (its
certificate) and `fleet.revocations` (the highest list it has seen).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from peerdata.config import LimitsConfig, TrustConfig
from peerdata.errors import ConfigError, RemoteProtocolError, SignatureError
from peerdata.files import replace_file
from peerdata.identity import Identity, create_identity, load_identity
from peerdata.wire.codec import decode_as, encode
from peerdata.wire.messages import MemberCert, Revocations
from peerdata.wire.signing import sign_member_cert, sign_revocations, verify_authority_signature

CERT_FILE = "fleet.cert"
SWARM_KEY_FILE = "swarm.key"  # optional pre-shared key (go-libp2p's swarm.key format)
REVOCATIONS_FILE = "fleet.revocations"
AUTHORITY_REVOCATIONS = "revocations"
SKEW_S = 300.0  # robots' clocks may disagree by this much about expiry
DAY_S = 86_400.0
# Certificates and lists are small; a file bigger than this is not one.
_MAX_FILE_BYTES = 4 * 1024 * 1024
_LIMITS = LimitsConfig()


# -- the authority (run by an operator, never on a robot) -----------------------------------

def init_authority(directory: Path) -> Identity:
    """Create (or reuse) the fleet authority key in `directory` (mode 0700, key 0600)."""
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{directory}: cannot create authority directory: {exc.strerror}") \
            from None
    return create_identity(directory)


def load_authority(directory: Path) -> Identity:
    """The authority key in `directory` (IdentityError if missing or unsafe)."""
    if not directory.is_dir():
        raise ConfigError(f"{directory}: no fleet authority here (run `peerdata fleet init "
                          f"--authority {directory}` first)")
    return load_identity(directory)


def issue_certificate(authority: Identity, member: str, now: float, valid_days: float
                      ) -> MemberCert:
    """A certificate admitting `member` for `valid_days` from `now`.

    Raises:
        ConfigError: `member` is not a peer ID or `valid_days` is not positive.
    """
    if valid_days <= 0:
        raise ConfigError("a certificate must be valid for more than 0 days")
    try:
        return sign_member_cert(authority, member=member, issued_at=now,
                                expires_at=now + valid_days * DAY_S)
    except Exception as exc:  # LocalProtocolError: a malformed peer ID
        raise ConfigError(f"cannot admit {member!r}: {exc}") from None


def revoke(directory: Path, authority: Identity, peers: tuple[str, ...], now: float
           ) -> Revocations:
    """Add `peers` to the authority's revocation list, sign it with the next serial, save it
    in `directory`, and return it."""
    current = read_message(directory / AUTHORITY_REVOCATIONS, Revocations)
    assert current is None or isinstance(current, Revocations)
    revoked = tuple(dict.fromkeys((*(current.revoked if current else ()), *peers)))
    serial = current.serial + 1 if current else 1
    try:
        rl = sign_revocations(authority, serial=serial, revoked=revoked, issued_at=now)
    except Exception as exc:
        raise ConfigError(f"cannot revoke {', '.join(peers)}: {exc}") from None
    write_message(directory / AUTHORITY_REVOCATIONS, rl)
    return rl


# -- files -------------------------------------------------------------------------------------

def read_message(path: Path, kind: type[MemberCert] | type[Revocations]
                 ) -> MemberCert | Revocations | None:
    """The certificate or list stored in `path` (None if there is no file).

    Raises:
        ConfigError: the file is unreadable or not a valid message of that kind.
    """
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        msg = decode_as(data, kind, limits=_LIMITS)
        verify_authority_signature(msg)
    except (RemoteProtocolError, SignatureError) as exc:
        raise ConfigError(f"{path}: not a valid {kind.__name__}: {exc}") from None
    return msg


def write_message(path: Path, msg: MemberCert | Revocations) -> None:
    """Write `msg` to `path` atomically (mode 0600)."""
    try:
        replace_file(path, encode(msg))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot write: {exc.strerror}") from None


# -- a robot's view ----------------------------------------------------------------------------

@dataclass
class Membership:
    """Who may take part, as this robot knows it now (see the module rule)."""

    mode: str  # open | fleet
    authority: str
    me: str
    clock: Callable[[], float]
    own_cert: MemberCert | None = None
    revocations: Revocations | None = None
    _certs: dict[str, MemberCert] = field(default_factory=dict)
    _revoked: frozenset[str] = frozenset()

    @classmethod
    def open(cls, me: str = "", clock: Callable[[], float] = lambda: 0.0) -> Membership:
        """Open mode: every key is a member."""
        return cls("open", "", me, clock)

    @property
    def is_open(self) -> bool:
        return self.mode == "open"

    def is_member(self, peer_id: str) -> bool:
        """Whether `peer_id` may take part right now (we always may, unless revoked)."""
        if self.is_open:
            return True
        if peer_id in self._revoked:
            return False
        if peer_id == self.me:
            return True
        cert = self._certs.get(peer_id)
        return cert is not None and self.clock() <= cert.expires_at + SKEW_S

    def check_certificate(self, cert: MemberCert, peer_id: str) -> None:
        """Accept `cert` as `peer_id`'s proof of membership.

        Raises:
            RemoteProtocolError: it names another peer or authority, its signature fails, it
                expired, or its member is revoked.
        """
        if cert.member != peer_id:
            raise RemoteProtocolError(f"certificate is for {cert.member}, link is {peer_id}")
        if cert.authority != self.authority:
            raise RemoteProtocolError(f"certificate from authority {cert.authority}, not ours")
        try:
            verify_authority_signature(cert)
        except SignatureError as exc:
            raise RemoteProtocolError(f"certificate signature: {exc}") from None
        if self.clock() > cert.expires_at + SKEW_S:
            raise RemoteProtocolError("certificate expired")
        if cert.member in self._revoked:
            raise RemoteProtocolError("member revoked by the fleet authority")
        self._certs[peer_id] = cert

    def apply_revocations(self, rl: Revocations) -> bool:
        """Adopt `rl` if it is our authority's, verifies, and is newer; return whether it was.

        Raises:
            RemoteProtocolError: another authority's list or a bad signature.
        """
        if rl.authority != self.authority:
            raise RemoteProtocolError(f"revocations from authority {rl.authority}, not ours")
        try:
            verify_authority_signature(rl)
        except SignatureError as exc:
            raise RemoteProtocolError(f"revocations signature: {exc}") from None
        if self.revocations is not None and rl.serial <= self.revocations.serial:
            return False
        self.revocations = rl
        self._revoked = frozenset(rl.revoked)
        for peer in rl.revoked:
            self._certs.pop(peer, None)
        return True


def load_membership(home: Path, trust: TrustConfig, me: str, clock: Callable[[], float]
                    ) -> Membership:
    """This robot's Membership from `[trust]` and, in fleet mode, HOME/fleet.cert and
    HOME/fleet.revocations.

    Raises:
        ConfigError: fleet mode without a valid certificate of our own.
    """
    if trust.membership == "open":
        return Membership.open(me, clock)
    membership = Membership("fleet", trust.fleet_authority, me, clock)
    cert = read_message(home / CERT_FILE, MemberCert)
    if cert is None:
        raise ConfigError(f"{home / CERT_FILE}: no fleet certificate; ask the operator for one "
                          f"(`peerdata fleet admit {me} --authority DIR --home {home}`)")
    assert isinstance(cert, MemberCert)
    try:
        membership.check_certificate(cert, me)
    except RemoteProtocolError as exc:
        raise ConfigError(f"{home / CERT_FILE}: {exc}") from None
    membership.own_cert = cert
    rl = read_message(home / REVOCATIONS_FILE, Revocations)
    if rl is not None:
        assert isinstance(rl, Revocations)
        try:
            membership.apply_revocations(rl)
        except RemoteProtocolError as exc:
            raise ConfigError(f"{home / REVOCATIONS_FILE}: {exc}") from None
    if me in membership._revoked:
        raise ConfigError(f"this robot ({me}) is revoked by the fleet authority")
    return membership


def join_fleet_config(config_path: Path, authority: str) -> bool:
    """Switch a home's config.toml to fleet mode under `authority` (its other lines kept).

    Returns False (and changes nothing) when the `[trust]` lines are not the ones
    `peerdata init` writes, so the operator edits by hand.

    Raises:
        ConfigError: the file cannot be read, written, or is invalid afterwards.
    """
    import re
    import tomllib

    from peerdata.config import config_from_dict

    try:
        text = config_path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{config_path}: cannot read: {exc.strerror}") from None
    if "[trust]" not in text:
        text = text.rstrip("\n") + "\n\n[trust]\n" + \
            f'membership = "fleet"\nfleet_authority = "{authority}"\n'
    else:
        mode = re.compile(r'^membership\s*=\s*"[a-z]*"', re.M)
        auth = re.compile(r'^fleet_authority\s*=\s*"[^"\n]*"', re.M)
        if not (mode.search(text) and auth.search(text)):
            return False
        text = mode.sub('membership = "fleet"', text, count=1)
        text = auth.sub(f'fleet_authority = "{authority}"', text, count=1)
    try:
        config_from_dict(tomllib.loads(text))
    except (tomllib.TOMLDecodeError, ConfigError) as exc:
        raise ConfigError(f"{config_path}: would become invalid: {exc}") from None
    try:
        replace_file(config_path, text.encode("utf-8"))
    except OSError as exc:
        raise ConfigError(f"{config_path}: cannot write: {exc.strerror}") from None
    return True


def load_swarm_key(home: Path) -> str | None:
    """The fleet's pre-shared key from HOME/swarm.key (None if there is none).

    The file is go-libp2p's `swarm.key` format: `/key/swarm/psk/1.0.0/`, `/base16/`, then 64
    hex digits; it must not be readable by group or others.

    Raises:
        ConfigError: unreadable, group/other-readable, or not in that format.
    """
    path = home / SWARM_KEY_FILE
    try:
        mode = path.stat().st_mode
        lines = path.read_text(encoding="ascii").split()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the swarm key: {exc}") from None
    if mode & 0o077:
        raise ConfigError(f"{path}: readable by group or others; chmod 600 it")
    if len(lines) != 3 or lines[:2] != ["/key/swarm/psk/1.0.0/", "/base16/"] or \
            len(lines[2]) != 64 or any(c not in "0123456789abcdefABCDEF" for c in lines[2]):
        raise ConfigError(f"{path}: not a swarm key (/key/swarm/psk/1.0.0/, /base16/, "
                          "64 hex digits)")
    return lines[2].lower()


def write_swarm_key(home: Path, key_hex: str) -> Path:
    """Write HOME/swarm.key (mode 0600) holding `key_hex`."""
    path = home / SWARM_KEY_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(f"/key/swarm/psk/1.0.0/\n/base16/\n{key_hex}\n")
    return path
