"""The learner as one task: the only code that touches a robot's `LearnerHost`.

Rule: every learner step is a request on one bounded channel, run to completion one at a time on
a worker thread (torch never blocks the event loop, and never runs two steps at once); a caller
that needs several steps without another in between sends them as one function. Nothing else
holds the host or a lock around it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import trio

from peerdata.node.learning import LearnerHost, LearnerStats
from peerdata.node.node import Offload, thread_offload

T = TypeVar("T")
REQUESTS = 64  # waiting learner steps; a full channel makes callers wait (backpressure)


class LearnerTask:
    """Runs learner steps on `host`, one at a time; start `run` in a nursery first."""

    def __init__(self, host: LearnerHost, offload: Offload | None = None) -> None:
        self._host = host
        self.spec = host.spec  # the pixels the learner takes (fixed by its model)
        self._offload: Offload = offload or thread_offload(trio.CapacityLimiter(1))
        self._send, self._recv = trio.open_memory_channel[
            tuple[Callable[..., Any], tuple[Any, ...], trio.MemorySendChannel[Any]]](REQUESTS)
        self.steps = 0
        self.stats: LearnerStats | None = None  # after the last step (read without waiting)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Serve requests until cancelled."""
        self.stats = await self._offload(LearnerHost.statistics, self._host)
        task_status.started()
        async for fn, args, reply in self._recv:
            try:
                outcome: tuple[bool, Any] = (True, await self._offload(fn, self._host, *args))
            except Exception as exc:  # handed to the caller, who raises it
                outcome = (False, exc)
            self.steps += 1
            self.stats = await self._offload(LearnerHost.statistics, self._host)
            try:
                reply.send_nowait(outcome)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # the caller was cancelled meanwhile; the step still happened

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(host, *args)` on the learner's worker, after the steps already waiting."""
        reply_send, reply_recv = trio.open_memory_channel[tuple[bool, Any]](1)
        await self._send.send((fn, args, reply_send))
        async with reply_recv:
            ok, value = await reply_recv.receive()
        if not ok:
            raise value
        return value  # type: ignore[no-any-return]


