"""The exception tree. Every error peerdata raises on purpose derives from PeerdataError."""

from __future__ import annotations


class PeerdataError(Exception):
    """Root of every error peerdata raises deliberately."""


class ConfigError(PeerdataError):
    """A configuration file or setting is missing or invalid."""


class IdentityError(PeerdataError):
    """A node key is missing, unreadable, or has unsafe permissions."""


class DataError(PeerdataError):
    """A dataset, scenario or image is missing or malformed."""


class StoreError(PeerdataError):
    """The local store cannot be opened, is corrupt, or refused a write."""


class ProtocolError(PeerdataError):
    """Something about a wire message is wrong."""


class LocalProtocolError(ProtocolError):
    """We tried to build or send a message that breaks the protocol (our bug)."""


class RemoteProtocolError(ProtocolError):
    """A peer sent something that breaks the protocol; its link is dropped."""


class SignatureError(RemoteProtocolError):
    """A signed message failed verification."""


class TransportError(PeerdataError):
    """A peer could not be reached, or a transfer failed mid-way."""


class PrivacyError(PeerdataError):
    """The privacy filter could not be set up (e.g. a tampered model file)."""


class ControlError(PeerdataError):
    """The local control endpoint of a daemon cannot be reached or answered badly."""
