"""Local control endpoint: the daemon serves NDJSON on a Unix socket; the CLI calls it."""

from peerdata.control.client import DaemonError, call, socket_path
from peerdata.control.protocol import ControlRequest, ControlResponse
from peerdata.control.server import serve_control

__all__ = ["ControlRequest", "ControlResponse", "DaemonError", "call", "serve_control",
           "socket_path"]
