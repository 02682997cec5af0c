"""The daemon: a node plus its control endpoint, until SIGINT/SIGTERM or a `stop` command.

Rule: readiness is announced only when every service is up (one JSON line on `ready_fd`, and
`home/node.pid`); shutdown is always graceful: the node's nursery is cancelled, the socket
and pid file removed, the store closed. The return value is the process exit code.
"""

from __future__ import annotations

import json
import logging
import os
import signal
from functools import partial
from pathlib import Path

import trio

from peerdata.control.commands import make_dispatch
from peerdata.control.protocol import COMMANDS
from peerdata.control.server import ensure_free, serve_control
from peerdata.errors import PeerdataError
from peerdata.exit_codes import ExitCode
from peerdata.node.daemon import start_daemon
from peerdata.node.home import CONTROL_SOCKET, check_home, remove_pid_file, write_pid_file
from peerdata.node.logs import event
from peerdata.node.node import open_node
from peerdata.ops.service import reload_config, sd_notify, start_ops

log = logging.getLogger("peerdata.daemon")


def announce_ready(fd: int, info: dict[str, object]) -> None:
    """Write one JSON line to `fd` and close it (the swarm launcher reads it)."""
    data = (json.dumps(info, sort_keys=True) + "\n").encode()
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def first_error(group: BaseExceptionGroup[BaseException]) -> PeerdataError | None:
    """The first PeerdataError of a group that holds nothing else (None otherwise)."""
    matched, rest = group.split(PeerdataError)
    if matched is None or rest is not None:
        return None
    leaf: BaseException = matched
    while isinstance(leaf, BaseExceptionGroup):
        leaf = leaf.exceptions[0]
    return leaf if isinstance(leaf, PeerdataError) else None


async def run_daemon(home: Path, *, ready_fd: int | None = None) -> int:
    """Run the node of `home` until told to stop; return the exit code.

    Raises:
        ConfigError, IdentityError: the home, config or key is unusable (nothing started).
        ControlError: another daemon already serves this home.
        StoreError, TransportError: the store or the listen address could not be opened.
    """
    try:
        return await _run_daemon(home, ready_fd)
    except BaseExceptionGroup as group:
        # Errors from inside nurseries arrive grouped; a lone PeerdataError keeps its exit code.
        error = first_error(group)
        if error is None:
            raise
        raise error from None


async def _run_daemon(home: Path, ready_fd: int | None) -> int:
    identity, config = check_home(home)
    ensure_free(home / CONTROL_SOCKET)  # before opening the store and the listen port
    code = ExitCode.OK
    stop = trio.Event()

    def request_stop(exit_code: ExitCode = ExitCode.OK) -> None:
        nonlocal code
        if not stop.is_set():
            code = exit_code
            stop.set()

    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
        async with open_node(home, config, identity=identity) as node:
            control = home / CONTROL_SOCKET
            daemon = await start_daemon(node, home)
            from peerdata.control.rounds import round_commands  # torch: only once started

            assert daemon.rounds is not None
            extra = round_commands(daemon.rounds)
            dispatch, metrics_url = await start_ops(node, home, make_dispatch(
                node, str(control), request_stop, extra=extra, services=daemon))
            await node.start_service(
                partial(serve_control, commands=COMMANDS | frozenset(extra)), control, dispatch)
            info = {"peer_id": node.peer_id, "listen_addrs": list(node.transport.listen_addrs()),
                    "control": str(control), "pid": os.getpid(), "metrics_url": metrics_url}
            write_pid_file(home, info)
            try:
                if ready_fd is not None:
                    announce_ready(ready_fd, info)
                sd_notify(f"READY=1\nMAINPID={os.getpid()}")
                event(log, logging.INFO, "daemon_ready", peer_id=node.peer_id,
                      control=str(control))
                async with trio.open_nursery() as nursery:

                    async def watch_signals() -> None:
                        nonlocal config
                        async for signum in signals:
                            event(log, logging.INFO, "signal", signal=signal.Signals(signum).name)
                            if signum == signal.SIGHUP:  # reload what is safe to change live
                                sd_notify("RELOADING=1")
                                config = reload_config(home, config)
                                sd_notify("READY=1")
                                continue
                            request_stop(ExitCode.INTERRUPTED if signum == signal.SIGINT
                                         else ExitCode.OK)

                    nursery.start_soon(watch_signals)
                    await stop.wait()
                    if daemon.rounds is not None:  # votes still waiting: deliver them first
                        await daemon.rounds.drain()
                    nursery.cancel_scope.cancel()
            finally:
                sd_notify("STOPPING=1")
                remove_pid_file(home)
    event(log, logging.INFO, "daemon_stopped", peer_id=identity.peer_id, exit_code=int(code))
    return int(code)
